"""`sdar report`'s learning curves: the figure objects (axis limits, labels, line styles, bands, evaluation
markers), not their pixels."""

from __future__ import annotations

import pytest
from matplotlib.colors import to_rgba
from test_report import make_summary

from sdar.evaluation.plots import CURVES, curve_figure, evaluation_points
from sdar.evaluation.runs import Evaluation, Run

CURVE = {curve.stem: curve for curve in CURVES}


def run(name, method, won_rates, *, seed=0, evaluations=(), **logged):
    """A training run whose step s (from 1) logged won_rates[s - 1], and the same under the `logged` keys."""
    metrics = [
        {"step": step, "train/won_rate": rate, **{key.replace("__", "/"): rate for key in logged}}
        for step, rate in enumerate(won_rates, start=1)
    ]
    return Run(name, method, "alfworld", "m", seed, metrics, list(evaluations))


def evaluation(label, won, episodes=4, step=None, panel="valid_seen"):
    summary = make_summary({"pick_and_place_simple": (won, episodes)}, step=step)
    summary["panel"]["name"] = f"alfworld/{panel}"
    return Evaluation(label, summary)


def lines_of(axes, suffix=""):
    return [
        line
        for line in axes.get_lines()
        if not line.get_label().startswith("_") and suffix in line.get_label()
    ]


def test_the_success_axis_stays_within_0_and_100_percent():
    runs = [run("a", "grpo", [0.0, 0.0, 0.0]), run("b", "sdar", [0.0, 0.5, 1.0])]
    (axes,) = curve_figure(CURVE["success"], runs).axes
    assert axes.get_ylim() == (0.0, 1.0)
    assert axes.yaxis.get_major_formatter()(0.5, 0) == "50%"


def test_unbounded_curves_keep_their_own_range():
    runs = [run("a", "grpo", [0.1, 0.2], train__return_mean=1, distill__gap_mean=1)]
    runs[0].metrics[0]["train/return_mean"] = -3.0
    (axes,) = curve_figure(CURVE["return"], runs).axes
    low, high = axes.get_ylim()
    assert low < -3.0 and high > 0.2


@pytest.mark.parametrize(
    "stem, label",
    [
        ("success", "success rate (% of episodes)"),
        ("return", "return (summed reward per episode)"),
        ("gate_mean", "gate σ(βΔ) (token mean, 0 to 1)"),
        ("gap_mean", "gap Δ (nats per token)"),
        ("positive_gap_ratio", "tokens with Δ > 0 (% of tokens)"),
        ("valid_action_ratio", "valid actions (% of turns)"),
        ("admissible_action_ratio", "admissible actions (% of turns)"),
    ],
)
def test_every_panel_labels_its_y_axis_with_the_unit(stem, label):
    logged = {key.replace("/", "__"): 1 for key in CURVE[stem].keys}
    (axes,) = curve_figure(CURVE[stem], [run("a", "sdar", [0.2, 0.4], **logged)]).axes
    assert axes.get_ylabel() == label
    assert axes.get_xlabel() == "training step"


def test_identical_lines_stay_visible_one_inside_the_other():
    runs = [run(name, name, [0.0] * 30) for name in ("grpo", "opsd", "sdar")]
    (axes,) = curve_figure(CURVE["success"], runs).axes
    lines = lines_of(axes, "(n=1)")
    assert [line.get_label() for line in lines] == ["grpo (n=1)", "opsd (n=1)", "sdar (n=1)"]
    assert len({line.get_marker() for line in lines}) == 3
    assert len({line.get_color() for line in lines}) == 3
    widths = [line.get_linewidth() for line in lines]
    sizes = [line.get_markersize() for line in lines]
    orders = [line.get_zorder() for line in lines]
    assert widths == sorted(widths, reverse=True) and len(set(widths)) == 3  # the widest underneath
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == 3
    assert orders == sorted(orders) and len(set(orders)) == 3
    assert all(len(line.get_xdata()) == 30 for line in lines)
    assert all(len(range(0, 30, line.get_markevery())) <= 12 for line in lines)  # markers stay sparse
    assert axes.get_legend() is not None


def test_overlapping_bands_are_light_outlined_and_hatched_differently():
    runs = [
        run("a0", "grpo", [0.1, 0.3, 0.2]),
        run("a1", "grpo", [0.3, 0.5, 0.4], seed=1),
        run("b0", "sdar", [0.2, 0.3, 0.3]),
        run("b1", "sdar", [0.4, 0.5, 0.5], seed=1),
    ]
    (axes,) = curve_figure(CURVE["success"], runs).axes
    bands = axes.collections
    assert len(bands) == 2
    for band, line in zip(bands, lines_of(axes, "(n=2)"), strict=True):
        face, edge = band.get_facecolor()[0], band.get_edgecolor()[0]
        assert face[3] <= 0.15  # light enough that a second band shows through
        assert edge[3] >= 0.6 and band.get_linewidth()[0] > 0  # and an edge line marks where it ends
        assert tuple(face[:3]) == pytest.approx(to_rgba(line.get_color())[:3])
    hatches = [band.get_hatch() for band in bands]
    assert all(hatches) and len(set(hatches)) == 2


