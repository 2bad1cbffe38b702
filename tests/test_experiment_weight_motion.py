"""weight_motion.py: per step, how far the trainable weights moved and whether the step had reward signal."""

import json

import pytest
import torch
from experiment_scripts import load_script
from safetensors.torch import save_file

from sdar.models.trained import checkpoint_path


def fake_run(run_dir, weights: list[list[float]], advantages: list[float]) -> None:
    for step, values in enumerate(weights, start=1):
        checkpoint = checkpoint_path(run_dir, step)
        checkpoint.mkdir(parents=True)
        tensor = torch.tensor(values)
        save_file(
            {"b.lora_B": tensor[2:].clone(), "a.lora_A": tensor[:2].clone()},
            checkpoint / "trainable.safetensors",
        )
    rows = [
        {"step": step, "grad/norm": 2 * advantage, "train/advantage_abs_mean": advantage}
        for step, advantage in enumerate(advantages, start=1)
    ]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_motion_is_split_by_whether_the_step_had_reward_signal(tmp_path):
    motion = load_script("weight_motion")
    fake_run(tmp_path, [[0, 0, 0], [3, 4, 0], [3, 4, 2], [3, 4, 3]], [0.0, 0.1, 0.0, 0.0])
    result = motion.weight_motion(tmp_path)
    assert [(row["step"], row["moved"]) for row in result["steps"]] == [(2, 5.0), (3, 2.0), (4, 1.0)]
    assert result["moved_with_reward_signal"] == 5.0 and result["moved_without_reward_signal"] == 3.0
    assert [row["grad_norm"] for row in result["steps"]] == [0.2, 0.0, 0.0]


def test_a_missing_checkpoint_is_named(tmp_path):
    motion = load_script("weight_motion")
    fake_run(tmp_path, [[0, 0, 0], [1, 0, 0]], [0.1, 0.1, 0.1])
    with pytest.raises(SystemExit, match="step_000003 is missing"):
        motion.weight_motion(tmp_path)
