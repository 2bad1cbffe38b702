"""`sdar report`'s gate section: the per-run table (gate off ½, gate mean, gap mean) and the gate's histogram
over training, on hand-written metrics.jsonl whose every number is worked out by hand below."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from sdar.evaluation.gate_plots import gate_histogram_figure, histogram_grid
from sdar.evaluation.gate_stats import (
    GATE_BIN_KEYS,
    GateHistogram,
    SeriesSummary,
    gate_histogram,
    gate_rows,
    gate_table,
    runs_without_histogram,
    series_summary,
)
from sdar.evaluation.report import write_report
from sdar.evaluation.runs import Run, read_inputs

# sdar-0's three steps: the gate's ten bins (shares of tokens), its share off ½, its mean and the mean gap.
SDAR_BINS = [
    [0.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0],
    [0.0, 0.0, 0.0, 0.25, 0.25, 0.25, 0.25, 0.0, 0.0, 0.0],
    [0.2, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.8],
]
SDAR_OFF_HALF = [0.1, 0.2, 0.6]  # mean 0.3 -> "30.0"; first "10.0", last "60.0"
SDAR_GATE_MEAN = [0.5, 0.55, 0.6]  # mean 0.55 -> "0.550"
SDAR_GAP_MEAN = [-0.3, 0.0, 0.6]  # mean 0.1 -> "+0.100"
GRPO_GAP_MEAN = [0.1, 0.2, 0.3]  # GRPO scores a teacher for the gap but has no gate: mean 0.2 -> "+0.200"


def write_gate_run(root, name, method, records: list[dict]):
    run = root / name
    run.mkdir(parents=True)
    config = {
        "seed": 0,
        "algorithm": {"method": method},
        "env": {"name": "alfworld-gen"},
        "model": {"name": "t"},
    }
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    lines = [
        json.dumps({"step": step, "train/won_rate": 0.5, **r}) for step, r in enumerate(records, start=1)
    ]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return run


def gate_runs(root):
    sdar = [
        {
            **dict(zip(GATE_BIN_KEYS, bins, strict=True)),
            "distill/gate_off_half_ratio": off_half,
            "distill/gate_mean": gate,
            "distill/gap_mean": gap,
        }
        for bins, off_half, gate, gap in zip(
            SDAR_BINS, SDAR_OFF_HALF, SDAR_GATE_MEAN, SDAR_GAP_MEAN, strict=True
        )
    ]
    grpo = [{"distill/gap_mean": gap} for gap in GRPO_GAP_MEAN]
    return [write_gate_run(root, "sdar-0", "sdar", sdar), write_gate_run(root, "grpo-0", "grpo", grpo)]


SDAR_ROW = ("sdar-0", "sdar", "0", "30.0", "10.0", "60.0", "0.550", "+0.100")
GRPO_ROW = ("grpo-0", "grpo", "0", "–", "–", "–", "–", "+0.200")


def test_the_gate_table_by_hand(tmp_path):
    runs = read_inputs(gate_runs(tmp_path))
    rows = gate_rows(runs)
    assert [row.run.name for row in rows] == ["grpo-0", "sdar-0"]  # method order, as the Runs table
    sdar = rows[1]
    assert sdar.off_half == SeriesSummary(pytest.approx(0.3), 0.1, 0.6, 3)
    assert sdar.gate_mean.mean == pytest.approx(0.55) and sdar.gap_mean.mean == pytest.approx(0.1)
    assert (rows[0].off_half, rows[0].gate_mean) == (None, None)
    assert rows[0].gap_mean.mean == pytest.approx(0.2)
    assert gate_table(rows).rows == (GRPO_ROW, SDAR_ROW)


def test_the_gate_histogram_matrix_by_hand(tmp_path):
    sdar, grpo = read_inputs(gate_runs(tmp_path))
    histogram = gate_histogram(sdar.metrics)
    assert histogram.steps == (1, 2, 3)
    assert histogram.shares == (  # [bin][step]
        (0.0, 0.0, 0.2),
        (0.0, 0.0, 0.0),
        (0.0, 0.0, 0.0),
        (0.0, 0.25, 0.0),
        (0.5, 0.25, 0.0),
        (0.5, 0.25, 0.0),
        (0.0, 0.25, 0.0),
        (0.0, 0.0, 0.0),
        (0.0, 0.0, 0.0),
        (0.0, 0.0, 0.8),
    )
    assert gate_histogram(grpo.metrics) is None
    assert runs_without_histogram([sdar, grpo]) == ["grpo-0"]
    assert runs_without_histogram([sdar, Run("e", "expert", "alfworld", "m", 0)]) == []  # an evaluation only


def test_series_summary_skips_steps_that_did_not_log_the_key():
    metrics = [{"step": 3, "k": 0.4}, {"step": 1, "k": "nan"}, {"step": 2, "k": 0.2}, {"step": 4}]
    assert series_summary(metrics, "k") == SeriesSummary(pytest.approx(0.3), 0.2, 0.4, 2)
    assert series_summary(metrics, "missing") is None


def test_a_step_without_bins_is_a_blank_column():
    bins = dict(zip(GATE_BIN_KEYS, [0.1] * 10, strict=True))
    metrics = [{"step": 1, **bins}, {"step": 2}, {"step": 3, **{**bins, GATE_BIN_KEYS[9]: "nan"}}]
    histogram = gate_histogram(metrics)
    assert histogram == GateHistogram((1, 3), ((0.1, 0.1),) * 9 + ((0.1, None),))
    first, last, rows = histogram_grid(histogram)
    assert (first, last) == (1, 3)
    assert rows[0][0] == 0.1 and math.isnan(rows[0][1]) and rows[0][2] == 0.1
    assert math.isnan(rows[9][2])


def test_the_heatmap_has_one_panel_per_run_with_a_gate(tmp_path):
    runs = read_inputs(gate_runs(tmp_path))
    figure = gate_histogram_figure(runs)
    panels = [axes for axes in figure.axes if axes.get_images()]
    (panel,) = panels  # grpo-0 logged no bins: not drawn
    (image,) = panel.get_images()
    assert image.get_array().tolist() == [list(row) for row in gate_histogram(runs[0].metrics).shares]
    assert tuple(image.get_extent()) == (0.5, 3.5, 0.0, 1.0)  # x = step, y = the gate in [0, 1]
    assert image.get_clim() == (0.0, 1.0)  # one colour scale for every run
    assert panel.get_title() == "sdar-0 (sdar, seed 0)"
    assert (panel.get_xlabel(), panel.get_ylabel()) == ("training step", "gate g")
    colourbar = next(axes for axes in figure.axes if axes is not panel)
    assert colourbar.get_ylabel() == "share of response tokens"
    assert gate_histogram_figure([runs[1]]) is None
    assert gate_histogram_figure([Run("e", "expert", "alfworld", "m", 0)]) is None  # an evaluation only


def test_the_report_shows_the_gate_table_and_histogram(tmp_path):
    written = write_report(gate_runs(tmp_path), tmp_path / "out")
    markdown = written["markdown"].read_text()
    assert "## Gate" in markdown
    assert "| " + " | ".join(SDAR_ROW) + " |" in markdown
    assert "| " + " | ".join(GRPO_ROW) + " |" in markdown
    assert "](gate_histogram.png)" in markdown and written["gate_histogram"].stat().st_size > 5000
    assert "No gate histogram for these runs" in markdown and "\n- grpo-0\n" in markdown
    assert markdown.index("## Gate") < markdown.index("## Runs")  # the Runs table stays the last table
    page = written["html"].read_text()
    assert (
        "<h2>Gate</h2>" in page and "No gate histogram for these runs" in page and "<li>grpo-0</li>" in page
    )
    assert "<td>30.0</td><td>10.0</td><td>60.0</td><td>0.550</td><td>+0.100</td>" in page
    pngs = sorted(tmp_path.joinpath("out").glob("*.png"))
    assert page.count("data:image/png;base64,") == len(pngs) and "gate_histogram.png" in {
        p.name for p in pngs
    }


def test_a_report_without_a_gate_has_no_gate_section(tmp_path):
    written = write_report(gate_runs(tmp_path)[1:], tmp_path / "out")
    assert "## Gate" not in written["markdown"].read_text()
    assert not (tmp_path / "out" / "gate_histogram.png").exists()
