"""Tables of what the runs logged while they trained (metrics.jsonl), in the order report.py lists settings:
the optimizer steps and the distillation weight λ each run applied, and the routing between teachers."""

from __future__ import annotations

import statistics

from run_table import EXPLORATORY, LAMBDAS, SETTING_NAMES, TEACHERS, constant_name, parse_run_name

from sdar.evaluation.document import Table
from sdar.evaluation.runs import Run


def display_order() -> list[str]:
    """Settings as the tables list them: GRPO and the exploratory settings (GRPO's variants), then by method,
    teacher and λ, then the rest of the table."""
    constants = [constant_name(p, lam, t) for p in ("opsd", "sdar") for t in TEACHERS for lam in LAMBDAS]
    first = ["grpo", *EXPLORATORY, *constants]
    return [*first, *(name for name in SETTING_NAMES if name not in first)]


def in_display_order(runs: list[Run]) -> list[Run]:
    """Runs sorted by their setting's place in display_order()."""
    return sorted(runs, key=lambda run: display_order().index(parse_run_name(run.name)[0]))


def update_table(runs: list[Run]) -> Table:
    """Per run, the optimizer steps taken (`update/optimizer_steps`; GRPO skips a step whose gradient is 0),
    the gradient norm's range over the steps taken (`grad/norm`), and the distillation weight λ the steps
    applied (`distill/lambda`: constant, or set per step by the adaptive rule), mean and range."""
    rows = []
    for run in in_display_order(runs):
        taken = [row for row in run.metrics if row.get("update/optimizer_steps")]
        norms = [row["grad/norm"] for row in taken if "grad/norm" in row]
        span = f"{min(norms):.1e} – {max(norms):.1e}" if norms else "–"
        weights = [row["distill/lambda"] for row in run.metrics if "distill/lambda" in row]
        lam = "–"
        if weights:
            lam = f"{sum(weights) / len(weights):.2g} ({min(weights):.2g} – {max(weights):.2g})"
        rows.append((run.name, f"{len(taken)}/{len(run.metrics)}", span, lam))
    header = ("run", "optimizer steps", "gradient norm, min – max", "λ, mean (min – max)")
    return Table(header, tuple(rows))


def routing_table(runs: list[Run]) -> Table | None:
    """Per run with several teachers and per teacher, the share of response tokens routed to it
    (`distill/teacher_<name>/share`) and its mean log π_T − log π_old over all response tokens
    (`/gap_mean`), each a mean over the run's steps; None when no run routes."""
    rows = []
    for run in in_display_order(runs):
        logged = run.metrics[0] if run.metrics else {}
        teachers = [key.split("/")[1] for key in logged if key.startswith("distill/teacher_")]
        for teacher in dict.fromkeys(teachers):  # each once, in the logged order
            share, gap = (
                statistics.mean(row[f"distill/{teacher}/{stat}"] for row in run.metrics)
                for stat in ("share", "gap_mean")
            )
            rows.append((run.name, teacher.removeprefix("teacher_"), f"{100 * share:.1f}", f"{gap:+.4f}"))
    if not rows:
        return None
    return Table(("run", "teacher", "tokens routed to it %", "gap mean Δ"), tuple(rows), numeric_from=2)
