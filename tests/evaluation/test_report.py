"""`sdar report`: exact statistics on hand-made runs, final/best choice, panel checks, files, rendering."""

from __future__ import annotations

import json
import math
import statistics
import warnings

import pytest
import yaml

from sdar.cli import main
from sdar.errors import ConfigError
from sdar.evaluation.document import Heading, Paragraph, Table, to_html, to_markdown
from sdar.evaluation.plots import curve_band, curve_groups
from sdar.evaluation.report import (
    ReportError,
    Statistic,
    best_evaluation,
    build_tables,
    check_panels,
    duplicate_seed_problems,
    final_evaluation,
    format_statistic,
    mean_std,
    start_evaluation,
    summary_values,
    write_report,
)
from sdar.evaluation.runs import Evaluation, Run, metric_value, parse_metrics, read_inputs

TYPES = {"pick_and_place_simple": "Pick", "look_at_obj_in_light": "Look"}


def make_summary(
    per_type: dict, *, fingerprint="f" * 16, step=None, env="alfworld", seeds=(0,), **extra
) -> dict:
    """A summary.json as sdar eval writes it; per_type maps task type -> (won, episodes)."""
    episodes = sum(n for _, n in per_type.values())
    won = sum(w for w, _ in per_type.values())
    return {
        "panel": {"name": f"{env}/valid_seen", "env": env, "split": "valid_seen", "size": episodes,
                  "fingerprint": fingerprint},
        "seeds": list(seeds),
        "success_rate": won / episodes,
        "success_rate_std": extra.pop("success_rate_std", 0.0),
        "metrics": extra.pop("metrics", {}),
        "per_task_type": {
            task_type: {"label": TYPES.get(task_type, task_type), "tasks": n, "episodes": n, "won": w,
                        "success_rate": w / n, "metrics": {}}
            for task_type, (w, n) in per_type.items()
        },
        "episodes": episodes,
        "won": won,
        "policy": "model",
        "checkpoint": None if step is None else {"path": f"/runs/x/checkpoints/step_{step}", "step": step},
        **extra,
    }  # fmt: skip


def make_run(name, method, summaries: dict, *, seed=0, model="m", metrics=None) -> Run:
    evaluations = [Evaluation(label, summary) for label, summary in summaries.items()]
    return Run(name, method, "alfworld", model, seed, metrics or [{"step": 1}], evaluations)


# ---- statistics ------------------------------------------------------------------------------------------
def test_mean_std_is_population_std_over_runs():
    statistic = mean_std([0.5, 0.7, 0.9])
    assert statistic.mean == pytest.approx(0.7)
    assert statistic.std == pytest.approx(math.sqrt((0.04 + 0 + 0.04) / 3))
    assert (statistic.count, statistic.within_eval) == (3, False)


def test_mean_std_of_one_run_falls_back_to_its_evaluation_seeds():
    assert mean_std([0.4], 0.05) == Statistic(0.4, 0.05, 1, True)
    assert mean_std([0.4]) == Statistic(0.4, None, 1, False)
    assert mean_std([]) is None


def test_format_statistic_marks():
    assert format_statistic(Statistic(0.8444, 0.0123, 3)) == "84.4 ± 1.2"
    assert format_statistic(Statistic(0.5, 0.1, 1, True)) == "50.0 ± 10.0*"
    assert format_statistic(Statistic(0.5, None, 1), mismatched=True) == "50.0†"
    assert format_statistic(None) == "–"


def test_summary_values_pooled_average_and_metrics():
    summary = make_summary(
        {"pick_and_place_simple": (3, 4), "look_at_obj_in_light": (0, 2)},
        seeds=(0, 1),
        success_rate_std=0.1,
        metrics={"score": {"mean": 0.75, "std": 0.05}},
    )
    values = summary_values(summary)
    assert values["type:pick_and_place_simple"] == (0.75, None)
    assert values["type:look_at_obj_in_light"] == (0.0, None)
    assert values["avg"] == (0.5, 0.1)  # pooled: 3 of 6 episodes
    assert values["metric:score"] == (0.75, 0.05)


