"""The experiment's report, and the README's results block, from the committed results only.

    python experiments/cpu_reproduction/report.py          # report/ (Markdown, HTML, curves), README block
    python experiments/cpu_reproduction/report.py --check  # exit 1 when README.md's block is out of date
    python experiments/cpu_reproduction/report.py --results FOLDER   # a pilot's or the replica's runs

Inputs: every finished run under results/ (eval/final written), the warm start's evaluations
(teacher_vs_student/plain and /skills on the valid panel, results/warm-start-valid_seen on ALFWorld) and the
skill-reading probes (teacher_vs_student/skill_reading.json of the warm start, skill_reading-RUN-stepN.json of
the runs' checkpoints). Each runs folder's report/results.md holds its final and best tables, the
teacher-student gap dynamics, the probes, the paper's claims (judged by paper_claims.py) and links to the
curves; the README block (between BEGIN and END) sums up the full design's runs folders in one table, one
column per panel and warm start. tests/test_experiment_report.py checks that all of them match the
committed results.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import statistics
import sys
from collections import Counter
from pathlib import Path

import torch
from paper_claims import (  # beside this file
    GENERATED_PANEL,
    METHODS,
    SEEDS,
    VALID_SEEN_PANEL,
    claims,
    pooled_line,
)

from sdar.algorithms import get_method
from sdar.algorithms.distill import GATE_OFF_HALF, gap_gate, gate_off_half  # the trainer's, too
from sdar.evaluation.document import Bullets, Paragraph, Table, to_markdown
from sdar.evaluation.document import splice as splice_block
from sdar.evaluation.plots import CURVES
from sdar.evaluation.report import (
    LEGEND,
    best_evaluation,
    build_tables,
    final_evaluation,
    format_statistic,
    table_block,
    write_report,
)
from sdar.evaluation.runs import SAMPLES, Run, metric_value, parse_jsonl, read_inputs

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
README = ROOT / "README.md"
REPORT = HERE / "report"
RESULTS = HERE / "results"
# The runs folders of the full design (every method and seed, one config), whose blocks judge the paper's
# claims: the experiment's and its replica's (the same design from a retrained warm start), not the pilots'.
REPLICA_RESULTS = HERE / "replica_warm_start" / "results"
FULL_DESIGN = (RESULTS, REPLICA_RESULTS)
README_PARTS = (  # (name in the pooled comparison, column title, runs folder): the README table's parts
    ("original", "original warm start", RESULTS),
    ("replica", "replica warm start", REPLICA_RESULTS),
)
README_ROWS = ("grpo", "grpo_opsd", "sdar", "warm start")  # the README table's rows, in this order
WARM_START_EVALS = ("teacher_vs_student/plain", "teacher_vs_student/skills", "results/warm-start-valid_seen")
BEGIN = "<!-- results: written by `python experiments/cpu_reproduction/report.py`; do not edit by hand -->"
END = "<!-- results: end -->"
# The evaluation tables' (title, which evaluation of a run, only these panels: None = all)
FINAL = ("Final evaluation (runs: step 12; warm start: before any RL step)", final_evaluation, None)
BEST = ("Best of the evaluations at steps 6 and 12", best_evaluation, {GENERATED_PANEL})
SDAR_BETA = get_method("sdar").beta
GATE_OFF_HALF_GAP = math.log((0.5 + GATE_OFF_HALF) / (0.5 - GATE_OFF_HALF)) / SDAR_BETA  # printed: 0.0401
# What is committed of a run's samples.jsonl (the bulk, ~0.5 MB a run, stays out of git): see samples_digest.
SAMPLES_DIGEST = "samples_digest.json"
READING = "teacher_vs_student/skill_reading{}.json"  # skill_reading.py's: "" the warm start, -RUN-stepN
READING_COLUMNS = (  # (header, key in the JSON): probabilities at the first turn, mean over the panel's games
    ("line's receptacle: student", "student_line_p"),
    ("line's receptacle: teacher", "teacher_line_p"),
    ("expert's receptacle: student", "student_p"),
    ("expert's receptacle: teacher", "teacher_p"),
)


def finished_runs(results: Path) -> list[Path]:
    return sorted(
        path for path in results.glob("*-s[0-9]*") if (path / "eval" / "final" / "summary.json").is_file()
    )


def experiment_of(results: Path) -> Path:
    """The experiment folder of a runs folder: the one holding `results/`, or a pilot that keeps its runs at
    its top. Its teacher_vs_student/ and report/ belong with the runs."""
    return results.parent if results.name == "results" else results


def inputs(results: Path, experiment: Path | None = None) -> list[Path]:
    """The finished runs, and the warm start's evaluations under `experiment` (default: experiment_of)."""
    experiment = experiment or experiment_of(results)
    evaluations = [experiment / name for name in WARM_START_EVALS]
    return finished_runs(results) + [path for path in evaluations if (path / "summary.json").is_file()]


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _mean_std(values: list[float], signed: bool, digits: int = 3) -> str:
    if not values:
        return "–"
    text = f"{statistics.fmean(values):{'+' if signed else ''}.{digits}f}"
    return text + (f" ± {statistics.pstdev(values):.{digits}f}" if len(values) > 1 else "")