def test_evaluation_points_are_the_mean_success_per_group_panel_and_step():
    first = [
        evaluation("step_0", 0, step=0),
        evaluation("step_2", 2, step=2),
        evaluation("final", 3, step=3),
        evaluation("final", 1, step=3, panel="valid_unseen"),
    ]
    second = [
        evaluation("step_0", 1, step=0),
        evaluation("step_2", 4, step=2),
        evaluation("final", 4),  # no checkpoint recorded: the run's last step
    ]
    runs = [
        run("s0", "sdar", [0.1, 0.2, 0.3], evaluations=first),
        run("s1", "sdar", [0.1, 0.2, 0.3], seed=1, evaluations=second),
        run("g0", "grpo", [0.1, 0.2, 0.3], evaluations=[evaluation("step_4", 2)]),  # step from the label
    ]
    points = evaluation_points(runs)
    seen = points[("sdar", "alfworld/valid_seen")]
    assert [(p.step, p.mean, p.low, p.high, p.count) for p in seen] == [
        (0, 0.125, 0.0, 0.25, 2),
        (2, 0.75, 0.5, 1.0, 2),
        (3, 0.875, 0.75, 1.0, 2),
    ]
    assert [(p.step, p.mean) for p in points[("sdar", "alfworld/valid_unseen")]] == [(3, 0.25)]
    assert [(p.step, p.mean) for p in points[("grpo", "alfworld/valid_seen")]] == [(4, 0.5)]


def test_evaluations_are_markers_on_the_success_axes():
    evaluations = [evaluation("step_0", 0, step=0), evaluation("final", 3, step=2)]
    runs = [run("s0", "sdar", [0.1, 0.2], evaluations=evaluations), run("g0", "grpo", [0.0, 0.0])]
    (axes,) = curve_figure(CURVE["success"], runs).axes
    (markers,) = lines_of(axes, "evaluation")
    assert markers.get_label() == "sdar evaluation alfworld/valid_seen (n=1)"
    assert markers.get_linestyle() == "None" and markers.get_marker() not in ("None", None, "")
    assert list(markers.get_xdata()) == [0, 2] and list(markers.get_ydata()) == [0.0, 0.75]
    (training,) = lines_of(axes, "sdar (n=1)")
    assert markers.get_color() == training.get_color()
    assert markers.get_zorder() > max(
        line.get_zorder() for line in lines_of(axes, "(n=1)") if line is not markers
    )
    assert axes.get_xlim()[0] <= 0  # step 0 is on the axes
    return_axes = curve_figure(
        CURVE["return"], [run("s0", "sdar", [0.1], evaluations=evaluations, train__return_mean=1)]
    ).axes[0]
    assert not lines_of(return_axes, "evaluation")  # evaluations are success rates: only on that panel


def test_a_run_with_only_evaluations_and_no_success_metric_still_gets_a_success_panel():
    runs = [Run("s0", "sdar", "alfworld", "m", 0, [{"step": 1, "train/return_mean": 1.0}],
                [evaluation("final", 2, step=1)])]  # fmt: skip
    figure = curve_figure(CURVE["success"], runs)
    assert figure is not None and lines_of(figure.axes[0], "evaluation")
    assert curve_figure(CURVE["gate_mean"], runs) is None


def test_a_finished_run_draws_its_own_success_curve_into_its_directory(tmp_path):
    import json

    import matplotlib.image

    from sdar.evaluation.plots import plot_run_success

    (tmp_path / "config.yaml").write_text("seed: 3\nalgorithm: {method: sdar}\nenv: {name: alfworld-gen}\n")
    steps = [{"step": 1, "train/won_rate": 0.25}, {"step": 2, "train/won_rate": 0.75}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(step) + "\n" for step in steps))
    path = plot_run_success(tmp_path)
    assert path == tmp_path / "curve_success.png"
    height, width, _ = matplotlib.image.imread(path).shape
    assert height > 100 and width > 100


def test_without_matplotlib_a_run_skips_its_curve_and_a_report_names_the_install(tmp_path, monkeypatch):
    import sdar.evaluation.plots as plots
    from sdar.evaluation.gate_plots import plot_gate_histograms

    monkeypatch.setattr(plots, "find_spec", lambda name: None)
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "train/won_rate": 0.5}\n')
    assert plots.plot_run_success(tmp_path) is None and not (tmp_path / "curve_success.png").exists()
    for plot in (plots.plot_curves, plot_gate_histograms):
        with pytest.raises(ImportError, match=r"pip install 'sdar\[plots\]'"):
            plot([], tmp_path)
