"""Where the gate matters, from each run's metrics.jsonl: the gate's histogram over training and a per-run
table of how often the gate leaves ½ (docs/method.md §3, "The SDAR term"). Pure functions of `Run` records.

The update logs, per step, `distill/gate_bin_0` … `distill/gate_bin_9`: the share of response tokens whose
gate g falls in [i/10, (i+1)/10) (the last bin includes 1), and `distill/gate_off_half_ratio`: the share
with |g − ½| > 0.05, the tokens on which SDAR weighs its distillation term unlike GRPO+OPSD's constant ½.
A run without a gate (GRPO) logs none of these; its cells read `–`.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from sdar.evaluation.document import Table
from sdar.evaluation.runs import Run, metric_value

GATE_BINS = 10
GATE_BIN_KEYS = tuple(f"distill/gate_bin_{index}" for index in range(GATE_BINS))
GATE_OFF_HALF_KEY = "distill/gate_off_half_ratio"
GATE_MEAN_KEY = "distill/gate_mean"
GAP_MEAN_KEY = "distill/gap_mean"
MISSING = "–"  # the report's mark for a value not logged (as in its other tables)


@dataclass(frozen=True)
class GateHistogram:
    """The gate's histogram over one run's steps: `shares[b][s]` = share of tokens in bin b at `steps[s]`
    (shape [GATE_BINS, len(steps)]); None where that step did not log that bin."""

    steps: tuple[int, ...]
    shares: tuple[tuple[float | None, ...], ...]


def gate_histogram(metrics: list[dict]) -> GateHistogram | None:
    """The histogram of the steps that logged any gate bin, in step order; None when no step did."""
    columns = [
        (int(record["step"]), [metric_value(record, key) for key in GATE_BIN_KEYS]) for record in metrics
    ]
    columns = sorted((step, shares) for step, shares in columns if any(v is not None for v in shares))
    if not columns:
        return None
    steps = tuple(step for step, _ in columns)
    shares = tuple(tuple(column[index] for _, column in columns) for index in range(GATE_BINS))
    return GateHistogram(steps, shares)


@dataclass(frozen=True)
class SeriesSummary:
    """One metric over a run's steps that logged it: mean over those steps, first and last value."""

    mean: float
    first: float
    last: float
    steps: int


def series_summary(metrics: list[dict], key: str) -> SeriesSummary | None:
    """mean_s x_s, x_first, x_last over the steps s (in step order) with a finite `key`; None when none."""
    values = [
        value
        for record in sorted(metrics, key=lambda r: r["step"])
        if (value := metric_value(record, key)) is not None
    ]
    if not values:
        return None
    return SeriesSummary(statistics.fmean(values), values[0], values[-1], len(values))


@dataclass(frozen=True)
class GateRow:
    """A run's gate diagnostics; None where the run did not log the quantity."""

    run: Run
    off_half: SeriesSummary | None
    gate_mean: SeriesSummary | None
    gap_mean: SeriesSummary | None


def gate_rows(runs: list[Run]) -> list[GateRow]:
    """One row per training run (runs with metrics), ordered like the report's Runs table."""
    trained = [run for run in runs if run.metrics]
    ordered = sorted(trained, key=lambda r: (r.method, r.model, r.seed if r.seed is not None else -1, r.name))
    return [
        GateRow(
            run,
            series_summary(run.metrics, GATE_OFF_HALF_KEY),
            series_summary(run.metrics, GATE_MEAN_KEY),
            series_summary(run.metrics, GAP_MEAN_KEY),
        )
        for run in ordered
    ]


def _percent(value: float | None) -> str:
    return MISSING if value is None else f"{100 * value:.1f}"


def gate_table(rows: list[GateRow]) -> Table:
    """The per-run table: gate off ½ (% of tokens: mean over steps, first, last step), mean gate, mean gap."""
    header = (
        "run",
        "method",
        "seed",
        "gate off ½, % tokens: mean",
        "first step",
        "last step",
        "gate mean",
        "gap mean Δ",
    )
    body = []
    for row in rows:
        off_half = row.off_half
        body.append(
            (
                row.run.name,
                row.run.method,
                MISSING if row.run.seed is None else str(row.run.seed),
                _percent(off_half.mean if off_half else None),
                _percent(off_half.first if off_half else None),
                _percent(off_half.last if off_half else None),
                f"{row.gate_mean.mean:.3f}" if row.gate_mean else MISSING,
                f"{row.gap_mean.mean:+.3f}" if row.gap_mean else MISSING,
            )
        )
    return Table(header, tuple(body), numeric_from=2)


GATE_LEGEND = (
    "'gate off ½': the share of response tokens whose gate differs from ½ by more than 0.05 "
    f"(`{GATE_OFF_HALF_KEY}`), the tokens on which SDAR's distillation term weighs differently from "
    "GRPO+OPSD's constant ½: its mean over the run's logged steps, and its value at the first and the last "
    f"of them. 'gate mean' and 'gap mean Δ' (nats): the mean over steps of `{GATE_MEAN_KEY}` and "
    f"`{GAP_MEAN_KEY}`. '{MISSING}': not logged (a run without a gate, such as GRPO, or without a teacher "
    "for the gap)."
)


def run_histograms(runs: list[Run]) -> list[tuple[Run, GateHistogram]]:
    """(run, histogram) of every training run that logged the gate's bins, in the given order."""
    pairs = [(run, gate_histogram(run.metrics)) for run in runs if run.metrics]
    return [(run, histogram) for run, histogram in pairs if histogram is not None]


def runs_without_histogram(runs: list[Run]) -> list[str]:
    """Names of the training runs without gate bins: the figure leaves them out, the text names them."""
    return [run.name for run in runs if run.metrics and gate_histogram(run.metrics) is None]


HISTOGRAM_NOTE = (
    "No gate histogram for these runs: their metrics.jsonl logs no `distill/gate_bin_*` (a method without a "
    "gate, such as GRPO, or a run made before these keys were logged):"
)
