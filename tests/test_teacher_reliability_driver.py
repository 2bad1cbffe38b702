"""experiments/teacher_reliability/run.py, the driver: `--status` on an empty results folder, the running
order, the warm start made again on a fresh machine, the commit and fingerprint refusals, and criterion 0
as a precondition. No training."""

import hashlib
import json
import sys
from pathlib import Path

import pytest
from teacher_reliability_cases import games, load_script

# isort: split
# the experiment's own scripts, importable once teacher_reliability_cases is imported
import run_table
import warm_start_fingerprint


@pytest.fixture
def driver(tmp_path, monkeypatch):
    """run.py with every folder it writes under tmp_path and the warm start at tmp_path/cache/sft/<key>."""
    module = load_script("run")
    for name, folder in (("RESULTS", "results"), ("PROBES", "probes"), ("WARM_START_EVALS", "warm_start")):
        monkeypatch.setattr(module, name, tmp_path / folder)
    monkeypatch.setattr(module, "WARM_START_LOG", tmp_path / "warm_start" / "pieces.log")
    monkeypatch.setattr(module, "CHOSEN_LAMBDA", tmp_path / "chosen_lambda.json")
    monkeypatch.setattr(module, "WARM_START_RECORD", tmp_path / "warm_start.json")
    warm = tmp_path / "cache" / "sft" / "0123456789abcdef"
    monkeypatch.setattr(module, "warm_start_directory", lambda: warm)
    return module


def make_warm_start(directory: Path, weights: bytes = b"weights", config: str = '{"r": 16}') -> None:
    adapter = directory / "adapter"
    adapter.mkdir(parents=True, exist_ok=True)
    (adapter / "adapter_config.json").write_text(config)
    (adapter / "adapter_model.safetensors").write_bytes(weights)
    (directory / "sft_summary.json").write_text(json.dumps({"machine": {"threads": 2, "cpu": "x"}}))


def test_status_on_an_empty_results_folder_lists_the_warm_start_then_seed_0(driver, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["run.py", "--status"])
    assert driver.main() == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:5] == [
        "left: warm-start: sft",
        "left: warm-start: fingerprint",
        "left: warm-start: valid panel without the line",
        "left: warm-start: valid panel acting with the line",
        "left: warm-start: first-turn probe",
    ]
    assert lines[5:7] == ["left: grpo-s0: train", "left: grpo-s0: first-turn probe"]
    assert "waiting: sdar-routed-half-s0: for the λ of claim 2 (chosen_lambda.json, or --lam)" in lines
    assert lines[-3].startswith("not made unless named: opsd-l0.01-half, opsd-l0.1-half, opsd-l1-half")
    assert lines[-2].startswith("not made unless named: grpo-noskip (exploratory: ")
    assert lines[-1] == f"{5 + 2 * 12} stage(s) left"  # 15 settings need no chosen λ, 3 of them twins
    assert not (driver.RESULTS).exists()  # --status writes nothing


def test_runs_go_in_the_running_order_claims_1_and_2_then_their_later_seeds_then_the_rest(driver):
    runs, _ = driver.planned_runs([0, 1, 2], None, 1.0)
    order = [driver.run_name(setting.name, seed) for setting, seed in runs]
    first = ["grpo", "opsd-l0.1-reliable", "sdar-l0.1-reliable", "opsd-l1-reliable", "sdar-l1-reliable"]
    first += ["sdar-l1-half"]  # claim 2 at the chosen λ = 1; GRPO+OPSD's half runs repeat their twins
    assert order[:6] == [f"{name}-s0" for name in first]
    informative = ["grpo", "opsd-l1-reliable", "sdar-l1-reliable", "sdar-l1-half"]
    assert order[6:14] == [f"{name}-s{seed}" for seed in (1, 2) for name in informative]
    named_only = set(run_table.ONLY_WHEN_NAMED)  # the twins and the exploratory settings
    rest = [name for name in driver.SETTING_NAMES if name not in first and name not in named_only]
    assert order[14:] == [f"{name}-s0" for name in rest] and "grpo-noskip-s0" not in order
    before_lambda, _ = driver.planned_runs([0], None, None)  # the claim-1 runs first, so λ is chosen early
    assert [setting.name for setting, _ in before_lambda][:5] == first[:5]
    named, _ = driver.planned_runs([1], ["opsd-l1-half"], 1.0)  # a twin is made when named exactly
    assert [driver.run_name(setting.name, seed) for setting, seed in named] == ["opsd-l1-half-s1"]
    assert (
        driver.planned_runs([0], ["opsd-*"], 1.0)[0] == driver.planned_runs([0], ["opsd-*-reliable"], 1.0)[0]
    )
    assert [setting.name for setting, _ in driver.planned_runs([0], ["grpo*"], 1.0)[0]] == ["grpo"]
    explored, _ = driver.planned_runs([0], ["grpo-noskip"], 1.0)  # outside the design: made when named
    assert [setting.overrides for setting, _ in explored] == [
        ("algorithm.method=grpo", "trainer.skip_zero_gradient=false")
    ]


