"""Data parallelism: `accelerate launch` with 2 CPU processes (gloo) equals 1 process on the same batch.

Tolerance: after one SGD step (lr 1.0, grad-clip 1.0, so the weight change is the clipped gradient) of the
tiny model on a 12-row global batch, every weight of the 2-process run is within 1e-5 of the 1-process run
(measured: 1.2e-7; the processes pad their rows differently and sum the gradient in another order), while the
step itself moves weights by far more (4.5e-2), and the two replicas are bit-identical.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sdar.config import load_config
from sdar.locking import DirectoryLock
from sdar.models import load_model
from sdar.training.checkpoint import trainable_state
from sdar.training.distributed import DataParallel, combine_rollout_stats

WORKER = Path(__file__).with_name("data_parallel_worker.py")
TOLERANCE = 1e-5


def environment() -> dict:
    """CPU processes even on a GPU machine (a machine of one GPU cannot hold the two processes)."""
    quiet = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return {**os.environ, **quiet, "CUDA_VISIBLE_DEVICES": ""}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def accelerate_launch(processes: int, *command: str, timeout: float = 600) -> subprocess.CompletedProcess:
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "1"]
    launcher += ["--num_processes", str(processes), "--main_process_port", str(free_port())]
    launcher += ["--mixed_precision", "no", "--dynamo_backend", "no"]
    result = subprocess.run(
        [*launcher, *command], env=environment(), capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_two_processes_update_like_one_process_on_the_same_global_batch(tmp_path):
    single = subprocess.run(
        [sys.executable, str(WORKER), str(tmp_path / "one")],
        env=environment(),
        capture_output=True,
        text=True,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    accelerate_launch(2, str(WORKER), str(tmp_path / "two"))

    one = load_file(tmp_path / "one" / "rank0.safetensors")
    rank0, rank1 = (load_file(tmp_path / "two" / f"rank{rank}.safetensors") for rank in (0, 1))
    assert one.keys() == rank0.keys() == rank1.keys() and one
    assert all(torch.equal(rank0[name], rank1[name]) for name in rank0)  # the replicas stay equal
    difference = max(float((one[name] - rank0[name]).abs().max()) for name in one)
    assert difference < TOLERANCE

    torch.manual_seed(0)  # the update moved the weights by far more than the tolerance
    initial = trainable_state(load_model(load_config("smoke").model)[0])
    moved = max(float((one[name] - initial[name]).abs().max()) for name in one)
    assert moved > 100 * TOLERANCE


@pytest.mark.slow
@pytest.mark.parametrize(
    "method",
    [
        ["algorithm.method=sdar"],
        # The random tiny model wins nothing, so no term has a gradient: every process skips its passes.
        ["algorithm.method=grpo", "algorithm.kl_coef=0", "algorithm.entropy_coef=0"],
    ],
    ids=["sdar", "grpo-without-gradient"],
)
def test_accelerate_launch_trains_with_two_processes_and_one_run_directory(tmp_path, method):
    pytest.importorskip("alfworld")
    run_dir = tmp_path / "run"
    overrides = ["rollout.tasks_per_step=2", "rollout.group_size=2", "env.max_turns=2", "trainer.steps=2"]
    overrides += ["rollout.max_new_tokens=16", "trainer.eval_at_ends=false", *method]
    accelerate_launch(2, "-m", "sdar.cli", "train", "smoke", *overrides, "--output", str(run_dir))
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2]  # written once, by process 0
    assert all(line["train/episodes"] == 4 for line in lines)  # both processes' episodes (2 tasks x G=2)
    without_gradient = "grpo" in method[0]
    assert all(line["update/without_gradient"] == without_gradient for line in lines)
    assert sorted(path.name for path in (run_dir / "checkpoints").iterdir()) == [
        "latest",
        "step_000002",
    ]


@pytest.mark.slow
def test_accelerate_launch_into_a_run_directory_in_use_stops_every_process(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "1"]
    launcher += ["--num_processes", "2", "--main_process_port", str(free_port()), "--mixed_precision", "no"]
    with DirectoryLock(run_dir, "training run", "wait"):  # stands for a first run still writing there
        result = subprocess.run(
            [*launcher, "-m", "sdar.cli", "train", "smoke", "--output", str(run_dir)],
            env=environment(),
            capture_output=True,
            text=True,
            timeout=300,  # the process other than 0 must not wait at a barrier for one that stopped
        )
    assert result.returncode != 0
    assert result.stderr.count("another training run is writing into this directory") == 2, result.stderr
    assert not (run_dir / "metrics.jsonl").exists()


def test_tasks_shard_by_rank_and_must_divide():
    assert DataParallel(rank=1, world_size=2).shard(["a", "b", "c", "d"]) == ["b", "d"]
    assert DataParallel().shard(["a", "b", "c"]) == ["a", "b", "c"]
    with pytest.raises(ValueError, match="tasks_per_step=3 does not divide among 2 processes"):
        DataParallel(rank=0, world_size=2).shard(["a", "b", "c"])


def test_rollout_stats_combine_counts_rates_and_seconds_over_processes():
    first = {"train/episodes": 2, "train/won_rate": 1.0, "train/turns": 6, "train/time_s": 3.0, "x": "a"}
    second = {"train/episodes": 6, "train/won_rate": 0.5, "train/turns": 10, "train/time_s": 5.0, "x": "b"}
    combined = combine_rollout_stats([first, second])
    assert combined == {
        "train/episodes": 8,
        "train/won_rate": (2 * 1.0 + 6 * 0.5) / 8,
        "train/turns": 16,
        "train/time_s": 5.0,
        "x": "a",
    }
    assert combine_rollout_stats([first]) is first
    # a ratio one process could not give (no turn with admissible actions) is combined over the others
    with_ratio = {**second, "train/admissible_action_ratio": 0.25}
    assert combine_rollout_stats([first, with_ratio])["train/admissible_action_ratio"] == 0.25


def test_a_process_without_a_gpu_of_its_own_is_told_how_to_launch(monkeypatch):
    from sdar.training.distributed import default_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert default_device() == "cuda:0"
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(RuntimeError, match="process 1 of this machine has no GPU: 1 visible"):
        default_device()
