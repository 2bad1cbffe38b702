"""Run logging besides metrics.jsonl: wandb is checked before a model loads, TensorBoard writes event files
when installed, and the run says which of them it writes (start-up line, run_info.json)."""

import json

import pytest

import sdar.training.logging as run_logging
from sdar.cli import main
from sdar.config import load_config
from sdar.errors import ActionableError
from sdar.training.logging import RunLogger, logging_note, record_process, tensorboard_state
from sdar.training.trainer import Trainer


def without(monkeypatch, *packages: str) -> None:
    real = run_logging.find_spec
    monkeypatch.setattr(run_logging, "find_spec", lambda name: None if name in packages else real(name))


def no_model_load(monkeypatch):
    def load_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the logging settings were checked")

    monkeypatch.setattr("sdar.training.trainer.load_model", load_model)


def test_wandb_without_the_package_stops_sdar_train_before_the_model_loads(capsys, tmp_path, monkeypatch):
    without(monkeypatch, "wandb")
    no_model_load(monkeypatch)
    status = main(["train", "smoke", "trainer.wandb_project=demo", "--output", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1, err
    assert "trainer.wandb_project='demo'" in err and "pip install wandb" in err
    assert "logging.wandb_project" not in err
    with pytest.raises(ActionableError, match="trainer.wandb_project"):  # the library's Trainer too
        Trainer(load_config("smoke", ["trainer.wandb_project=demo"]), tmp_path / "run2")


def test_tensorboard_writes_event_files_with_the_logged_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = RunLogger(tmp_path, tensorboard=True, config={})
    logger.log_step({"step": 1, "train/won_rate": 0.25, "distill/gap_by_turn": [0.1]})
    logger.log_step({"step": 2, "train/won_rate": 0.75})
    logger.close()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    logged = [(event.step, round(event.value, 6)) for event in events.Scalars("train/won_rate")]
    assert logged == [(1, 0.25), (2, 0.75)]


def test_the_run_says_whether_it_writes_tensorboard(tmp_path, monkeypatch):
    config = load_config("smoke")
    assert tensorboard_state(False) == "off"
    without(monkeypatch, "tensorboard")
    assert tensorboard_state(True) == "missing"
    note = logging_note(config.trainer, tmp_path)
    assert "TensorBoard not written" in note and "pip install tensorboard" in note and "wandb off" in note
    record_process(tmp_path, config, 0)
    assert json.loads((tmp_path / "run_info.json").read_text())["tensorboard"] == "missing"
    monkeypatch.undo()
    if tensorboard_state(True) == "on":
        assert f"TensorBoard events in {tmp_path / 'tensorboard'}" in logging_note(config.trainer, tmp_path)