def test_on_a_fresh_machine_every_stage_waits_for_the_warm_start_made_again(driver):
    """The record and criterion 0's evaluations are committed; the warm start is not here: it is made again
    (with the recorded thread count) before anything that reads it starts, even with several workers."""
    driver.WARM_START_RECORD.write_text(json.dumps({"fingerprint": "f" * 64, "threads": 3}))
    for name in ("plain", "reliable"):
        (driver.WARM_START_EVALS / name).mkdir(parents=True)
        (driver.WARM_START_EVALS / name / "summary.json").write_text("{}")
    stages = driver.stages_not_done([0], ["grpo"], None)
    keys = [stage.key for stage in stages]
    assert keys == [
        "warm-start: sft",
        "warm-start: first-turn probe",
        "grpo-s0: train",
        "grpo-s0: first-turn probe",
    ]
    assert stages[0].threads == 3
    scheduler = driver.Scheduler(stages, deadline=None)
    assert scheduler.next().key == "warm-start: sft"
    assert not any(scheduler.ready(stage) for stage in stages[1:])  # all wait while it runs


def test_a_fresh_run_is_pinned_to_the_warm_start_and_a_resumed_one_keeps_its_commit(driver, monkeypatch):
    setting = run_table.run_table(None)["sdar-l1-half"]
    train = driver.train_stage(setting, 2)
    assert train.command[3:5] == ("train", str(driver.CONFIG))
    assert train.command[-6:] == (
        "teacher.skill_library=alfworld-location-half",
        f"model.name={driver.warm_start_directory()}",
        "sft.warm_start=false",
        "seed=2",
        "--output",
        str(driver.RESULTS / "sdar-l1-half-s2"),
    )
    run_dir = driver.RESULTS / "sdar-l1-half-s2"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "latest").write_text("step_000004")
    (run_dir / "run_info.json").write_text(json.dumps({"code": {"commit": "a" * 40}}))
    assert driver.train_stage(setting, 2).command[-2:] == ("--resume", str(run_dir))
    monkeypatch.setattr(driver, "current_commit", lambda: "b" * 40)
    assert "trained at commit aaaaaaaaaa" in driver.commit_problem(run_dir)
    assert driver.commit_problem(run_dir, driver.Allowed(new_commit=True)) == ""
    monkeypatch.setattr(driver, "current_commit", lambda: "a" * 40)
    assert driver.commit_problem(run_dir) == ""


def test_a_warm_start_of_another_fingerprint_is_refused(driver, monkeypatch, capsys):
    warm = driver.warm_start_directory()
    make_warm_start(warm)
    assert "not recorded yet" in driver.fingerprint_problem()
    assert driver.record_fingerprint() == ""
    record = json.loads(driver.WARM_START_RECORD.read_text())
    assert record["threads"] == 2 and record["key"] == "0123456789abcdef" and "torch" in record
    expected = warm_start_fingerprint.adapter_fingerprint(warm)["fingerprint"]
    assert expected == hashlib.sha256(b"weights").hexdigest()  # the weights' own SHA-256
    assert record["fingerprint"] == expected and driver.fingerprint_problem() == ""
    make_warm_start(warm, config='{"r": 16, "field_of_a_newer_peft": null}')  # the same weights: the same
    assert driver.fingerprint_problem() == ""
    make_warm_start(warm, weights=b"other weights")  # made again, and different
    assert "--new-warm-start" in driver.fingerprint_problem()
    assert "--new-warm-start" in driver.record_fingerprint()  # a stage's action refuses too
    monkeypatch.setattr(driver, "Scheduler", lambda *arguments: pytest.fail("no stage may start"))
    monkeypatch.setattr(sys, "argv", ["run.py", "--seeds", "0"])
    assert driver.main() == 2 and "is not the one recorded in warm_start.json" in capsys.readouterr().err
    assert driver.fingerprint_problem(driver.Allowed(new_warm_start=True)) == ""  # recorded in its place
    replaced = json.loads(driver.WARM_START_RECORD.read_text())
    assert replaced["replaced"][0]["fingerprint"] == expected and replaced["fingerprint"] != expected
    assert driver.fingerprint_problem() == ""


def test_no_run_starts_when_criterion_0_does_not_hold(driver, monkeypatch, capsys):
    for name, rate in (("plain", games(6)), ("reliable", games(8))):
        (driver.WARM_START_EVALS / name).mkdir(parents=True)
        summary = {"panel": {"name": "alfworld-gen/valid", "size": 24}, "success_rate": rate}
        (driver.WARM_START_EVALS / name / "summary.json").write_text(json.dumps(summary))
    assert "criterion 0 does not hold" in driver.precondition_problem()
    monkeypatch.setattr(sys, "argv", ["run.py", "--status"])
    assert driver.main() == 0
    out = capsys.readouterr().out
    assert "left: grpo-s0: train" not in out and "blocked: criterion 0 does not hold" in out