def test_summary_values_search_qa_average_is_plain_mean_of_datasets():
    summary = make_summary({"nq": (3, 4), "hotpotqa": (0, 2)}, env="search-qa")
    assert summary_values(summary)["avg"][0] == pytest.approx((0.75 + 0.0) / 2)  # not 3/6


def test_summary_values_seed_independent_eval_has_no_spread():
    summary = make_summary({"pick_and_place_simple": (1, 2)}, seeds=(0, 1), seed_independent=True)
    assert summary_values(summary)["avg"] == (0.5, None)


# ---- which evaluation counts -----------------------------------------------------------------------------
def test_final_is_highest_checkpoint_step_and_best_is_highest_success():
    evaluations = [
        Evaluation("step_0", make_summary({"pick_and_place_simple": (1, 4)}, step=0)),
        Evaluation("mid", make_summary({"pick_and_place_simple": (4, 4)}, step=10)),
        Evaluation("final", make_summary({"pick_and_place_simple": (2, 4)}, step=20)),
    ]
    assert final_evaluation(evaluations).label == "final"
    assert best_evaluation(evaluations).label == "mid"
    assert start_evaluation(evaluations).label == "step_0"
    assert start_evaluation(evaluations[1:]) is None  # no evaluation of the model training started from


def test_final_without_steps_is_the_label_final_or_the_only_one():
    a = Evaluation("a", make_summary({"pick_and_place_simple": (1, 4)}))
    final = Evaluation("heldout/final", make_summary({"pick_and_place_simple": (2, 4)}))
    assert final_evaluation([a, final]) is final
    assert final_evaluation([a]) is a
    assert final_evaluation([a, Evaluation("b", a.summary)]) is None
    assert best_evaluation([]) is None


# ---- tables ----------------------------------------------------------------------------------------------
def test_table_cells_are_mean_and_std_over_seeds_of_each_method():
    def final(pick: int, look: int) -> dict:
        per_type = {"pick_and_place_simple": (pick, 4), "look_at_obj_in_light": (look, 2)}
        return {"final": make_summary(per_type, step=5)}

    runs = [
        make_run("sdar-0", "sdar", final(2, 1)),
        make_run("sdar-1", "sdar", final(4, 0), seed=1),
        make_run("grpo-0", "grpo", final(1, 1)),
    ]
    (table,) = build_tables(runs, final_evaluation)
    assert [c.label for c in table.columns] == ["Pick", "Look", "Avg"]
    rows = {row.label: row for row in table.rows}
    assert list(rows) == ["grpo", "sdar"]
    sdar = rows["sdar"]
    assert sdar.cells["type:pick_and_place_simple"].mean == pytest.approx(0.75)
    assert sdar.cells["type:pick_and_place_simple"].std == pytest.approx(0.25)
    assert sdar.cells["avg"].mean == pytest.approx(statistics.fmean([3 / 6, 4 / 6]))
    assert sdar.cells["avg"].std == pytest.approx(statistics.pstdev([3 / 6, 4 / 6]))
    assert (sdar.episodes, len(sdar.runs), sdar.mismatched) == (12, 2, False)
    assert rows["grpo"].cells["avg"] == Statistic(2 / 6, None, 1, False)
    assert check_panels(runs) == []


def test_env_metric_columns_and_acc_label():
    summary = make_summary({"fashion": (1, 2)}, env="webshop", metrics={"score": {"mean": 0.8, "std": 0.0}})
    (table,) = build_tables([make_run("w", "sdar", {"final": summary})], final_evaluation)
    assert [c.label for c in table.columns] == ["fashion", "Acc", "Score"]


