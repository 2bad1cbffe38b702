"""`sdar.train`: the Python API trains as `sdar train` does and returns the run."""

import json
import subprocess
import sys

import pytest

import sdar
from sdar.api import TrainResult, config_from
from sdar.config import Config, from_dict, load_config, read_source
from sdar.errors import ConfigError


def test_import_sdar_stays_light_and_train_is_exported_lazily():
    code = "import sys, sdar; print('torch' in sys.modules); sdar.train; print('torch' in sys.modules)"
    printed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert printed.split() == ["False", "False"]  # sdar.api defers torch to the call
    assert sdar.train is sdar.api.train and sdar.TrainResult is TrainResult
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        sdar.nope  # noqa: B018


def test_a_config_object_with_overrides_equals_the_preset_with_the_same_overrides():
    overrides = ("trainer.steps=1", "algorithm.method=grpo_opsd")
    expected = load_config("smoke", list(overrides))
    assert config_from(from_dict(Config, read_source("smoke")), overrides) == expected
    assert config_from("smoke", overrides) == expected
    assert expected.algorithm.beta == 0.0  # the method's default, filled after the overrides
    assert config_from(Config(), ()) == load_config(None)


def test_train_smoke_writes_the_run_and_returns_its_history_and_evaluations(tmp_path):
    result = sdar.train("smoke", "trainer.steps=2", "eval.num_tasks=2", output=tmp_path / "run")
    assert isinstance(result, TrainResult) and result.is_main
    assert result.run_dir == tmp_path / "run"
    assert [metrics["step"] for metrics in result.history] == [1, 2]
    logged = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in logged] == [1, 2]
    assert logged[-1]["loss/policy"] == pytest.approx(result.history[-1]["loss/policy"])
    for key, label in (("before", "step_0"), ("after", "final")):
        saved = json.loads((result.run_dir / "eval" / label / "summary.json").read_text())
        assert result.evaluations[key]["success_rate"] == saved["success_rate"]
        assert saved["panel"]["size"] == 2
    assert (result.run_dir / "config.yaml").is_file()

    resumed = sdar.train(None, "trainer.steps=3", resume=result.run_dir)  # one more step
    assert [metrics["step"] for metrics in resumed.history] == [3]


def test_train_refuses_what_sdar_train_refuses(tmp_path):
    with pytest.raises(ConfigError, match="needs a CONFIG"):
        sdar.train()
    with pytest.raises(ConfigError, match="no config.yaml there"):
        sdar.train(resume=tmp_path)
    with pytest.raises(ConfigError, match="give no config or output"):
        sdar.train("smoke", resume=tmp_path)