def dynamics_table(runs: list[Run]) -> Table:
    """Per method, mean ± std over its seeds: the teacher-student gap and gate at the first and last step,
    training success over all steps, the steps with reward signal (some group both won and lost: nonzero
    advantages), signs of instability (lowest valid-action ratio, admissible-action ratio at the last step,
    largest gradient norm), and how often SDAR's gate departs from ½ on logged replies."""

    def first(run: Run, key: str) -> float | None:
        return next((v for m in run.metrics if (v := metric_value(m, key)) is not None), None)

    def last(run: Run, key: str) -> float | None:
        return next((v for m in reversed(run.metrics) if (v := metric_value(m, key)) is not None), None)

    def over_steps(run: Run, key: str, reduce) -> float | None:
        values = [v for m in run.metrics if (v := metric_value(m, key)) is not None]
        return reduce(values) if values else None

    def with_signal(values: list[float]) -> float:
        return float(sum(value > 0 for value in values))

    columns = (  # (name, value of a run, digits)
        ("gap Δ, step 1", lambda r: first(r, "distill/gap_mean"), 3),
        ("gap Δ, last step", lambda r: last(r, "distill/gap_mean"), 3),
        ("Δ > 0 share, step 1", lambda r: first(r, "distill/positive_gap_ratio"), 3),
        ("Δ > 0 share, last step", lambda r: last(r, "distill/positive_gap_ratio"), 3),
        ("gate mean, last step", lambda r: last(r, "distill/gate_mean"), 3),
        ("train success, all steps", lambda r: over_steps(r, "train/won_rate", statistics.fmean), 3),
        ("steps with reward signal", lambda r: over_steps(r, "train/advantage_abs_mean", with_signal), 1),
        ("lowest valid-action ratio", lambda r: over_steps(r, "train/valid_action_ratio", min), 3),
        ("admissible-action ratio, last step", lambda r: last(r, "train/admissible_action_ratio"), 3),
        ("largest grad norm", lambda r: over_steps(r, "grad/norm", max), 3),
        (f"logged tokens with σ(5Δ) off ½ by > {GATE_OFF_HALF}", run_gate_off_half, 3),
    )
    rows = []
    for method in sorted({run.method for run in runs}):
        mine = [run for run in runs if run.method == method]
        cells = []
        for name, value, digits in columns:
            values = [v for run in mine if (v := value(run)) is not None]
            cells.append(_mean_std(values, signed=name.startswith("gap"), digits=digits))
        steps = sorted({run.metrics[-1]["step"] for run in mine})
        rows.append((method, str(len(mine)), "/".join(map(str, steps)), *cells))
    return Table(("method", "runs", "steps", *(name for name, _, _ in columns)), tuple(rows))


def reading_table(experiment: Path, warm_start: Path | None = None) -> Table | None:
    """skill_reading.py of the warm start (under `warm_start`, default `experiment`) and of the runs'
    checkpoints (under `experiment`), per method and step mean ± std over seeds: where the student (no line)
    and the teacher (the line) would go first. None before any run's."""
    groups: dict[tuple[str, int], list[dict]] = {}
    for path in experiment.glob(READING.format("-*-s[0-9]*-step[0-9]*")):
        if match := re.fullmatch(r"skill_reading-(.+)-s\d+-step(\d+)\.json", path.name):
            key = (match.group(1), int(match.group(2)))
            groups.setdefault(key, []).append(json.loads(path.read_text(encoding="utf-8")))
    if not groups:
        return None
    warm_start = (warm_start or experiment) / READING.format("")
    if warm_start.is_file():
        groups[("warm start", 0)] = [json.loads(warm_start.read_text(encoding="utf-8"))]
    rows = []
    for (model, step), results in sorted(
        groups.items(), key=lambda item: (item[0][0] != "warm start", item[0])
    ):
        cells = [_mean_std([result[key] for result in results], signed=False) for _, key in READING_COLUMNS]
        rows.append((model, str(step), str(len(results)), *cells))
    header = ("model", "step", "runs", *(name for name, _ in READING_COLUMNS))
    return Table(header, tuple(rows))


