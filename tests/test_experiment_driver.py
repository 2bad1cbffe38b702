"""The CPU reproduction's driver (experiments/cpu_reproduction/run.py): stages, resume, order, needs."""

import threading
from pathlib import Path

import pytest
from experiment_scripts import load_script


def load_driver(results: Path, alfworld_data: Path | None = None):
    driver = load_script("run")
    driver.RESULTS = results
    driver.TEACHER_VS_STUDENT = results / "teacher_vs_student"
    driver.ALFWORLD_DATA = alfworld_data or results / "no-alfworld-data"
    driver.SFT = driver.Stage("warm-start", "sft", results / "sft" / "done", ["sdar", "sft"])
    return driver


def finish(stage) -> None:
    stage.done.parent.mkdir(parents=True, exist_ok=True)
    stage.done.write_text("{}")


def train_here(driver, run: str) -> None:
    """A finished training stage with its checkpoints on this machine."""
    finish(driver.train_stage(run))
    checkpoints = driver.RESULTS / run / "checkpoints"
    for step in driver.reading_steps():
        (checkpoints / f"step_{step:06d}").mkdir(parents=True)
    (checkpoints / "latest").write_text(f"step_{max(driver.reading_steps()):06d}")


def test_a_run_trains_fresh_then_resumes_then_is_probed_and_evaluates_valid_seen(tmp_path):
    driver = load_driver(tmp_path)
    run_dir = tmp_path / "sdar-s1"
    train = driver.train_stage("sdar-s1")
    assert train.done == run_dir / "eval" / "final" / "summary.json" and train.needs == (driver.SFT.key,)
    fresh = ["train", str(driver.CONFIG), "algorithm.method=sdar", "seed=1", "--output", str(run_dir)]
    assert train.command[-6:] == fresh
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "latest").write_text("step_000003")
    assert driver.train_stage("sdar-s1").command[-2:] == ["--resume", str(run_dir)]
    assert driver.progress(driver.train_stage("sdar-s1")) == " (resumes after step 3)"
    assert driver.progress(driver.train_stage("grpo-s1")) == ""  # not started
    reading = driver.reading_stage("sdar-s1", 6)
    assert reading.needs == ("sdar-s1: train",)
    assert reading.done == tmp_path / "teacher_vs_student" / "skill_reading-sdar-s1-step6.json"
    checkpoint = str(run_dir / "checkpoints" / "step_000006")
    assert reading.command[-4:] == ["--checkpoint", checkpoint, "--output", str(reading.done)]
    valid_seen = driver.valid_seen_stage("sdar-s1")
    assert valid_seen.needs == ("sdar-s1: train",) and "eval.split=valid_seen" in valid_seen.command
    assert valid_seen.command[valid_seen.command.index("--checkpoint") + 1] == str(run_dir)
    warm = driver.valid_seen_stage(driver.WARM_START)
    assert "--checkpoint" not in warm.command and "sft.warm_start=false" in warm.command


def test_pending_lists_the_warm_start_then_run_by_run_training_probes_valid_seen(tmp_path):
    driver = load_driver(tmp_path, alfworld_data=tmp_path)
    keys = [stage.key for stage in driver.pending(["grpo", "sdar"], [0, 1])]
    measured = [stage.key for stage in driver.teacher_vs_student_stages()]
    assert all(stage.needs == (driver.SFT.key,) for stage in driver.teacher_vs_student_stages())
    run = ["train", "skill reading, step 6", "skill reading, step 12", "valid_seen"]
    runs = [f"{name}: {stage}" for name in ("grpo-s0", "sdar-s0", "grpo-s1", "sdar-s1") for stage in run]
    assert keys == ["warm-start: sft", *measured, *runs, "warm-start: valid_seen"]
    finish(driver.SFT)
    for stage in driver.teacher_vs_student_stages():
        finish(stage)
    train_here(driver, "grpo-s0")
    keys = [stage.key for stage in driver.pending(["grpo"], [0])]
    readings = ["grpo-s0: skill reading, step 6", "grpo-s0: skill reading, step 12"]
    assert keys == [*readings, "grpo-s0: valid_seen", "warm-start: valid_seen"]
    no_alfworld = load_driver(tmp_path).pending(["grpo"], [0])
    assert [stage.key for stage in no_alfworld] == readings


def test_the_warm_start_alone_gets_every_core(tmp_path, monkeypatch):
    driver = load_driver(tmp_path)
    driver.SFT = driver.Stage("warm-start", "sft", tmp_path / "sft" / "done", ["sdar", "sft"], all_cores=True)
    train = driver.train_stage("grpo-s0")
    played = []
    monkeypatch.setattr(driver, "run_stage", lambda stage, threads, left: played.append(threads) or "done")
    monkeypatch.setattr(driver.os, "cpu_count", lambda: 4)
    driver.work(driver.Scheduler([driver.SFT, train], deadline=None), threads=2)
    assert played == [4, 2]


