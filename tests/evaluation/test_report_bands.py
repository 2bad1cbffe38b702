"""`sdar report`'s curves over seeds: every group of several seeds is a mean with a min-max band (a bar at the
evaluation steps), the legend says so, and a single seed is a line without band."""

from __future__ import annotations

import pytest
from test_plots import CURVE, evaluation, lines_of, run

from sdar.evaluation.plots import SPREAD_LEGEND, curve_figure, plot_curves


def two_seeds_and_one():
    def evaluations(won_at_0, won_at_2):
        return [evaluation("step_0", won_at_0, step=0), evaluation("final", won_at_2, step=2)]

    return [
        run("s0", "sdar", [0.1, 0.3], evaluations=evaluations(0, 2)),
        run("s1", "sdar", [0.3, 0.5], seed=1, evaluations=evaluations(1, 4)),
        run("g0", "grpo", [0.2, 0.2], evaluations=[evaluation("final", 1, step=2)]),
    ]


def test_train_success_of_several_seeds_is_a_mean_line_with_a_min_max_band():
    (axes,) = curve_figure(CURVE["success"], two_seeds_and_one()).axes
    (sdar,) = lines_of(axes, "sdar (n=2)")
    assert list(sdar.get_ydata()) == pytest.approx([0.2, 0.4])  # the mean of the seeds per step
    bands = [c for c in axes.collections if c.get_hatch()]
    (band,) = bands  # grpo's single seed draws no band
    lows, highs = band.get_paths()[0].vertices[:, 1].min(), band.get_paths()[0].vertices[:, 1].max()
    assert (lows, highs) == pytest.approx((0.1, 0.5))
    assert lines_of(axes, "grpo (n=1)")


def test_evaluations_of_several_seeds_get_a_min_max_bar_and_a_single_seed_none():
    (axes,) = curve_figure(CURVE["success"], two_seeds_and_one()).axes
    (markers,) = lines_of(axes, "sdar evaluation")
    assert list(markers.get_ydata()) == [0.125, 0.75]  # (0/4 + 1/4) / 2, (2/4 + 4/4) / 2
    bars = [c for c in axes.collections if not c.get_hatch()]
    (bar,) = bars  # grpo's single evaluated seed: a marker without bar
    segments = [[tuple(point) for point in segment] for segment in bar.get_segments()]
    assert segments == [[(0.0, 0.0), (0.0, 0.25)], [(2.0, 0.5), (2.0, 1.0)]]  # min-max over the seeds


def test_the_legend_says_what_line_and_band_are_only_when_a_band_is_drawn():
    (axes,) = curve_figure(CURVE["success"], two_seeds_and_one()).axes
    legend = axes.get_legend()
    assert (
        legend.get_title().get_text()
        == SPREAD_LEGEND
        == "line, marker: mean of n seeds; band, bar: min–max over them"
    )
    assert "sdar (n=2)" in [text.get_text() for text in legend.get_texts()]
    (single,) = curve_figure(CURVE["success"], [run("g0", "grpo", [0.2, 0.2])]).axes
    assert single.get_legend().get_title().get_text() == ""
    assert not single.collections  # one seed: a line without band


def test_captions_name_the_mean_and_the_band(tmp_path):
    written = dict((path.stem, caption) for path, caption in plot_curves(two_seeds_and_one(), tmp_path))
    assert "line: mean over a method's n seeds, band: min–max over them" in written["curve_success"]
    assert "evaluations: mean marker, min–max bar" in written["curve_success"]
