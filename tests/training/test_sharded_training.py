"""Sharded training (`trainer.sharding=fsdp`, PyTorch FSDP2) with 2 CPU processes (gloo).

Tolerance: one SGD step (lr 1.0, grad-clip 1.0) of the tiny model on a 12-row global batch, the model sharded
over 2 processes, leaves every weight within 1e-5 of the 1-process, unsharded run (measured: 1.2e-7; the
processes pad their rows differently and sum the gradient in another order), and the losses within 1e-5
(relative), while the step moves weights by far more. A sharded run killed (every process, SIGKILL) right
after a checkpoint and resumed ends bit-identical to an uninterrupted sharded run: weights, optimizer state,
metrics and samples.
"""

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
from test_data_parallel import WORKER, accelerate_launch, environment, free_port  # noqa: E402
from test_resume import SHAPE, kill_after_checkpoint, lines, volatile  # noqa: E402

from sdar.config import load_config  # noqa: E402
from sdar.models import load_model  # noqa: E402
from sdar.training import checkpoint  # noqa: E402
from sdar.training.checkpoint import trainable_state  # noqa: E402

TOLERANCE = 1e-5


@pytest.mark.slow
def test_two_sharded_processes_update_like_one_unsharded_process(tmp_path):
    single = subprocess.run(
        [sys.executable, str(WORKER), str(tmp_path / "one"), "none"],
        env=environment(),
        capture_output=True,
        text=True,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    accelerate_launch(2, str(WORKER), str(tmp_path / "two"), "fsdp")

    one = load_file(tmp_path / "one" / "rank0.safetensors")
    two = load_file(tmp_path / "two" / "rank0.safetensors")
    assert one.keys() == two.keys() and one
    difference = max(float((one[name] - two[name]).abs().max()) for name in one)
    assert difference < TOLERANCE

    torch.manual_seed(0)  # the update moved the weights by far more than the tolerance
    initial = trainable_state(load_model(load_config("smoke").model)[0])
    assert max(float((one[name] - initial[name]).abs().max()) for name in one) > 100 * TOLERANCE

    stats_one, stats_two = (json.loads((tmp_path / run / "rank0.json").read_text()) for run in ("one", "two"))
    compared = [key for key in stats_one if key.startswith("loss/") or key == "grad/norm"]
    assert len(compared) >= 4
    for key in compared:
        assert stats_two[key] == pytest.approx(stats_one[key], rel=TOLERANCE, abs=1e-7), key


def launch_training(log: Path, *arguments: str) -> subprocess.Popen:
    """`accelerate launch` of 2 processes of `sdar train ARGUMENTS`."""
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "1"]
    launcher += ["--num_processes", "2", "--main_process_port", str(free_port()), "--mixed_precision", "no"]
    with open(log, "w") as output:
        return subprocess.Popen(
            [*launcher, "-m", "sdar.cli", "train", *arguments],
            env=environment(),
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def finish(process: subprocess.Popen, log: Path) -> None:
    assert process.wait(timeout=600) == 0, log.read_text()[-4000:]


class ProcessTreeKill:
    """Stands for the Popen that `kill_after_checkpoint` kills: the signal goes to the launcher and every
    process under it at once (torchrun starts its workers in sessions of their own)."""

    def __init__(self, process: subprocess.Popen):
        self.process = process

    def poll(self):
        return self.process.poll()

    def send_signal(self, signal_number: int) -> None:
        import psutil

        launcher = psutil.Process(self.process.pid)
        for process in [*launcher.children(recursive=True), launcher]:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal_number)

    def wait(self, timeout: float):
        return self.process.wait(timeout=timeout)


@pytest.mark.slow
@pytest.mark.parametrize(
    "variant",
    [
        # Full fine-tuning: a sharded frozen reference copy for the KL term.
        ["algorithm.kl_coef=0.01"],
        # LoRA with the teacher's EMA shadow, sharded like the weights it averages.
        ["model.lora_rank=4", "teacher.weights=ema"],
    ],
    ids=["full-with-reference", "lora-ema"],
)
def test_killed_sharded_run_resumes_to_the_uninterrupted_result(tmp_path, variant):
    pytest.importorskip("alfworld")
    overrides = [*SHAPE, "rollout.tasks_per_step=2", "trainer.sharding=fsdp", "trainer.eval_at_ends=false"]
    overrides += variant
    uninterrupted, killed = tmp_path / "A", tmp_path / "B"
    log_a, log_b, log_resume = (tmp_path / name for name in ("A.log", "B.log", "resume.log"))
    run_a = launch_training(log_a, "smoke", *overrides, "--output", str(uninterrupted))
    finish(run_a, log_a)
    run_b = launch_training(log_b, "smoke", *overrides, "--output", str(killed))
    kill_after_checkpoint(ProcessTreeKill(run_b), log_b, killed, 1, timeout=600)
    assert (killed / "checkpoints" / "step_000001" / checkpoint.OPTIMIZER).is_dir()  # sharded optimizer
    finish(launch_training(log_resume, "--resume", str(killed)), log_resume)
    assert "steps 2..3" in log_resume.read_text()

    final = Path("checkpoints") / "step_000003"
    weights_a, weights_b = (load_file(run / final / checkpoint.WEIGHTS) for run in (uninterrupted, killed))
    assert weights_a.keys() == weights_b.keys() and weights_a
    assert [name for name in weights_a if not torch.equal(weights_a[name], weights_b[name])] == []
    shards_a, shards_b = (
        sorted((run / final / checkpoint.OPTIMIZER).iterdir()) for run in (uninterrupted, killed)
    )
    assert [path.name for path in shards_a] == [path.name for path in shards_b]
    state_a, state_b = (
        torch.load(run / final / checkpoint.STATE, weights_only=False) for run in (uninterrupted, killed)
    )
    assert state_a["scheduler"] == state_b["scheduler"] and "optimizer" not in state_a
    assert_equal_nested(state_a["trainer"], state_b["trainer"])
    for line_a, line_b in zip(
        lines(uninterrupted / "metrics.jsonl"), lines(killed / "metrics.jsonl"), strict=True
    ):
        assert {k: v for k, v in line_a.items() if not volatile(k)} == {
            k: v for k, v in line_b.items() if not volatile(k)
        }
    assert lines(uninterrupted / "samples.jsonl") == lines(killed / "samples.jsonl")
    # The optimizer shards hold the same moments: loaded whole in one process, they are equal.
    assert_equal_nested(load_sharded_optimizer(uninterrupted / final), load_sharded_optimizer(killed / final))


def load_sharded_optimizer(checkpoint_dir: Path) -> dict:
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    target = checkpoint_dir.parent.parent / "optimizer.pt"
    dcp_to_torch_save(checkpoint_dir / checkpoint.OPTIMIZER, target)
    return torch.load(target, weights_only=False)


def assert_equal_nested(first, second) -> None:
    if isinstance(first, torch.Tensor):
        assert torch.equal(first, second)
    elif isinstance(first, dict):
        assert first.keys() == second.keys()
        for key in first:
            assert_equal_nested(first[key], second[key])
    elif isinstance(first, (list, tuple)):
        assert len(first) == len(second)
        for a, b in zip(first, second, strict=True):
            assert_equal_nested(a, b)
    else:
        assert first == second


def test_sharding_refuses_a_model_without_decoder_layer_classes():
    from sdar.models.sharding import decoder_layer_classes

    with pytest.raises(ValueError, match="names no decoder layer class"):
        decoder_layer_classes(torch.nn.Linear(2, 2))
