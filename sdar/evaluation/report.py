"""`sdar report RUN_DIR...`: a Table-1-style comparison of runs (docs/method.md §7-§8), where the gate
matters per run (`gate_stats`, `gate_plots`) and learning curves.

Rows are methods (`algorithm.method`; `model · method` when the runs use several models); column groups are
evaluation panels (e.g. `alfworld/valid_seen`), each with one column per task type, "Avg" (overall success;
for Search-QA the plain mean of the datasets, docs/method.md §7; "Acc" when the env has a `score`), and one
column per env metric (WebShop Score, Search-QA F1). Runs of the same method, model and panel are seeds: a
cell is the mean ± population std over them; a cell of a single run shows the std over its evaluation seeds,
marked `*`.

Which evaluation of a run counts: per panel, "before training" is the one at checkpoint step 0; "final" is
the one of the highest checkpoint step, else the one labelled `final`, else the only one; "best" is the one
of the highest success rate. Results measured on different panel fingerprints are flagged (`†`), or refused
with `strict`.

Everything here is a pure function of `Run` records, except `write_report` at the end.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from sdar.errors import ConfigError
from sdar.evaluation.document import Block, Bullets, Heading, Image, Paragraph, Table, to_html, to_markdown
from sdar.evaluation.gate_plots import plot_gate_histograms
from sdar.evaluation.gate_stats import (
    GATE_LEGEND,
    HISTOGRAM_NOTE,
    gate_rows,
    gate_table,
    runs_without_histogram,
)
from sdar.evaluation.plots import panel_name, plot_curves
from sdar.evaluation.runs import Evaluation, Run

MACRO_AVERAGE_ENV_PREFIXES = ("search",)  # docs/method.md §7: Search-QA "Avg" = plain mean of the datasets
MISMATCH_MARK = "†"
WITHIN_EVAL_MARK = "*"


class ReportError(ConfigError):
    """The inputs cannot be compared as asked (e.g. different panels under `strict`)."""


@dataclass(frozen=True)
class Statistic:
    mean: float
    std: float | None  # None: one value and no spread to show
    count: int  # how many runs (training seeds) are behind the mean
    within_eval: bool = False  # the std is over one run's evaluation seeds


def mean_std(values: list[float], within_eval_std: float | None = None) -> Statistic | None:
    """Mean and population std over runs; one run falls back to its evaluation seeds' std (if given)."""
    if not values:
        return None
    if len(values) == 1:
        return Statistic(values[0], within_eval_std, 1, within_eval_std is not None)
    return Statistic(statistics.fmean(values), statistics.pstdev(values), len(values))


def final_evaluation(evaluations: list[Evaluation]) -> Evaluation | None:
    """The highest checkpoint step; without steps the one labelled `final`; else the only one."""
    stepped = [e for e in evaluations if e.checkpoint_step is not None]
    if stepped:
        return max(stepped, key=lambda e: (e.checkpoint_step, e.label == "final"))
    labelled = [e for e in evaluations if e.label.rsplit("/", 1)[-1] == "final"]
    if labelled:
        return labelled[0]
    return evaluations[0] if len(evaluations) == 1 else None


def start_evaluation(evaluations: list[Evaluation]) -> Evaluation | None:
    """The one at checkpoint step 0 (the model training started from, e.g. the warm start); else none."""
    return next((e for e in evaluations if e.checkpoint_step == 0), None)


def best_evaluation(evaluations: list[Evaluation]) -> Evaluation | None:
    """The highest success rate; ties go to the later checkpoint."""
    if not evaluations:
        return None
    return max(evaluations, key=lambda e: (e.summary["success_rate"], e.checkpoint_step or -1))


def by_panel(evaluations: list[Evaluation]) -> dict[str, list[Evaluation]]:
    grouped: dict[str, list[Evaluation]] = {}
    for evaluation in evaluations:
        grouped.setdefault(panel_name(evaluation), []).append(evaluation)
    return grouped


def is_macro_average(env: str) -> bool:
    return env.startswith(MACRO_AVERAGE_ENV_PREFIXES)