def test_the_scheduler_holds_a_stage_until_what_it_needs_is_done(tmp_path):
    driver = load_driver(tmp_path, alfworld_data=tmp_path)
    scheduler = driver.Scheduler(driver.pending(["grpo"], [0]), deadline=None)
    first = scheduler.next()
    assert first.key == "warm-start: sft"
    handed = []
    waiter = threading.Thread(target=lambda: handed.append(scheduler.next()))
    waiter.start()
    waiter.join(timeout=0.5)
    assert waiter.is_alive() and not handed  # everything else needs the warm start
    scheduler.finished(first, "done")
    waiter.join(timeout=5)
    measured = [handed[0], scheduler.next(), scheduler.next()]  # the teacher-vs-student stages come first
    assert [stage.key for stage in measured] == [stage.key for stage in driver.teacher_vs_student_stages()]
    train = scheduler.next()
    assert train.key == "grpo-s0: train"
    assert scheduler.next().key == "warm-start: valid_seen"  # grpo-s0's other stages wait for its training
    scheduler.finished(train, "done")
    after_training = [scheduler.next().key for _ in range(3)]
    assert after_training == [
        "grpo-s0: skill reading, step 6",
        "grpo-s0: skill reading, step 12",
        "grpo-s0: valid_seen",
    ]
    scheduler.stopped = True  # a failed or timed-out stage stops the hand-out
    assert scheduler.next() is None


def test_the_probed_steps_are_those_the_trainer_evaluates():
    driver = load_script("run")
    assert driver.reading_steps() == [6, 12]  # config.yaml: trainer.eval_every 6, trainer.steps 12


def test_a_finished_run_without_its_checkpoints_leaves_its_probes_and_valid_seen_stranded(tmp_path):
    driver = load_driver(tmp_path, alfworld_data=tmp_path)
    finish(driver.SFT)
    for stage in driver.teacher_vs_student_stages():
        finish(stage)
    finish(driver.train_stage("grpo-s0"))  # a run trained on another machine: results, no checkpoints
    later = ["grpo-s0: skill reading, step 6", "grpo-s0: skill reading, step 12", "grpo-s0: valid_seen"]
    not_done = [stage.key for stage in driver.stages_not_done(["grpo"], [0])]
    assert not_done == [*later, "warm-start: valid_seen"]
    assert [stage.key for stage in driver.pending(["grpo"], [0])] == ["warm-start: valid_seen"]
    checkpoints = tmp_path / "grpo-s0" / "checkpoints"
    (checkpoints / "step_000006").mkdir(parents=True)
    (checkpoints / "latest").write_text("step_000012")
    keys = [stage.key for stage in driver.pending(["grpo"], [0])]
    assert keys == ["grpo-s0: skill reading, step 6", "grpo-s0: valid_seen", "warm-start: valid_seen"]
    unfinished = driver.reading_stage(
        "sdar-s0", 6
    )  # not trained yet: it waits for its training, not stranded
    assert not driver.stranded(unfinished)


def test_the_driver_will_not_train_a_new_warm_start_under_finished_runs(tmp_path, monkeypatch, capsys):
    """A fresh machine lacks the cached warm start; training it again would give finished and new runs
    different starting models."""
    driver = load_driver(tmp_path)
    assert driver.lost_warm_start(driver.pending(["grpo"], [0])) == ""  # nothing finished yet
    finish(driver.train_stage("grpo-s0"))  # trained on another machine, from the warm start not here
    stages = driver.pending(["grpo", "sdar"], [0])
    assert "1 finished run(s) (grpo-s0)" in driver.lost_warm_start(stages)
    monkeypatch.setattr(driver, "Scheduler", lambda *args: pytest.fail("no stage may start"))
    monkeypatch.setattr(driver.sys, "argv", ["run.py", "--methods", "grpo", "sdar", "--seeds", "0"])
    assert driver.main() == 2
    assert "--new-warm-start" in capsys.readouterr().err
    monkeypatch.setattr(
        driver.sys, "argv", ["run.py", "--methods", "grpo", "sdar", "--seeds", "0", "--status"]
    )
    assert driver.main() == 0 and "stage(s) left; but the warm start" in capsys.readouterr().out
    finish(driver.SFT)
    assert driver.lost_warm_start(driver.pending(["grpo", "sdar"], [0])) == ""
