"""The experiment's report from the committed results only: report/results.md, its figures, chosen_lambda.json
and the main README's block.

    python experiments/teacher_reliability/report.py          # report/, chosen_lambda.json, README block
    python experiments/teacher_reliability/report.py --check  # exit 1 when README.md's block is out of date

Reads config.yaml, metrics.jsonl, eval/*/summary.json and eval/final/episodes.jsonl of every finished run
under results/, probes/*.json, and warm_start/{plain,reliable} (outcomes.py). Writes report/results.md: the
run table (final and step-6 success per setting and seed, mean ± population std over seeds; GRPO+OPSD's
half-teacher runs not made taken from their twins, marked †), the verdict of each criterion of README.md
(criteria.py), the first-turn probes, what the student does in the final panel's games, the gate per run
(sdar.evaluation.gate_stats) with its histogram over training (one figure per seed), and learning curves with
min-max bands over seeds, one set per group of settings (sdar.evaluation.plots). Once seed 0's runs that claim
1's rule needs are in, it writes chosen_lambda.json (never over a different recorded choice: that one stays,
and the report says so). The README block (one table: final success by method, teacher and λ) goes to the
repository's README.md, between its BEGIN and END lines, and to the terminal.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the siblings below, also when this file is loaded by path (tests)

import criteria  # noqa: E402
import outcomes  # noqa: E402
from run_table import (  # noqa: E402
    EXPLORATORY,
    LAMBDAS,
    SEEDS,
    SETTING_NAMES,
    TEACHER_BLIND_TWINS,
    TEACHERS,
    constant_name,
    lambda_text,
    parse_run_name,
    run_table,
)
from training_tables import display_order, in_display_order, routing_table, update_table  # noqa: E402

from sdar.evaluation.document import Bullets, Heading, Image, Paragraph, Table, splice, to_markdown  # noqa: E402
from sdar.evaluation.gate_stats import GATE_LEGEND, gate_rows, gate_table  # noqa: E402
from sdar.evaluation.runs import Run  # noqa: E402

ROOT = HERE.parents[1]
EXPERIMENT = "experiments/teacher_reliability"  # links in the README block are relative to the repository
REPORT = HERE / "report"
README = ROOT / "README.md"
COMMAND = f"python {EXPERIMENT}/report.py"
BEGIN = (
    "<!-- teacher_reliability: written by `python experiments/teacher_reliability/report.py`; do not edit -->"
)
END = "<!-- teacher_reliability: end -->"
CURVE_STEMS = ("success", "gate_mean", "gap_mean", "return")  # of sdar.evaluation.plots.CURVES
PROBE_KEYS = (("object's receptacle", "object_p"), ("goal receptacle", "goal_p"))
CLAIMS = {  # criterion -> what it says (README.md, Criteria)
    "0": "precondition: the teacher knows something the student can use",
    "1": "distillation matters at a large enough weight",
    "2": "the gate protects against a wrong teacher",
    "2, mechanism": "GRPO+OPSD's first turn moves toward the goal receptacle more than SDAR's",
    "3": "the gate is active where it should be",
    "4a, reliable": "the adaptive λ is not behind the best constant λ of SDAR, reliable teacher",
    "4a, half": "the adaptive λ is not behind the best constant λ of SDAR, half teacher",
    "4b": "routing between the half line and no line is ahead of SDAR with the half line alone",
    "4c, entropy": "the entropy gate against the gap gate, no directional claim",
    "4c, soft_or": "the soft-OR gate against the gap gate, no directional claim",
}


def shown(path: Path) -> str:
    """A path as the terminal shows it: from the repository's root when it is inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


WARM_START_ROW = "warm start"
COPIED = "†"  # marks an outcome taken from the run's teacher-blind twin (criteria.with_twins)
COPIED_NOTE = (
    f"{COPIED}: not run; GRPO+OPSD's update does not read the teacher, so its half-teacher run is its "
    "reliable-teacher run of the same seed (the experiment's README, Amendment)."
)