def summary_values(summary: dict) -> dict[str, tuple[float, float | None]]:
    """Column key -> (value in [0, 1], std over the evaluation's seeds or None) of one summary.json.

    Keys: `type:<task type>`, `avg`, `metric:<name>`."""
    env = str(summary.get("panel", {}).get("env", ""))
    several_seeds = len(summary.get("seeds", [])) > 1 and not summary.get("seed_independent", False)
    values: dict[str, tuple[float, float | None]] = {}
    per_type = summary.get("per_task_type") or {}
    for task_type, entry in per_type.items():
        values[f"type:{task_type}"] = (float(entry["success_rate"]), None)
    if is_macro_average(env) and per_type:
        values["avg"] = (statistics.fmean(float(e["success_rate"]) for e in per_type.values()), None)
    else:
        values["avg"] = (
            float(summary["success_rate"]),
            summary.get("success_rate_std") if several_seeds else None,
        )
    for name, entry in (summary.get("metrics") or {}).items():
        values[f"metric:{name}"] = (float(entry["mean"]), entry.get("std") if several_seeds else None)
    return values


@dataclass(frozen=True)
class Column:
    key: str
    label: str


@dataclass
class Row:
    label: str
    cells: dict[str, Statistic] = field(default_factory=dict)
    runs: list[str] = field(default_factory=list)
    episodes: int = 0
    fingerprints: set[str] = field(default_factory=set)

    @property
    def mismatched(self) -> bool:
        return len(self.fingerprints) > 1


@dataclass
class PanelTable:
    name: str
    env: str
    size: int | None
    columns: list[Column]
    rows: list[Row]

    @property
    def fingerprints(self) -> set[str]:
        return {fingerprint for row in self.rows for fingerprint in row.fingerprints}


def row_label(run: Run, several_models: bool) -> str:
    return f"{run.model_label} · {run.method}" if several_models else run.method


def _columns(summaries: list[dict]) -> list[Column]:
    types: dict[str, str] = {}
    metrics: list[str] = []
    for summary in summaries:
        for task_type, entry in (summary.get("per_task_type") or {}).items():
            types.setdefault(task_type, str(entry.get("label", task_type)))
        metrics += [name for name in summary.get("metrics") or {} if name not in metrics]
    average = "Acc" if "score" in metrics else "Avg"
    return (
        [Column(f"type:{t}", label) for t, label in types.items()]
        + [Column("avg", average)]
        + [Column(f"metric:{name}", name.capitalize() if len(name) > 2 else name.upper()) for name in metrics]
    )


def build_tables(runs: list[Run], choose) -> list[PanelTable]:
    """One table per panel name: a row per method (model · method), each cell mean ± std over its runs of the
    evaluation `choose(evaluations of one run on one panel)` picks."""
    several_models = len({run.model_label for run in runs}) > 1
    chosen: dict[str, list[tuple[Run, Evaluation]]] = {}
    for run in runs:
        for name, evaluations in by_panel(run.evaluations).items():
            evaluation = choose(evaluations)
            if evaluation is not None:
                chosen.setdefault(name, []).append((run, evaluation))
    tables = []
    for name in sorted(chosen):
        pairs = chosen[name]
        summaries = [evaluation.summary for _, evaluation in pairs]
        columns = _columns(summaries)
        grouped: dict[str, list[tuple[Run, Evaluation]]] = {}
        for run, evaluation in pairs:
            grouped.setdefault(row_label(run, several_models), []).append((run, evaluation))
        rows = []
        for label in sorted(grouped):
            members = grouped[label]
            row = Row(label, runs=[run.name for run, _ in members])
            values = [summary_values(evaluation.summary) for _, evaluation in members]
            for column in columns:
                present = [v[column.key] for v in values if column.key in v]
                within = present[0][1] if len(present) == 1 else None
                statistic = mean_std([value for value, _ in present], within)
                if statistic is not None:
                    row.cells[column.key] = statistic
            row.episodes = sum(int(e.summary.get("episodes", 0)) for _, e in members)
            row.fingerprints = {str(e.panel.get("fingerprint", "?")) for _, e in members}
            rows.append(row)
        first = pairs[0][1].panel
        tables.append(PanelTable(name, str(first.get("env", "?")), first.get("size"), columns, rows))
    return tables


