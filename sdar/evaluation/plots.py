"""Learning curves of `sdar report`: one PNG per quantity, one line per method (mean over its seeds) with a
min-max band over seeds; on the success panel, the runs' evaluations (RUN/eval/*) as markers (mean over the
seeds evaluated at that step) with a min-max bar. A single seed draws a line (or markers) without band or
bar; the legend names n and says what line and band are. The numbers come from pure functions; matplotlib
(a Figure, no display) only draws.

Lines that coincide stay visible: each method's line is drawn narrower than the one before and above it, with
its own marker, so equal curves show as one line inside another. Bands are light, outlined and hatched per
method, so two overlapping bands stay apart."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from sdar.evaluation.runs import Evaluation, Run, metric_value


@dataclass(frozen=True)
class Curve:
    """What one PNG shows: a file stem, a title, the metrics.jsonl keys drawn (solid, then dashed), the y
    label with its unit, and whether the quantity is a share in [0, 1] (axis fixed to it, shown in %)."""

    stem: str
    title: str
    keys: tuple[str, ...]
    ylabel: str
    share: bool = False
    bounded: bool = False  # a value in [0, 1] that is not a share of something (the gate)
    evaluations: bool = False  # the runs' evaluation success rates go on these axes


CURVES = (
    Curve(
        "success",
        "Success rate (train: solid, validation: dashed, evaluations: markers)",
        ("train/won_rate", "val/won_rate"),
        "success rate (% of episodes)",
        share=True,
        evaluations=True,
    ),
    Curve("return", "Mean episode return", ("train/return_mean",), "return (summed reward per episode)"),
    Curve(
        "gate_mean",
        "Gate mean σ(βΔ)",
        ("distill/gate_mean",),
        "gate σ(βΔ) (token mean, 0 to 1)",
        bounded=True,
    ),
    Curve("gap_mean", "Teacher-student gap mean Δ", ("distill/gap_mean",), "gap Δ (nats per token)"),
    Curve(
        "positive_gap_ratio",
        "Share of tokens with Δ > 0",
        ("distill/positive_gap_ratio",),
        "tokens with Δ > 0 (% of tokens)",
        share=True,
    ),
    Curve(
        "valid_action_ratio",
        "Valid action ratio",
        ("train/valid_action_ratio",),
        "valid actions (% of turns)",
        share=True,
    ),
    Curve(
        "admissible_action_ratio",
        "Admissible action ratio",
        ("train/admissible_action_ratio",),
        "admissible actions (% of turns)",
        share=True,
    ),
)
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")
HATCHES = ("////", "\\\\", "....", "xx", "||", "--", "++", "oo")
EVALUATION_MARKERS = ("*", "p", "H", "d")  # one per panel
MAX_MARKERS = 12  # per line: enough to tell the methods apart, few enough not to hide the line
BAND_ALPHA = 0.12
SPREAD_LEGEND = "line, marker: mean of n seeds; band, bar: min–max over them"


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
    several_models = len({run.model_label for run in with_metrics}) > 1
    groups: dict[str, list[Run]] = {}
    for run in with_metrics:
        parts = [run.method, *([run.env] if several_envs else [])]
        parts += [run.model_label] if several_models else []
        groups.setdefault(" · ".join(parts), []).append(run)
    return dict(sorted(groups.items()))


def panel_name(evaluation: Evaluation) -> str:
    """The name a panel goes by in the report: its own name, else `env/split`."""
    panel = evaluation.panel
    return str(panel.get("name") or f"{panel.get('env', '?')}/{panel.get('split', '?')}")


def evaluation_step(evaluation: Evaluation, run: Run) -> int | None:
    """The training step an evaluation measured: its checkpoint's step, else `step_N` in its label, else the
    run's last step for a `final` one; None when nothing says."""
    if evaluation.checkpoint_step is not None:
        return evaluation.checkpoint_step
    name = evaluation.label.rsplit("/", 1)[-1]
    if name.startswith("step_") and name[5:].isdigit():
        return int(name[5:])
    if name == "final" and run.metrics:
        return int(run.metrics[-1]["step"])
    return None


def evaluation_points(runs: list[Run]) -> dict[tuple[str, str], list[BandPoint]]:
    """(line label, panel name) -> per training step: mean, min and max success rate over the group's runs
    evaluated on that panel at that step (a run evaluated twice at one step counts its later label once)."""
    values: dict[tuple[str, str], dict[int, dict[str, float]]] = {}
    for label, members in curve_groups(runs).items():
        for run in members:
            for evaluation in run.evaluations:
                step = evaluation_step(evaluation, run)
                rate = metric_value(evaluation.summary, "success_rate")
                if step is not None and rate is not None:
                    by_step = values.setdefault((label, panel_name(evaluation)), {})
                    by_step.setdefault(step, {})[run.name] = rate
    return {
        key: [
            BandPoint(
                step, statistics.fmean(rates.values()), min(rates.values()), max(rates.values()), len(rates)
            )
            for step, rates in sorted(by_step.items())
        ]
        for key, by_step in sorted(values.items())
    }