def test_fingerprint_mismatch_within_a_cell_is_flagged():
    runs = [
        make_run(
            "a", "sdar", {"final": make_summary({"pick_and_place_simple": (1, 2)}, fingerprint="a" * 16)}
        ),
        make_run(
            "b", "sdar", {"final": make_summary({"pick_and_place_simple": (2, 2)}, fingerprint="b" * 16)}
        ),
    ]
    (table,) = build_tables(runs, final_evaluation)
    assert table.rows[0].mismatched
    problems = check_panels(runs)
    assert problems and "a" * 16 in problems[0] and "b" * 16 in problems[0]


def test_fingerprint_mismatch_between_methods_is_flagged():
    runs = [
        make_run(
            "a", "sdar", {"final": make_summary({"pick_and_place_simple": (1, 2)}, fingerprint="a" * 16)}
        ),
        make_run(
            "b", "grpo", {"final": make_summary({"pick_and_place_simple": (2, 2)}, fingerprint="b" * 16)}
        ),
    ]
    assert any("rows are not comparable" in problem for problem in check_panels(runs))


def test_runs_sharing_a_seed_are_flagged():
    runs = [make_run("a", "sdar", {}), make_run("b", "sdar", {}), make_run("c", "sdar", {}, seed=1)]
    assert duplicate_seed_problems(runs) == [
        "runs a, b (sdar, m, alfworld) share seed 0: they count as separate seeds"
    ]


def test_real_summarize_output_feeds_the_table():
    from sdar.evaluation import EpisodeRecord, Panel, summarize

    panel = Panel("alfworld", "valid_seen", ("t1", "t2"), 2)
    records = [
        EpisodeRecord(seed, task, kind, won, 3, [])
        for seed, task, kind, won in [
            (0, "t1", "pick_and_place_simple", True),
            (0, "t2", "look_at_obj_in_light", False),
            (1, "t1", "pick_and_place_simple", True),
            (1, "t2", "look_at_obj_in_light", True),
        ]
    ]
    summary = summarize(records, [0, 1], panel, list(TYPES))
    (table,) = build_tables([make_run("r", "sdar", {"final": summary})], final_evaluation)
    cells = table.rows[0].cells
    assert cells["avg"] == Statistic(0.75, 0.25, 1, True)  # seeds 0.5 and 1.0
    assert cells["type:look_at_obj_in_light"].mean == 0.5
    assert table.rows[0].fingerprints == {panel.fingerprint}


# ---- metrics and curves ----------------------------------------------------------------------------------
def test_parse_metrics_skips_torn_lines_and_keeps_last_of_a_repeated_step():
    lines = ['{"step": 1, "a": 1}', '{"step": 2, "a": 2}', '{"step": 2, "a": 3}', '{"step": 3, "a"', ""]
    records, problems = parse_metrics(lines, "m.jsonl")
    assert [r["a"] for r in records] == [1, 3]
    assert len(problems) == 1 and "m.jsonl:4" in problems[0]


def test_metric_value_reads_logged_non_finite_strings_as_missing():
    assert metric_value({"x": 0.5}, "x") == 0.5
    assert metric_value({"x": "nan"}, "x") is None
    assert metric_value({"x": [1]}, "x") is None
    assert metric_value({}, "x") is None


def test_curve_band_mean_min_max_per_step():
    seeds = [
        [{"step": 1, "k": 0.0}, {"step": 2, "k": 0.5}],
        [{"step": 1, "k": 1.0}, {"step": 2, "k": "nan"}],
    ]
    first, second = curve_band(seeds, "k")
    assert (first.step, first.mean, first.low, first.high, first.count) == (1, 0.5, 0.0, 1.0, 2)
    assert (second.mean, second.count) == (0.5, 1)
    assert curve_band(seeds, "missing") == []


def test_curve_groups_name_lines_by_method_and_only_what_differs():
    runs = [
        make_run("a", "sdar", {}),
        make_run("b", "sdar", {}, seed=1),
        make_run("c", "grpo", {}, model="n"),
    ]
    groups = curve_groups(runs)
    assert {label: len(members) for label, members in groups.items()} == {"grpo · n": 1, "sdar · m": 2}