def fingerprint_problems(tables: list[PanelTable]) -> list[str]:
    """Human-readable notes for every panel whose results were measured on different task sets."""
    problems = []
    for table in tables:
        for row in table.rows:
            if row.mismatched:
                problems.append(
                    f"{table.name}, {row.label}: runs {', '.join(row.runs)} were evaluated on different "
                    f"panels (fingerprints {', '.join(sorted(row.fingerprints))}); not a mean over seeds"
                )
        if len(table.fingerprints) > 1 and not any(row.mismatched for row in table.rows):
            problems.append(
                f"{table.name}: the methods were evaluated on different panels (fingerprints "
                f"{', '.join(sorted(table.fingerprints))}); rows are not comparable"
            )
    return problems


def duplicate_seed_problems(runs: list[Run]) -> list[str]:
    """Runs of one method and model that share a seed are not independent seeds of a mean."""
    seen: dict[tuple, list[str]] = {}
    for run in runs:
        if run.metrics and run.seed is not None:
            seen.setdefault((run.model_label, run.method, run.env, run.seed), []).append(run.name)
    return [
        f"runs {', '.join(names)} ({method}, {model}, {env}) share seed {seed}: they count as separate seeds"
        for (model, method, env, seed), names in seen.items()
        if len(names) > 1
    ]


def format_statistic(statistic: Statistic | None, mismatched: bool = False) -> str:
    """`84.4 ± 1.2` in percent; `*` marks a std over evaluation seeds, `†` a panel mismatch."""
    if statistic is None:
        return "–"
    text = f"{100 * statistic.mean:.1f}"
    if statistic.std is not None:
        text += f" ± {100 * statistic.std:.1f}"
        if statistic.within_eval:
            text += WITHIN_EVAL_MARK
    return text + (MISMATCH_MARK if mismatched else "")


def table_block(table: PanelTable) -> Table:
    header = ("method", *(column.label for column in table.columns), "runs", "episodes", "panel")
    rows = []
    for row in table.rows:
        cells = [format_statistic(row.cells.get(c.key), row.mismatched) for c in table.columns]
        rows.append(
            (row.label, *cells, str(len(row.runs)), str(row.episodes), ", ".join(sorted(row.fingerprints)))
        )
    return Table(header, tuple(rows))


def run_table(runs: list[Run]) -> Table:
    rows = []
    for run in sorted(runs, key=lambda r: (r.method, r.model, r.seed if r.seed is not None else -1, r.name)):
        finals, bests = [], []
        for name, evaluations in sorted(by_panel(run.evaluations).items()):
            final, best = final_evaluation(evaluations), best_evaluation(evaluations)
            finals.append(f"{name}: {final.label if final else 'none'}")
            bests.append(f"{name}: {best.label if best else 'none'}")
        steps = str(run.metrics[-1]["step"]) if run.metrics else "–"
        seed = "–" if run.seed is None else str(run.seed)
        rows.append(
            (
                run.name,
                run.method,
                run.env,
                run.model_label,
                seed,
                steps,
                "; ".join(finals) or "–",
                "; ".join(bests) or "–",
                run.code or "–",
            )
        )
    header = ("run", "method", "env", "model", "seed", "steps", "final evaluation", "best evaluation", "code")
    return Table(header, tuple(rows), numeric_from=len(header))


LEGEND = (
    "Cells: success % (env metrics × 100), mean ± population std over runs of the row (training seeds); "
    f"'{WITHIN_EVAL_MARK}': a single run, std over its evaluation seeds; '{MISMATCH_MARK}': the runs of "
    "the cell were evaluated on different panels. 'episodes' counts all evaluated episodes of the row."
)


