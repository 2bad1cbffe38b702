"""Training, the SFT warm start and evaluation end to end on the built-in toy env with the tiny model, with
the alfworld extra hidden: none of them needs it (the ALFWorld end-to-end suites skip without it)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from sdar.config import load_config
from sdar.envs import make_env
from sdar.evaluation import evaluate
from sdar.skills.library import teacher_context
from sdar.training.sft import demonstration_pairs, warm_start, with_warm_start
from sdar.training.trainer import Trainer

HIDDEN = ("alfworld", "textworld")  # the alfworld extra's packages
FAST = ["trainer.eval_at_ends=false", "rollout.max_new_tokens=16", "env.max_turns=4", "trainer.save_every=2"]
SMALL_SFT = ["sft.games=4", "sft.epochs=2", "sft.batch_rows=8", "sft.lr=3e-3", "sft.lora_rank=0"]


@pytest.fixture(autouse=True)
def without_the_alfworld_extra(monkeypatch):
    """Importing alfworld or textworld fails, as on an install without the extra."""
    for name in HIDDEN:
        monkeypatch.setitem(sys.modules, name, None)


def test_the_expert_wins_every_task_and_the_teacher_knows_where_keys_are(tmp_path):
    summary = evaluate(load_config("toy", ["eval.policy=expert"]), output_dir=tmp_path / "expert")
    assert summary["success_rate"] == 1.0
    assert sorted(summary["per_task_type"]) == ["blue", "gold", "green", "red"]
    env = make_env(load_config("toy").env)
    task, first = env.reset("train-3")  # index 3: red
    assert task.task_type == "red" and "search rug" in first.admissible_actions
    assert "under the rug" in teacher_context("toy", task)
    assert "rug" not in env.step("open red chest").observation  # locked: the student is not told where


@pytest.mark.parametrize("method", ["sdar", "grpo"])
def test_two_training_steps(tmp_path, method):
    trainer = Trainer(load_config("toy", [*FAST, f"algorithm.method={method}"]), tmp_path / "run")
    try:
        history = trainer.train()
    finally:
        trainer.close()
    assert [metrics["step"] for metrics in history] == [1, 2]
    for metrics in history:
        losses = [value for key, value in metrics.items() if key.startswith("loss/")]
        assert losses and all(math.isfinite(value) for value in losses)
    if method == "sdar":
        assert 0.0 < history[-1]["distill/gate_mean"] < 1.0
    else:
        assert "loss/distill" not in history[-1]
    assert (tmp_path / "run" / "checkpoints" / "latest").read_text() == "step_000002"
    sample = json.loads((tmp_path / "run" / "samples.jsonl").read_text().splitlines()[0])
    assert sample["task_id"].startswith("train-")


def test_sft_warm_start_learns_the_expert_demonstrations_and_a_model_evaluation_runs(tmp_path):
    config = load_config("toy", [*SMALL_SFT, f"model.cache_dir={tmp_path}", "sft.warm_start=true"])
    from sdar.models import load_model

    _, tokenizer = load_model(config.model)
    _, replies, counts = demonstration_pairs(config, tokenizer)
    assert counts["expert_won_episodes"] == 4 and counts["pairs"] == 12  # search, take, open per task
    assert "<action>search " in tokenizer.decode(replies[0])
    directory = warm_start(config)
    summary = json.loads((directory / "sft_summary.json").read_text())
    assert summary["loss_last"] < summary["loss_first"]
    trained = with_warm_start(config)
    assert trained.model.name == str(directory)
    result = evaluate(
        load_config("toy", [f"model.name={directory}", "eval.policy=model", "eval.num_tasks=4"]),
        output_dir=tmp_path / "model",
    )
    assert result["policy"] == "model" and result["panel"]["size"] == 4
    assert 0.0 <= result["success_rate"] <= 1.0
    episodes = (tmp_path / "model" / "episodes.jsonl").read_text().splitlines()
    assert len(episodes) == 4 and all(json.loads(line)["replies"] for line in episodes)


def test_sdar_cli_runs_without_the_alfworld_extra_in_a_fresh_process(tmp_path):
    """A process where alfworld and textworld cannot be imported: `sdar envs` lists the toy env as ready and
    `sdar eval toy` plays it; neither package was ever imported."""
    script = (
        "import sys\n"
        f"for name in {HIDDEN!r}: sys.modules[name] = None\n"
        "from sdar.cli import main\n"
        "assert main(['envs']) == 0\n"
        f"assert main(['eval', 'toy', 'eval.policy=expert', '--output', {str(tmp_path / 'out')!r}]) == 0\n"
        f"imported = [name for name in sys.modules if name.split('.')[0] in {HIDDEN!r}]\n"
        "assert all(sys.modules[name] is None for name in imported), imported\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=Path(__file__).parent
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()  # `sdar envs`: a line per env, then its indented status
    (toy,) = [index for index, line in enumerate(lines) if line.startswith("toy              toy text game")]
    assert lines[toy + 1].strip() == "ready"
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["success_rate"] == 1.0