# ---- documents -------------------------------------------------------------------------------------------
def test_documents_escape_untrusted_text():
    blocks = [
        Heading("<script>alert(1)</script>"),
        Table(("a|b", "x"), (("<img src=x onerror=alert(1)>", "1"),)),
    ]
    page = to_html(blocks, "t<")
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page and "<title>t&lt;</title>" in page
    assert "| a\\|b | x |" in to_markdown(blocks)
    assert to_markdown([Paragraph("sdar report a b", code=True)]) == "    sdar report a b\n"


# ---- files -----------------------------------------------------------------------------------------------
def write_run(root, name, method, seed, won_rates, summaries: dict, torn=False):
    run = root / name
    run.mkdir(parents=True)
    config = {
        "seed": seed,
        "algorithm": {"method": method},
        "env": {"name": "alfworld-gen"},
        "model": {"name": "tiny"},
    }
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    lines = [
        json.dumps({"step": step, "train/won_rate": rate, "train/return_mean": rate * 10,
                    "distill/gate_mean": 0.5, "distill/gap_mean": -0.1 * rate, "val/won_rate": rate})
        for step, rate in enumerate(won_rates, start=1)
    ]  # fmt: skip
    (run / "metrics.jsonl").write_text("\n".join(lines) + ('\n{"step": 9, "train/' if torn else "\n"))
    for label, summary in summaries.items():
        (run / "eval" / label).mkdir(parents=True)
        (run / "eval" / label / "summary.json").write_text(json.dumps(summary))
    return run


def make_runs(root):
    return [
        write_run(root, f"{method}-{seed}", method, seed, rates, {
            "step_0": make_summary({"pick_and_place_simple": (seed, 4)}, step=0),
            "final": make_summary({"pick_and_place_simple": (won, 4)}, step=3),
        }, torn=torn)
        for method, seed, rates, won, torn in [
            ("sdar", 0, [0.1, 0.3, 0.5], 3, True),
            ("sdar", 1, [0.2, 0.2, 0.6], 4, False),
            ("grpo", 0, [0.1, 0.1, 0.2], 1, False),
        ]
    ]  # fmt: skip


def test_write_report_files(tmp_path):
    runs = make_runs(tmp_path)
    with pytest.warns(UserWarning, match="torn"):
        written = write_report(runs, tmp_path / "out", command="sdar report x")
    markdown = written["markdown"].read_text()
    assert "| sdar | 87.5 ± 12.5 | 87.5 ± 12.5 | 2 | 8 | ffffffffffffffff |" in markdown
    assert "| grpo | 25.0 | 25.0 | 1 | 4 | ffffffffffffffff |" in markdown
    start = markdown[markdown.index("## Before training") : markdown.index("## Best over evaluations")]
    assert "| sdar | 12.5 ± 12.5 | 12.5 ± 12.5 | 2 | 8 |" in start and "| grpo | 0.0 | 0.0 | 1 | 4 |" in start
    for stem in ("success", "return", "gate_mean", "gap_mean"):
        assert (tmp_path / "out" / f"curve_{stem}.png").stat().st_size > 5000
        assert f"](curve_{stem}.png)" in markdown
    assert not (tmp_path / "out" / "curve_valid_action_ratio.png").exists()  # never logged here
    assert written["html"].read_text().count("data:image/png;base64,") == 4