def logged_episodes(run: Run) -> list[dict]:
    """The episodes the run's samples.jsonl keeps of each step, with their replies and per-token gaps."""
    path = Path(run.path) / SAMPLES
    if not run.path or not path.is_file():
        return []
    return parse_jsonl(path.read_text(encoding="utf-8").splitlines(), str(path))[0]


def reply_digest(reply: str | None) -> str | None:
    """A reply's first 16 hex digits of sha256: equal replies, equal digests (what agreement compares)."""
    return None if reply is None else hashlib.sha256(reply.encode("utf-8")).hexdigest()[:16]


def samples_digest(run: Run) -> dict:
    """What this report reads of a run's samples.jsonl, small enough to commit in its place (SAMPLES_DIGEST):
    every logged reply's digest by "step/episode/turn", the count of reply tokens logged with a gap, how many
    of those gaps are 0, and the (token, gap) pairs whose gap moves SDAR's gate off ½."""
    pairs, replies, seen = [], {}, {}
    for record in logged_episodes(run):
        step = record.get("step")
        episode = seen[step] = seen.get(step, -1) + 1
        for turn in record.get("turns") or []:
            replies[f"{step}/{episode}/{turn.get('turn')}"] = reply_digest(turn.get("response"))
            pairs += zip(turn.get("tokens") or [], turn.get("gap") or [], strict=False)
    off = sdar_gate_off_half([gap for _, gap in pairs])
    return {
        "logged_gap_tokens": len(pairs),
        "zero_gap_tokens": sum(gap == 0 for _, gap in pairs),
        "gate_off_half": [[token, gap] for (token, gap), moved in zip(pairs, off, strict=True) if moved],
        "replies": replies,
    }


def read_samples_digest(run: Run) -> dict | None:
    """The run's samples digest: computed from samples.jsonl where the run has it, else the committed
    SAMPLES_DIGEST; None when it has neither."""
    if run.path and (Path(run.path) / SAMPLES).is_file():
        return samples_digest(run)
    path = Path(run.path) / SAMPLES_DIGEST if run.path else None
    return json.loads(path.read_text(encoding="utf-8")) if path and path.is_file() else None


def sdar_gate_off_half(gaps: list[float]) -> list[bool]:
    """Whether SDAR's gate σ(βΔ) (its β, 5) puts each gap more than GATE_OFF_HALF from ½, as the trainer's
    distill/gate_off_half_ratio counts; for any run's gaps, GRPO+OPSD's too (whose own gate is ½)."""
    return gate_off_half(gap_gate(torch.tensor(gaps, dtype=torch.float64), beta=SDAR_BETA)).tolist()


def run_gate_off_half(run: Run) -> float | None:
    """The share of the logged reply tokens where SDAR's gate is more than GATE_OFF_HALF from ½, GRPO+OPSD's
    constant gate: the only tokens where their distillation terms differ. None without gaps."""
    digest = read_samples_digest(run)
    if not digest or not digest["logged_gap_tokens"]:
        return None
    return len(digest["gate_off_half"]) / digest["logged_gap_tokens"]


def print_gate_tokens(run: Run, most_common: int = 20) -> None:
    """`--gate-tokens RUN`: which logged tokens move SDAR's gate off ½, and how many gaps are 0 as logged."""
    digest = read_samples_digest(run)
    if not digest or not digest["logged_gap_tokens"]:
        raise SystemExit(f"{run.path}: no reply tokens logged with a gap ({SAMPLES} or {SAMPLES_DIGEST})")
    total = digest["logged_gap_tokens"]
    decisive = Counter(token.strip() for token, _ in digest["gate_off_half"])
    print(f"{run.name}: {total} logged reply tokens")
    print(f"gate σ(5Δ) more than {GATE_OFF_HALF} from ½ (|Δ| > {GATE_OFF_HALF_GAP:.4f}): "
          f"{sum(decisive.values()) / total:.1%}")  # fmt: skip
    print(f"gap 0 as logged (4 decimals): {digest['zero_gap_tokens'] / total:.1%}")
    common = ", ".join(f"{token!r} {count}" for token, count in decisive.most_common(most_common))
    print(f"most common of those tokens: {common}")


def logged_replies(run: Run) -> dict[str, str]:
    """Digest of each sampled reply by "step/episode/turn", from the run's samples (or their digest)."""
    digest = read_samples_digest(run)
    return digest["replies"] if digest else {}