def rate(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def copied_note(results: criteria.Results) -> str:
    """COPIED_NOTE and a space when some outcome is a twin's, else ""."""
    return f"{COPIED_NOTE} " if any(outcome.copied_from for outcome in results.values()) else ""


def exploratory_note(results: criteria.Results) -> str:
    """What each exploratory setting with a run in is (run_table.EXPLORATORY), and a space; else ""."""
    shown = [f"{name}: {what}" for name, what in EXPLORATORY.items() if any(n == name for n, _ in results)]
    return f"Exploratory, outside the design (no criterion reads it): {'; '.join(shown)}. " if shown else ""


def marked(text: str, sources: list[criteria.Outcome]) -> str:
    """`text`, marked COPIED when any of the outcomes it shows is a twin's."""
    return text + (COPIED if any(outcome.copied_from for outcome in sources) else "")


def mean_std(values: list[float]) -> str:
    """'mean ± population std' in %, one value as itself, none as '–'."""
    if not values:
        return "–"
    text = f"{100 * statistics.fmean(values):.1f}"
    return text + (f" ± {100 * statistics.pstdev(values):.1f}" if len(values) > 1 else "")


def warm_start_text(warm: criteria.WarmStart) -> str:
    if warm.plain is None or warm.reliable is None:
        return "The warm start's evaluations (warm_start/) are not in yet."
    return (
        f"The warm start (step 0 of every run) wins {rate(warm.plain)} % of the valid games without the line "
        f"and {rate(warm.reliable)} % acting with the reliable line."
    )


def success_table(results: criteria.Results, lam: float | None) -> Table:
    """Final and step-6 success % per setting and seed, and their mean ± population std over seeds."""
    table = run_table(lam)
    header = ["setting", "method", "teacher", "λ"]
    for label in ("step 12", "step 6"):
        header += [*(f"{label}, s{seed}" for seed in SEEDS), f"{label}, mean ± std"]
    rows = []
    for name in display_order():
        runs = {seed: results[(name, seed)] for seed in SEEDS if (name, seed) in results}
        if not runs:
            continue
        setting, cells = table[name], []
        for field in ("final", "step6"):
            values = {seed: getattr(outcome, field) for seed, outcome in runs.items()}
            cells += [marked(rate(values.get(seed)), [runs[seed]] if seed in runs else []) for seed in SEEDS]
            shown = [value for value in values.values() if value is not None]
            cells.append(marked(mean_std(shown), list(runs.values())))
        rows.append((name, setting.method, setting.teacher or "–", setting.weight or "–", *cells))
    return Table(tuple(header), tuple(rows), numeric_from=4)


def probe_table(results: criteria.Results, warm: criteria.WarmStart) -> Table | None:
    """The student's first-turn probabilities (mean over seeds) of the object's and the goal receptacle."""
    rows = []
    if warm.goal_p is not None:
        rows.append((WARM_START_ROW, "1", f"{warm.object_p:.3f}", f"{warm.goal_p:.3f}", "–"))
    for name in display_order():
        probed = [
            results[(name, s)]
            for s in SEEDS
            if (name, s) in results and results[(name, s)].goal_p is not None
        ]
        if not probed:
            continue
        object_p = statistics.fmean(outcome.object_p for outcome in probed)
        goal_p = statistics.fmean(outcome.goal_p for outcome in probed)
        rise = f"{goal_p - warm.goal_p:+.3f}" if warm.goal_p is not None else "–"
        rows.append((name, marked(str(len(probed)), probed), f"{object_p:.3f}", f"{goal_p:.3f}", rise))
    if not rows:
        return None
    header = ("model", "seeds", "P(object's receptacle)", "P(goal receptacle)", "P(goal) − warm start's")
    return Table(header, tuple(rows))


def max_turns() -> int:
    """The turn limit of the panel's games (config.yaml)."""
    from sdar.config import load_config

    return load_config(str(HERE / "config.yaml")).env.max_turns


def behaviour_table(runs: list[Run]) -> Table | None:
    """Per run, what the student did in the final panel's games (outcomes.Behaviour); the warm start's row
    from its panel evaluation without the line."""
    plain = outcomes.WARM_START_EVALS / "plain"
    evaluated = [(WARM_START_ROW, plain, plain.name)]
    evaluated += [(run.name, Path(run.path), outcomes.FINAL) for run in in_display_order(runs)]
    rows = []
    for name, folder, label in evaluated:
        seen = outcomes.final_behaviour(folder, label)
        if seen is not None:
            counts = (f"{count}/{seen.games}" for count in (seen.won, seen.took, seen.put))
            rows.append((name, *counts, f"{seen.admissible:.2f}", f"{seen.distinct:.1f}"))
    if not rows:
        return None
    header = ("run", "won", "took the object", "put it somewhere", "admissible actions", "distinct actions")
    return Table(header, tuple(rows), numeric_from=1)


def verdicts(
    results: criteria.Results, warm: criteria.WarmStart, lam: float | None
) -> list[criteria.Verdict]:
    return [
        criteria.criterion_0(warm),
        criteria.criterion_1(results, lam),
        criteria.criterion_2(results, lam),
        criteria.criterion_2_mechanism(results, lam, warm),
        criteria.criterion_3(results),
        *criteria.criterion_4(results, lam),
    ]


def verdict_lines(results: criteria.Results, warm: criteria.WarmStart, lam: float | None) -> tuple[str, ...]:
    lines = [f"Criterion {v.claim} ({CLAIMS[v.claim]}): {v.text()}" for v in verdicts(results, warm, lam)]
    expected = (
        f"Claim 1's expectation, at λ = 0.01 neither ahead of GRPO: {criteria.small_lambda_note(results)}"
    )
    return (*lines[:2], expected, *lines[2:])


def lambda_block(choice: criteria.LambdaChoice | None, recorded: float | None) -> str:
    """The λ of claim 2: as recorded, as claim 1's rule gives it, and whether they agree."""
    if choice is None and recorded is None:
        return "The λ of claim 2 is not chosen yet: seed 0 of GRPO and of the reliable runs at λ = 0.1 and 1."
    if recorded is None:
        return f"The λ of claim 2: {lambda_text(choice.lam)} ({choice.reason})."
    text = f"The λ of claim 2: {lambda_text(recorded)} (chosen_lambda.json)"
    if choice is not None and choice.lam != recorded:
        return (
            text + f"; claim 1's rule on the results here gives {lambda_text(choice.lam)} ({choice.reason})."
        )
    return text + (f": {choice.reason}." if choice else ".")


def write_chosen_lambda(choice: criteria.LambdaChoice | None, results: criteria.Results, path: Path) -> bool:
    """Write chosen_lambda.json once claim 1's rule can choose, never over an existing one: whether it did."""
    if choice is None or path.is_file():
        return False
    seed0 = {name: results[(name, 0)].final for name in criteria.CLAIM_1_SEED0}
    record = {
        "lambda": choice.lam,
        "rule": criteria.LAMBDA_RULE,
        "reason": choice.reason,
    }
    text = json.dumps({**record, "seed0_final": seed0}, indent=2, ensure_ascii=False)
    path.write_text(text + "\n", encoding="utf-8")
    return True


def curve_groups(lam: float | None) -> dict[str, list[str]]:
    """Settings drawn together: each teacher's λ sweep (and adaptive λ) with GRPO, and the settings at the λ
    of claim 2."""
    groups = {}
    for teacher in TEACHERS:
        sweep = [constant_name(p, value, teacher) for p in ("opsd", "sdar") for value in LAMBDAS]
        groups[teacher] = ["grpo", *sweep, f"sdar-adaptive-{teacher}"]
    if lam is not None:
        at_lambda = [constant_name(p, lam, t) for p in ("opsd", "sdar") for t in TEACHERS]
        groups["chosen_lambda"] = [
            "grpo",
            *at_lambda,
            *(n for n in SETTING_NAMES if run_table(None)[n].waits_for_lambda),
        ]
    return groups


def draw_figures(runs: list[Run], lam: float | None, report_dir: Path) -> tuple[list[Image], list[Image]]:
    """(learning curves per group: a line per setting, mean over seeds, band min-max; the gate's histogram
    per seed, a panel per run) as images with captions, written into `report_dir`."""
    import matplotlib

    matplotlib.use("Agg")
    from sdar.evaluation.gate_plots import gate_histogram_figure
    from sdar.evaluation.plots import CURVES, curve_figure

    def save(figure, name: str, caption: str, into: list[Image]) -> None:
        if figure is not None:
            figure.savefig(report_dir / name)
            into.append(Image(name, caption))

    curves, histograms = [], []
    setting = {run.name: parse_run_name(run.name) for run in runs}  # (setting, seed)
    for group, names in curve_groups(lam).items():
        members = [
            dataclasses.replace(run, method=setting[run.name][0])
            for run in runs
            if setting[run.name][0] in names
        ]
        for curve in (curve for curve in CURVES if curve.stem in CURVE_STEMS and members):
            caption = f"{curve.title}, {group}: a line per setting (mean over seeds), band min–max over seeds"
            save(curve_figure(curve, members), f"curve_{group}_{curve.stem}.png", caption, curves)
    for seed in SEEDS:
        figure = gate_histogram_figure([run for run in runs if setting[run.name][1] == seed])
        caption = f"The gate's histogram over training, seed {seed}: a panel per run with a gate"
        save(figure, f"gate_histogram_s{seed}.png", caption, histograms)
    return curves, histograms


README_ROWS = (  # (row label, method prefix or setting, teacher)
    ("GRPO", "grpo", ""),
    ("GRPO+OPSD, reliable line", "opsd", "reliable"),
    ("GRPO+OPSD, half line", "opsd", "half"),
    ("SDAR, reliable line", "sdar", "reliable"),
    ("SDAR, half line", "sdar", "half"),
    ("SDAR routed: half line | no line", "sdar-routed-half", "half"),
    ("SDAR, entropy gate, half line", "sdar-entropy-half", "half"),
    ("SDAR, soft-OR gate, half line", "sdar-soft_or-half", "half"),
)
NO_DISTILLATION, ADAPTIVE = "no distillation", "adaptive λ (ρ = 0.5)"


def readme_cells(prefix: str, teacher: str, lam: float | None) -> dict[str, str]:
    """Column -> setting of one README row."""
    if prefix == "grpo":
        return {NO_DISTILLATION: "grpo"}
    if prefix in ("opsd", "sdar"):
        cells = {f"λ = {lambda_text(value)}": constant_name(prefix, value, teacher) for value in LAMBDAS}
        return cells | ({ADAPTIVE: f"sdar-adaptive-{teacher}"} if prefix == "sdar" else {})
    return {f"λ = {lambda_text(lam)}": prefix} if lam is not None else {}


def readme_block(results: criteria.Results, warm: criteria.WarmStart, lam: float | None) -> str:
    """One table: final success % (mean ± population std over seeds, seeds in brackets) by method and
    teacher (rows) and λ (columns); the warm start and the verdicts in a line each."""
    columns = [NO_DISTILLATION, *(f"λ = {lambda_text(value)}" for value in LAMBDAS), ADAPTIVE]
    rows = []
    for label, prefix, teacher in README_ROWS:
        cells = readme_cells(prefix, teacher, lam)
        row = []
        for column in columns:
            setting = cells.get(column)
            shown = [o for (name, _), o in results.items() if name == setting and o.final is not None]
            values = [outcome.final for outcome in shown]
            row.append(marked(f"{mean_std(values)} ({len(values)})", shown) if values else "–")
        if any(cell != "–" for cell in row):
            rows.append((label, *row))
    summary = "; ".join(f"{v.claim} {v.status}" for v in verdicts(results, warm, lam))
    blocks = [
        Paragraph(
            f"Where distillation and its gate matter ([{EXPERIMENT}]({EXPERIMENT}/README.md)): final "
            "success % on the 24 valid games at step 12, mean ± population std over seeds (n)."
        ),
        Table(("method, teacher", *columns), tuple(rows)) if rows else Paragraph("No run is in yet."),
        Paragraph(
            f"{warm_start_text(warm)} Criteria: {summary}. Details: [{EXPERIMENT}/report/results.md]"
            f"({EXPERIMENT}/report/results.md)."
        ),
    ]
    if copied_note(results):
        blocks.insert(2, Paragraph(COPIED_NOTE))
    return to_markdown(blocks).strip()


def section(title: str, legend: str, table: Table | None) -> list:
    """A section of results.md: its heading, its legend and its table; nothing when there is no table."""
    return [] if table is None else [Heading(title, 2), Paragraph(legend), table]


def results_markdown(
    runs: list[Run],
    results: criteria.Results,
    warm: criteria.WarmStart,
    lam: float | None,
    lam_text: str,
    figures,
) -> str:
    curves, histograms = figures
    done = {
        seed: sum(1 for (_, s), o in results.items() if s == seed and not o.copied_from) for seed in SEEDS
    }
    progress = ", ".join(f"seed {seed}: {count}" for seed, count in done.items())
    blocks = [
        Heading("Results: the distillation weight and the teacher's reliability", 1),
        Paragraph(
            "Written by `python experiments/teacher_reliability/report.py` from the committed results."
        ),
        Paragraph(
            f"Finished runs: {progress} (of {len(SETTING_NAMES) - len(EXPLORATORY)} settings of the design; "
            f"GRPO+OPSD's {len(TEACHER_BLIND_TWINS)} half-teacher settings are made only to check their "
            f"twins; {len(EXPLORATORY)} exploratory). "
            f"{warm_start_text(warm)}"
        ),
        Paragraph(lam_text),
        Heading("Success on the valid panel", 2),
        Paragraph(
            "Success % (24 games, temperature 0.4) at step 12 and at step 6, per seed, and mean ± population "
            "std over seeds."
        ),
        success_table(results, lam) if results else Paragraph("No run is in yet."),
        Paragraph(f"{copied_note(results)}{exploratory_note(results)}{criteria.twin_text(results)}"),
        Heading("Criteria (README.md, fixed before the runs)", 2),
        Bullets(verdict_lines(results, warm, lam)),
    ]
    blocks += section(
        "First-turn probes",
        "first_turn_probe.py at the final checkpoint: the student's probability (softmax over the first "
        "turn's `go to` actions, mean over the panel's games and the seeds) of going first to the object's "
        "receptacle and to the goal receptacle, where the half line points in the games it is wrong.",
        probe_table(results, warm),
    )
    blocks += section(
        "What the student does at the end",
        "The final panel's games (eval/final/episodes.jsonl) per run: games won, games in which the student "
        "took the object and put something down (admissible `take` and `put` actions), the share of its "
        f"actions that were admissible, and the distinct actions per game ({max_turns()} turns).",
        behaviour_table(runs),
    )
    if runs:
        blocks += [Heading("Gate", 2), Paragraph(GATE_LEGEND), gate_table(gate_rows(runs)), *histograms]
        blocks += section(
            "Routing between teachers",
            "Per run with several teachers, each token is distilled from the teacher of the largest gate: "
            "per teacher, the share of response tokens routed to it and its gap log π_T − log π_old (nats), "
            "means over the run's steps.",
            routing_table(runs),
        )
        blocks += [Heading("Optimizer steps and the distillation weight", 2), update_table(runs)]
    if curves:
        blocks += [Heading("Learning curves", 2), *curves]
    return to_markdown(blocks)


def readme_with_block(readme: str, block: str) -> str:
    """README.md with this experiment's block replaced; SystemExit naming the markers when it lacks them."""
    try:
        return splice(readme, BEGIN, END, block, str(README))
    except ValueError as error:
        raise SystemExit(str(error)) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="only check that README.md's block is up to date"
    )
    args = parser.parse_args(argv)
    runs = outcomes.read_runs(outcomes.RESULTS)
    made = {parse_run_name(run.name): outcomes.run_outcome(run, outcomes.PROBES) for run in runs}
    results = criteria.with_twins(made)
    warm = outcomes.read_warm_start(outcomes.WARM_START_EVALS, outcomes.PROBES)
    readme = README.read_text(encoding="utf-8")
    if args.check:
        block = readme_block(results, warm, outcomes.read_chosen_lambda(outcomes.CHOSEN_LAMBDA))
        if readme_with_block(readme, block) != readme:
            print(f"{README}: the teacher-reliability block is out of date: run {COMMAND}", file=sys.stderr)
            return 1
        print(f"{README}: the teacher-reliability block matches the committed results")
        return 0
    choice = criteria.choose_lambda(results)
    if write_chosen_lambda(choice, results, outcomes.CHOSEN_LAMBDA):
        print(f"chosen_lambda.json: λ = {lambda_text(choice.lam)} ({choice.reason})")
    recorded = outcomes.read_chosen_lambda(outcomes.CHOSEN_LAMBDA)
    REPORT.mkdir(parents=True, exist_ok=True)
    for stale in REPORT.glob("*.png"):  # figures of runs or groups no longer there
        stale.unlink()
    figures = draw_figures(runs, recorded, REPORT) if runs else ([], [])
    markdown = results_markdown(runs, results, warm, recorded, lambda_block(choice, recorded), figures)
    (REPORT / "results.md").write_text(markdown, encoding="utf-8")
    block = readme_block(results, warm, recorded)
    README.write_text(readme_with_block(readme, block), encoding="utf-8")
    print(f"written: {shown(REPORT / 'results.md')} and the block in {shown(README)}:")
    print(block)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
