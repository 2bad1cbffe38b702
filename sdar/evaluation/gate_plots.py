"""The gate's histogram over training as `sdar report` draws it: one heatmap panel per run that logged the
gate's bins (x = training step, y = gate value in tenths of [0, 1], colour = share of the step's response
tokens in that tenth). The numbers come from `gate_stats`; matplotlib (a Figure, no display) only draws.

One colour scale for every panel (0 to 100 % of tokens), so runs compare by colour; a step that did not log a
bin is left blank. Runs without the bins are not drawn (the report's text names them)."""

from __future__ import annotations

import math
from pathlib import Path

from sdar.evaluation.gate_stats import GATE_BINS, GateHistogram, run_histograms
from sdar.evaluation.plots import require_matplotlib
from sdar.evaluation.runs import Run

HISTOGRAM_STEM = "gate_histogram"
HISTOGRAM_TITLE = "Gate histogram over training"
COLOUR_MAP = "viridis"
PANEL_HEIGHT = 2.0  # inches per run: ten bins stay readable
FIGURE_WIDTH = 6.4


def histogram_grid(histogram: GateHistogram) -> tuple[int, int, list[list[float]]]:
    """(first step, last step, rows): rows[b][s - first] = share of bin b at step s, NaN where not logged;
    shape [GATE_BINS, last - first + 1], so every step gets one column of width 1."""
    first, last = histogram.steps[0], histogram.steps[-1]
    rows = [[math.nan] * (last - first + 1) for _ in range(GATE_BINS)]
    for index, step in enumerate(histogram.steps):
        for bin_index in range(GATE_BINS):
            share = histogram.shares[bin_index][index]
            if share is not None:
                rows[bin_index][step - first] = share
    return first, last, rows


def panel_title(run: Run) -> str:
    seed = "" if run.seed is None else f", seed {run.seed}"
    return f"{run.name} ({run.method}{seed})"


def gate_histogram_figure(runs: list[Run]):
    """The matplotlib Figure (one panel per run with gate bins, top to bottom in the given order), or None
    when no run logged them."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    pairs = run_histograms(runs)
    if not pairs:
        return None
    figure = Figure(figsize=(FIGURE_WIDTH, 1.0 + PANEL_HEIGHT * len(pairs)), dpi=100, layout="constrained")
    panels = figure.subplots(len(pairs), 1, sharex=True, squeeze=False)[:, 0]
    image = None
    for axes, (run, histogram) in zip(panels, pairs, strict=True):
        first, last, rows = histogram_grid(histogram)
        image = axes.imshow(
            rows,
            origin="lower",
            extent=(first - 0.5, last + 0.5, 0.0, 1.0),  # a column per step, a row per tenth of the gate
            aspect="auto",
            interpolation="nearest",
            cmap=COLOUR_MAP,
            vmin=0.0,
            vmax=1.0,
        )
        axes.axhline(0.5, color="white", linewidth=0.8, linestyle=":")  # GRPO+OPSD's constant gate
        axes.set_title(panel_title(run), fontsize=9, parse_math=False)  # run names are text, never TeX
        axes.set_ylabel("gate g")
        axes.set_yticks([0.0, 0.5, 1.0])
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    panels[-1].set_xlabel("training step")
    figure.colorbar(
        image,
        ax=list(panels),
        label="share of response tokens",
        format=PercentFormatter(xmax=1.0, decimals=0),
    )
    figure.suptitle(f"{HISTOGRAM_TITLE} (one panel per run; dotted: g = ½)", fontsize=10)
    return figure


def plot_gate_histograms(runs: list[Run], output_dir: Path) -> list[tuple[Path, str]]:
    """Write gate_histogram.png when some run logged the gate's bins; return (path, caption) pairs."""
    require_matplotlib()
    figure = gate_histogram_figure(runs)
    if figure is None:
        return []
    path = output_dir / f"{HISTOGRAM_STEM}.png"
    figure.savefig(path)
    caption = (
        f"{HISTOGRAM_TITLE}: per run, the share of response tokens whose gate falls in each tenth of [0, 1] "
        "at each step (distill/gate_bin_0 … 9); blank: not logged"
    )
    return [(path, caption)]