def agreement_line(runs: list[Run]) -> str:
    """How many logged training replies each run shares, word for word, with the GRPO run of its seed (same
    seed = same tasks and sampling seeds: a share near 100 % means the methods' updates have not yet changed
    what the policy samples)."""
    grpo = {run.seed: logged_replies(run) for run in runs if run.method == "grpo"}
    parts = []
    for run in sorted(runs, key=lambda r: (r.method, r.seed if r.seed is not None else -1)):
        if run.method == "grpo" or run.seed not in grpo:
            continue
        mine, theirs = logged_replies(run), grpo[run.seed]
        shared = [key for key in mine if key in theirs]
        same = sum(mine[key] == theirs[key] for key in shared)
        parts.append(f"{run.method} s{run.seed}: {same} of {len(shared)}")
    if not parts:
        return ""
    return (
        "Logged training replies (samples.jsonl) identical to those of the GRPO run of the same seed: "
        + "; ".join(parts)
        + "."
    )


def write_samples_digests(results: Path) -> list[Path]:
    """SAMPLES_DIGEST beside every samples.jsonl of the finished runs under `results` (what is committed of
    a run instead of its samples); the written paths."""
    written = []
    for path in finished_runs(results):
        if (path / SAMPLES).is_file():
            run = Run(path.name, "", "", "", None, path=str(path))
            target = path / SAMPLES_DIGEST
            target.write_text(json.dumps(samples_digest(run), indent=0) + "\n", encoding="utf-8")
            written.append(target)
    return written


def progress_line(runs: list[Run]) -> str:
    done = {(run.method, run.seed) for run in runs}
    parts = [f"{method} {sum((method, seed) in done for seed in SEEDS)}/{len(SEEDS)}" for method in METHODS]
    return "Finished runs (seeds): " + ", ".join(parts) + "."


def evaluation_tables(everything: list[Run], title: str, choose, panels: set[str] | None) -> list:
    """One table per panel (only `panels`, when given) of the evaluations `choose` picks, under `title`."""
    tables = [t for t in build_tables(everything, choose) if panels is None or t.name in panels]
    blocks = [Paragraph(f"**{title}**")] if tables else []
    for table in tables:
        blocks += [Paragraph(f"*{table.name}* ({table.size} tasks)"), table_block(table)]
    return blocks


def claims_blocks(runs: list[Run]) -> list:
    return [
        Paragraph(
            "**The paper's claims at this scale** (criteria fixed before any run of this experiment; they "
            "are in `experiments/cpu_reproduction/paper_claims.py`)"
        ),
        claims(runs),
    ]


def read_runs(results: Path, experiment: Path | None = None) -> tuple[list[Path], list[Run], list[Run]]:
    """(input folders, everything evaluated, the runs among it: those with training metrics)."""
    found = inputs(results, experiment)
    everything = read_inputs(found) if found else []
    return found, everything, [run for run in everything if run.metrics]


def results_block(results: Path = RESULTS, report_dir: Path = REPORT, experiment: Path | None = None) -> str:
    """A runs folder's results block (report/results.md): what the committed results give, as Markdown. The
    paper's claims are judged for the runs folders of the full design (FULL_DESIGN), not for a pilot."""
    found, everything, runs = read_runs(results, experiment)
    blocks = [Paragraph(progress_line(runs)), Paragraph(LEGEND)]
    blocks += evaluation_tables(everything, *FINAL) + evaluation_tables(everything, *BEST)
    if runs:
        blocks += [
            Paragraph("**Teacher-student gap and stability during training** (mean ± std over seeds)"),
            dynamics_table(runs),
        ]
    if agreement := agreement_line(runs):
        blocks.append(Paragraph(agreement))
    if (reading := reading_table(experiment_of(results), experiment)) is not None:
        blocks += [
            Paragraph(
                "**What the student took in** (`skill_reading.py` on the runs' checkpoints: "
                f"at the first turn of the {GENERATED_PANEL} games, the probability of going first to the "
                "receptacle the usual-places line names, and to the one the expert goes to; student: without "
                "the line, teacher: with it; mean ± std over seeds)"
            ),
            reading,
        ]
    if results in FULL_DESIGN:
        blocks += claims_blocks(runs)
    if not found:
        blocks.append(Paragraph("Nothing evaluated yet."))
        return to_markdown(blocks).strip()
    logged = {key for run in runs for metrics in run.metrics for key in metrics}
    curves = ", ".join(
        f"[{curve.stem.replace('_', ' ')}]({relative(report_dir / f'curve_{curve.stem}.png')})"
        for curve in CURVES
        if logged.intersection(curve.keys)  # the curves plot_curves draws
    )
    full = f"the full report: [{relative(report_dir / 'report.md')}]({relative(report_dir / 'report.md')})"
    blocks.append(Paragraph(f"Curves: {curves}; {full}." if curves else f"No training curves yet; {full}."))
    return to_markdown(blocks).strip()


