"""Learning curves of `sdar report`: one PNG per quantity, one line per method (mean over its seeds) with a
min-max band over seeds. The numbers come from pure functions; matplotlib (Agg, no display) only draws."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from sdar.evaluation.runs import Run, metric_value


@dataclass(frozen=True)
class Curve:
    """What one PNG shows: a file stem, a title, and the metrics.jsonl keys drawn (solid, then dashed)."""

    stem: str
    title: str
    keys: tuple[str, ...]


CURVES = (
    Curve("success", "Success rate (train: solid, validation: dashed)", ("train/won_rate", "val/won_rate")),
    Curve("return", "Mean episode return", ("train/return_mean",)),
    Curve("gate_mean", "Gate mean σ(βΔ)", ("distill/gate_mean",)),
    Curve("gap_mean", "Teacher-student gap mean Δ", ("distill/gap_mean",)),
    Curve("positive_gap_ratio", "Share of tokens with Δ > 0", ("distill/positive_gap_ratio",)),
    Curve("valid_action_ratio", "Valid action ratio", ("train/valid_action_ratio",)),
    Curve("admissible_action_ratio", "Admissible action ratio", ("train/admissible_action_ratio",)),
)


@dataclass(frozen=True)
class BandPoint:
    step: int
    mean: float
    low: float
    high: float
    count: int  # seeds with a value at this step


def curve_band(metric_lists: list[list[dict]], key: str) -> list[BandPoint]:
    """Per step: mean, min and max of `key` over the runs (seeds) that logged it at that step."""
    by_step: dict[int, list[float]] = {}
    for metrics in metric_lists:
        for record in metrics:
            value = metric_value(record, key)
            if value is not None:
                by_step.setdefault(int(record["step"]), []).append(value)
    return [
        BandPoint(step, statistics.fmean(values), min(values), max(values), len(values))
        for step, values in sorted(by_step.items())
    ]


def curve_groups(runs: list[Run]) -> dict[str, list[Run]]:
    """Runs with metrics grouped into lines: by method, plus env and model when the runs differ in them."""
    with_metrics = [run for run in runs if run.metrics]
    several_envs = len({run.env for run in with_metrics}) > 1
    several_models = len({run.model for run in with_metrics}) > 1
    groups: dict[str, list[Run]] = {}
    for run in with_metrics:
        parts = [run.method, *([run.env] if several_envs else [])]
        parts += [run.model_label] if several_models else []
        groups.setdefault(" · ".join(parts), []).append(run)
    return dict(sorted(groups.items()))


def plot_curves(runs: list[Run], output_dir: Path) -> list[tuple[Path, str]]:
    """Write curve_<stem>.png for every curve some run logged; return (path, caption) pairs."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError("matplotlib is not installed: pip install 'sdar[plots]' (or matplotlib)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot
    from matplotlib.ticker import MaxNLocator

    groups = curve_groups(runs)
    written = []
    for curve in CURVES:
        lines = {
            (label, key): curve_band([run.metrics for run in members], key)
            for label, members in groups.items()
            for key in curve.keys
        }
        if not any(lines.values()):
            continue
        figure, axes = pyplot.subplots(figsize=(6.4, 4.0), dpi=100)
        colours = pyplot.rcParams["axes.prop_cycle"].by_key()["color"]
        for index, label in enumerate(groups):
            colour = colours[index % len(colours)]
            for position, key in enumerate(curve.keys):
                points = lines[(label, key)]
                if not points:
                    continue
                steps = [p.step for p in points]
                seeds = max(p.count for p in points)
                name = label if position == 0 else f"{label} ({key.split('/')[0]})"
                style = "-" if position == 0 else "--"
                marker = "o" if len(points) == 1 else None
                axes.plot(
                    steps,
                    [p.mean for p in points],
                    style,
                    color=colour,
                    marker=marker,
                    label=f"{name} (n={seeds})",
                )
                if seeds > 1:
                    axes.fill_between(
                        steps, [p.low for p in points], [p.high for p in points], color=colour, alpha=0.2
                    )
        axes.set_title(curve.title)
        axes.set_xlabel("step")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
        figure.tight_layout()
        path = output_dir / f"curve_{curve.stem}.png"
        figure.savefig(path)
        pyplot.close(figure)
        written.append((path, f"{curve.title}; band: min-max over seeds"))
    return written