def gate_blocks(runs: list[Run], histograms: list[tuple[str, str]]) -> list[Block]:
    """The gate section: a row per training run (where the gate leaves ½, mean gate and gap), then the gate's
    histogram over training and a list of the runs it leaves out; nothing when no run has a gate."""
    rows = gate_rows(runs)
    if not histograms and not any(row.off_half or row.gate_mean for row in rows):
        return []
    blocks: list[Block] = [Heading("Gate", 2), Paragraph(GATE_LEGEND), gate_table(rows)]
    blocks += [Image(path, caption) for path, caption in histograms]
    left_out = runs_without_histogram(runs)  # run names are untrusted: a list item, escaped, not a paragraph
    return blocks + ([Paragraph(HISTOGRAM_NOTE), Bullets(tuple(left_out))] if left_out else [])


def report_blocks(
    runs: list[Run], plots: list[tuple[str, str]], command: str = "", notes=(), histograms=()
) -> list[Block]:
    """The whole report as blocks: final, before-training and best tables per panel, the gate per run, the
    runs, curves, warnings. `plots` and `histograms`: (image path, caption) of the curves and of the gate
    histogram."""
    blocks: list[Block] = [Heading("sdar report", 1)]
    if command:
        blocks += [Paragraph("Made by:"), Paragraph(command, code=True)]
    final_tables, best_tables = build_tables(runs, final_evaluation), build_tables(runs, best_evaluation)
    start_tables = build_tables(runs, start_evaluation)
    sections = [("Final evaluation", final_tables), ("Best over evaluations", best_tables)]
    if start_tables:  # runs evaluated at step 0 (trainer.eval_at_start): where training started
        sections.insert(1, ("Before training (step 0)", start_tables))
    for title, tables in sections:
        blocks.append(Heading(title, 2))
        if tables and title == "Final evaluation":
            blocks.append(Paragraph(LEGEND))
        if not tables:
            blocks.append(Paragraph("No evaluations found (expected RUN_DIR/eval/<label>/summary.json)."))
        for table in tables:
            size = f", {table.size} tasks" if table.size is not None else ""
            blocks += [Heading(f"{table.name} (env {table.env}{size})", 3), table_block(table)]
    blocks += gate_blocks(runs, list(histograms))
    blocks += [Heading("Runs", 2), run_table(runs)]
    if plots:
        blocks.append(Heading("Learning curves", 2))
        blocks += [Image(path, caption) for path, caption in plots]
    tables = final_tables + start_tables + best_tables
    problems = [*fingerprint_problems(tables), *duplicate_seed_problems(runs), *notes]
    if problems:
        blocks += [Heading("Warnings", 2), Bullets(tuple(dict.fromkeys(problems)))]
    return blocks


def check_panels(runs: list[Run]) -> list[str]:
    """Fingerprint problems of the final and best tables (empty when every comparison is sound)."""
    return fingerprint_problems(build_tables(runs, final_evaluation) + build_tables(runs, best_evaluation))


def write_report(
    paths, output_dir: str | Path, *, strict: bool = False, command: str = ""
) -> dict[str, Path]:
    """Read the runs, write report.md, report.html and curve PNGs into output_dir; return what was written."""
    from sdar.evaluation.runs import read_inputs

    runs = read_inputs(paths)
    problems = check_panels(runs)
    if strict and problems:
        raise ReportError("refusing to compare results of different panels:\n  " + "\n  ".join(problems))
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    try:
        plots, histograms = plot_curves(runs, output_dir), plot_gate_histograms(runs, output_dir)
    except ImportError as error:
        plots, histograms, notes = [], [], [f"learning curves skipped: {error}"]
    blocks = report_blocks(
        runs,
        [(path.name, caption) for path, caption in plots],
        command,
        notes,
        [(path.name, caption) for path, caption in histograms],
    )
    written = {"markdown": output_dir / "report.md", "html": output_dir / "report.html"}
    written["markdown"].write_text(to_markdown(blocks), encoding="utf-8")
    written["html"].write_text(to_html(blocks, "sdar report", image_base=output_dir), encoding="utf-8")
    for path, _ in plots + histograms:
        written[path.stem] = path
    return written