def readme_block() -> str:
    """The README's results block: ONE table of the final evaluation's Avg per method (rows) and per panel of
    each warm start (columns), mean ± std over seeds, then SDAR − GRPO pooled over both warm starts and links
    to each runs folder's full block (results.md)."""
    columns: list[tuple[str, dict[str, str]]] = []  # (header, row label -> cell)
    parts, links = [], []
    for label, title, results in README_PARTS:
        _, everything, runs = read_runs(results)
        parts.append((label, runs))
        full = relative(experiment_of(results) / "report" / "results.md")
        links.append(f"[{title}]({full})")
        for table in build_tables(everything, final_evaluation):
            cells = {
                row.label: f"{format_statistic(row.cells.get('avg'), row.mismatched)} ({len(row.runs)})"
                for row in table.rows
            }
            columns.append((f"{table.name}, {title} ({table.size} tasks)", cells))
    rows = tuple(
        (label, *(cells.get(label, "–") for _, cells in columns))
        for label in README_ROWS
        if any(label in cells for _, cells in columns)
    )
    blocks = [
        Paragraph(
            "Final success % (step 12; the warm start: before any RL step), mean ± population std over "
            "training seeds (runs in brackets):"
        ),
        Table(("method", *(header for header, _ in columns)), rows),
    ]
    pooled = [line for panel in (GENERATED_PANEL, VALID_SEEN_PANEL) if (line := pooled_line(parts, panel))]
    if pooled:
        blocks.append(Bullets(tuple(pooled)))
    blocks.append(
        Paragraph(
            "Per task type, best evaluations, the paper's claims judged, gap dynamics, probes and curves: "
            + ", ".join(links)
            + "."
        )
    )
    return to_markdown(blocks).strip()


def splice(readme: str, block: str) -> str:
    """README text with the text between BEGIN and END replaced by `block`."""
    try:
        return splice_block(readme, BEGIN, END, block, str(README))
    except ValueError as error:
        raise SystemExit(str(error)) from None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that README.md is up to date")
    parser.add_argument(
        "--results",
        type=Path,
        default=RESULTS,
        help="the runs folder (default results/); its report and its block (results.md) go to report/ beside "
        "it (FOLDER/report when FOLDER is not named results); README.md's block is refreshed either way",
    )
    parser.add_argument(
        "--warm-start",
        type=Path,
        default=None,
        help="the folder whose teacher_vs_student/ and results/warm-start-valid_seen/ evaluated the runs' "
        "warm start (default: the one holding results/, or FOLDER itself)",
    )
    parser.add_argument(
        "--gate-tokens",
        type=Path,
        metavar="RUN",
        help="only print which of RUN's logged reply tokens move SDAR's gate off ½ (the dynamics table's "
        "last column), and the share of gaps that are 0",
    )
    args = parser.parse_args()
    if args.gate_tokens:
        print_gate_tokens(Run(args.gate_tokens.name, "", "", "", None, path=str(args.gate_tokens)))
        return 0
    results = args.results.resolve()
    experiment = None if args.warm_start is None else args.warm_start.resolve()
    report_dir = experiment_of(results) / "report"
    if not args.check:
        for written in write_samples_digests(results):
            print(f"samples digest: {relative(written)}")
    readme = README.read_text(encoding="utf-8")
    updated = splice(readme, readme_block())
    if args.check:
        if updated != readme:
            print(f"{README} is out of date: run python {relative(Path(__file__))}", file=sys.stderr)
            return 1
        print(f"{README}: the results block matches the committed results")
        return 0
    command = f"python {relative(Path(__file__))}" + (
        "" if results == RESULTS else f" --results {relative(results)}"
    )
    if experiment is not None:
        command += f" --warm-start {relative(experiment)}"
    for stale in report_dir.glob("curve_*.png"):  # curves of runs no longer in the folder
        stale.unlink()
    found = inputs(results, experiment)
    if found:
        written = write_report(found, report_dir, command=command)
        print(f"report: {relative(written['markdown'])} ({len(written) - 2} plots)")
    report_dir.mkdir(parents=True, exist_ok=True)
    block = results_block(results, report_dir, experiment)
    (report_dir / "results.md").write_text(block + "\n", encoding="utf-8")
    print(f"results block: {relative(report_dir / 'results.md')}")
    if updated != readme:
        README.write_text(updated, encoding="utf-8")
        print("README.md: results block updated")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