def test_the_runs_table_names_the_code_each_run_was_made_at(tmp_path):
    from sdar.evaluation.report import run_table
    from sdar.evaluation.runs import read_run

    first, second = make_runs(tmp_path)[1:]
    started = {"code": {"commit": "a" * 40, "dirty": False}}
    resumed = {"from_step": 2, "code": {"commit": "b" * 40, "dirty": True}}
    pieces = [resumed, {**resumed, "from_step": 3}]  # two resumed pieces at the same commit: named once
    (first / "run_info.json").write_text(json.dumps({**started, "resumed": pieces}))
    (second / "run_info.json").write_text("{torn")
    assert read_run(first).code == f"{'a' * 10} → {'b' * 10}+"
    with pytest.warns(UserWarning, match="not valid JSON"):
        assert read_run(second).code == ""
    with pytest.warns(UserWarning, match="torn"):
        without = read_run(tmp_path / "sdar-0")  # no run_info.json
    rows = run_table([read_run(first), without]).rows
    assert [row[-1] for row in rows] == ["–", f"{'a' * 10} → {'b' * 10}+"]


def test_a_warm_started_run_is_named_by_its_base_model_and_warm_start_key(tmp_path):
    from sdar.evaluation.runs import read_run

    run_dir = make_runs(tmp_path)[1]
    config = (run_dir / "config.yaml").read_text()
    assert "name: tiny" in config
    warm_start = "name: /cache/sdar/sft/3e7376501cfe942a"  # the path the trainer saves for a warm start
    (run_dir / "config.yaml").write_text(config.replace("name: tiny", warm_start))
    assert read_run(run_dir).model_label == "SFT warm start 3e7376501cfe942a"  # no run_info.json
    info = {"warm_start": {"key": "3e7376501cfe942a", "base_model": "smollm2-135m"}}
    (run_dir / "run_info.json").write_text(json.dumps(info))
    assert read_run(run_dir).model_label == "smollm2-135m + SFT 3e7376501cfe942a"


def test_runs_whose_warm_starts_differ_only_in_seed_pool_into_one_row_by_their_recipe(tmp_path):
    from sdar.evaluation.report import build_tables, final_evaluation
    from sdar.evaluation.runs import read_run

    sdar_0, sdar_1, grpo_0 = make_runs(tmp_path)
    for run_dir, key in [
        (sdar_0, "aaaaaaaaaaaaaaaa"),
        (sdar_1, "bbbbbbbbbbbbbbbb"),
        (grpo_0, "aaaaaaaaaaaaaaaa"),
    ]:
        config = (
            run_dir / "config.yaml"
        ).read_text()  # each seed its own warm start, as `sft.seed: -1` makes
        (run_dir / "config.yaml").write_text(config.replace("name: tiny", f"name: /cache/sdar/sft/{key}"))

    def labels(recipes: dict) -> list[str]:
        for run_dir, recipe in recipes.items():
            info = {"warm_start": {"key": "x", "base_model": "smollm2-135m", "recipe": recipe}}
            (run_dir / "run_info.json").write_text(json.dumps(info))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sdar-0's torn metrics line
            runs = [read_run(run_dir) for run_dir in recipes]
        return [row.label for row in build_tables(runs, final_evaluation)[0].rows]

    assert labels({sdar_0: "r" * 16, sdar_1: "r" * 16, grpo_0: "r" * 16}) == ["grpo", "sdar"]
    assert labels({sdar_0: "", sdar_1: "", grpo_0: ""}) == [  # no recipe recorded: by cache key, seed apart
        "smollm2-135m + SFT aaaaaaaaaaaaaaaa · grpo",
        "smollm2-135m + SFT aaaaaaaaaaaaaaaa · sdar",
        "smollm2-135m + SFT bbbbbbbbbbbbbbbb · sdar",
    ]
    assert labels({sdar_0: "r" * 16, sdar_1: "r" * 16, grpo_0: "s" * 16}) == [
        f"smollm2-135m + SFT recipe {'r' * 16} · sdar",
        f"smollm2-135m + SFT recipe {'s' * 16} · grpo",
    ]