def curve_figure(curve: Curve, runs: list[Run]):
    """The matplotlib Figure of one curve, or None when no run logged it (nor, for success, was evaluated)."""
    from matplotlib import rcParams
    from matplotlib.colors import to_rgba
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    groups = curve_groups(runs)
    lines = {
        (label, key): curve_band([run.metrics for run in members], key)
        for label, members in groups.items()
        for key in curve.keys
    }
    evaluations = evaluation_points(runs) if curve.evaluations else {}
    if not any(lines.values()) and not evaluations:
        return None
    figure = Figure(figsize=(6.4, 4.0), dpi=100)
    axes = figure.subplots()
    colours = rcParams["axes.prop_cycle"].by_key()["color"]
    panels = sorted({panel for _, panel in evaluations})
    spread = False  # some band or bar is drawn: the legend says what it is
    for index, label in enumerate(groups):
        colour = colours[index % len(colours)]
        # Earlier groups are wider and lower: a later line equal to one before shows inside it.
        layer = len(groups) - 1 - index
        width, size, zorder = 1.5 + 1.5 * layer, 4.0 + 2.0 * layer, 2.0 + 0.1 * index
        for position, key in enumerate(curve.keys):
            points = lines[(label, key)]
            if not points:
                continue
            steps = [p.step for p in points]
            seeds = max(p.count for p in points)
            name = label if position == 0 else f"{label} ({key.split('/')[0]})"
            axes.plot(
                steps,
                [p.mean for p in points],
                "-" if position == 0 else "--",
                color=colour,
                linewidth=width,
                marker=MARKERS[index % len(MARKERS)],
                markersize=size,
                markevery=max(1, -(-len(points) // MAX_MARKERS)),
                zorder=zorder,
                clip_on=not (curve.share or curve.bounded),  # a line at 0 or 1 is drawn over the frame
                label=f"{name} (n={seeds})",
            )
            if seeds > 1:
                spread = True
                axes.fill_between(
                    steps,
                    [p.low for p in points],
                    [p.high for p in points],
                    facecolor=to_rgba(colour, BAND_ALPHA),
                    edgecolor=to_rgba(colour, 0.8),
                    linewidth=0.8,
                    hatch=HATCHES[index % len(HATCHES)],
                    zorder=1.0,
                )
        for panel in panels:
            points = evaluations.get((label, panel), [])
            if not points:
                continue
            axes.plot(
                [p.step for p in points],
                [p.mean for p in points],
                linestyle="None",
                color=colour,
                marker=EVALUATION_MARKERS[panels.index(panel) % len(EVALUATION_MARKERS)],
                markersize=6.0 + 3.0 * layer,
                markeredgecolor="black",
                markeredgewidth=0.8,
                zorder=3.0 + 0.1 * index,  # above every line
                clip_on=False,
                label=f"{label} evaluation {panel} (n={max(p.count for p in points)})",
            )
            if max(p.count for p in points) > 1:
                spread = True
                axes.errorbar(
                    [p.step for p in points],
                    [p.mean for p in points],
                    yerr=[[p.mean - p.low for p in points], [p.high - p.mean for p in points]],
                    fmt="none",
                    ecolor=colour,
                    elinewidth=1.0 + layer,
                    capsize=3.0 + layer,
                    zorder=3.0 + 0.1 * index,
                    clip_on=False,
                )
    axes.set_title(curve.title, fontsize=10)
    axes.set_xlabel("training step")
    axes.set_ylabel(curve.ylabel)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    if curve.share or curve.bounded:
        axes.set_ylim(0.0, 1.0)
    if curve.share:
        axes.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, title=SPREAD_LEGEND if spread else None, title_fontsize=7)
    figure.tight_layout()
    return figure


def has_matplotlib() -> bool:
    """The figures here are matplotlib `Figure`s written to files, not pyplot windows: no backend to pick."""
    return find_spec("matplotlib") is not None


def require_matplotlib() -> None:
    if not has_matplotlib():
        raise ImportError("matplotlib is not installed: pip install 'sdar[plots]' (or matplotlib)")


def plot_run_success(run_dir: Path) -> Path | None:
    """Write RUN/curve_success.png, the run's own learning curve (train success per step, its panel
    evaluations as markers); None when matplotlib is missing or there is nothing to draw."""
    from sdar.evaluation.runs import read_run

    if not has_matplotlib():
        return None
    figure = curve_figure(CURVES[0], [read_run(run_dir)])
    if figure is None:  # no step logged a success rate and no panel ran
        return None
    path = Path(run_dir) / f"curve_{CURVES[0].stem}.png"
    figure.savefig(path)
    return path


def plot_curves(runs: list[Run], output_dir: Path) -> list[tuple[Path, str]]:
    """Write curve_<stem>.png for every curve some run logged; return (path, caption) pairs."""
    require_matplotlib()
    written = []
    for curve in CURVES:
        figure = curve_figure(curve, runs)
        if figure is None:
            continue
        path = output_dir / f"curve_{curve.stem}.png"
        figure.savefig(path)
        caption = (
            f"{curve.title}; line: mean over a method's n seeds, band: min–max over them (one seed: a line "
            "without band)"
            + ("; evaluations: mean marker, min–max bar" if curve.evaluations else "")
            + "; equal lines show one inside the other"
        )
        written.append((path, caption))
    return written