def test_cli_report_refuses_mismatched_panels_when_strict(tmp_path, capsys):
    a = write_run(
        tmp_path, "a", "sdar", 0, [0.1], {"final": make_summary({"x": (1, 2)}, fingerprint="a" * 16)}
    )
    b = write_run(
        tmp_path, "b", "sdar", 1, [0.1], {"final": make_summary({"x": (1, 2)}, fingerprint="b" * 16)}
    )
    assert main(["report", str(a), str(b), "--strict", "--output", str(tmp_path / "r")]) == 2
    assert "different panels" in capsys.readouterr().err
    with pytest.raises(ReportError):
        write_report([a, b], tmp_path / "r", strict=True)
    assert main(["report", str(a), str(b), "--output", str(tmp_path / "r")]) == 0
    assert "†" in (tmp_path / "r" / "report.md").read_text()


def test_bad_inputs_are_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="neither a run directory"):
        read_inputs([tmp_path / "empty"])
    with pytest.raises(FileNotFoundError):
        read_inputs([tmp_path / "missing"])
    with pytest.raises(ConfigError, match="neither a run directory"):
        read_inputs([tmp_path / "empty", tmp_path / "empty"])  # several, none a run
    run = write_run(tmp_path, "r", "sdar", 0, [], {})
    (run / "metrics.jsonl").write_text("")
    with pytest.raises(ConfigError, match="no metrics"):
        read_inputs([run])


def test_a_glob_skips_directories_that_hold_no_run_with_a_warning(tmp_path):
    run = write_run(tmp_path, "a", "sdar", 0, [0.1], {"final": make_summary({"x": (1, 2)})})
    (tmp_path / "logs-only").mkdir()
    (tmp_path / "logs-only" / "pieces.log").write_text("a driver's log")
    with pytest.warns(UserWarning, match="skipped .*logs-only: neither a run directory"):
        runs = read_inputs([run, tmp_path / "logs-only"])
    assert [found.path for found in runs] == [str(run)]


def test_standalone_eval_directory_is_a_row(tmp_path):
    directory = tmp_path / "expert"
    directory.mkdir()
    summary = make_summary({"pick_and_place_simple": (4, 4)}, policy="expert")
    (directory / "summary.json").write_text(json.dumps(summary))
    (run,) = read_inputs([directory])
    assert (run.method, run.metrics, len(run.evaluations)) == ("expert", [], 1)


@pytest.mark.parametrize(
    "model, evaluation, row",
    [
        ("smollm2-135m", {}, "untrained"),
        ("/cache/sdar/sft/f2655ecaa695579c", {}, "warm start"),
        ("/cache/sdar/sft/f2655ecaa695579c", {"student_skills": True}, "warm start + skills in prompt"),
        (
            "/cache/sdar/sft/f2655ecaa695579c",
            {"student_skills": True, "skills_placement": "teacher"},
            "warm start + skills as the teacher",
        ),
        ("/cache/elsewhere/f2655ecaa695579c", {}, "untrained"),
    ],
)
def test_a_standalone_model_evaluation_names_its_row_by_the_model_it_played(tmp_path, model, evaluation, row):
    config = {"model": {"name": model}, "eval": evaluation}
    summary = make_summary({"pick_and_place_simple": (1, 4)}, policy="model", config=config)
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    (run,) = read_inputs([tmp_path])
    assert run.method == row
    # The report names a warm start by its cache key, not by the path on the machine that trained it.
    warm_start = run.method.startswith("warm start")
    assert run.model_label == ("SFT warm start f2655ecaa695579c" if warm_start else model)


# ---- headless Chromium -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_report_html_renders_in_headless_chromium(tmp_path, chromium):
    written = write_report(make_runs(tmp_path)[1:], tmp_path / "out")
    shot = chromium.screenshot(written["html"], tmp_path / "report.png", 1200, 1600)
    chromium.assert_nontrivial_png(shot, min_colours=50)
    dom = chromium.dump_dom(written["html"])
    assert "Final evaluation" in dom and "87.5" not in dom and "100.0" in dom
