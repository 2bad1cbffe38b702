"""Resume: a run killed (SIGKILL) and resumed ends bit-identical to an uninterrupted one; atomic checkpoints.

The end-to-end cases run `sdar train` in subprocesses on the tiny model and generated ALFWorld games: run A
uninterrupted, run B killed right after its checkpoint of step k appears, then `sdar train --resume`.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sdar.models.trained import latest_checkpoint
from sdar.training import checkpoint
from sdar.training.checkpoint import load_checkpoint, save_checkpoint
from sdar.training.logging import RunLogger

SHAPE = [
    "trainer.steps=3",
    "trainer.save_every=1",
    "rollout.tasks_per_step=1",
    "rollout.group_size=2",
    "env.max_turns=3",
    "rollout.max_new_tokens=16",
]
# Full fine-tuning (frozen reference copy, optimizer state on every weight), and LoRA with what a resume
# most easily gets wrong: dropout (global RNG, train/eval mode), the EMA teacher's shadow, a warm-up.
VARIANTS = {
    "full": [],
    "lora-dropout-ema-warmup": [
        "model.lora_rank=4",
        "model.lora_dropout=0.1",
        "teacher.weights=ema",
        "trainer.warmup_ratio=1.0",
    ],
}


def sdar_train(log: Path, *arguments: str) -> subprocess.Popen:
    """`sdar train ARGUMENTS` in a child process, its output to `log` (a pipe could fill up and block it)."""
    environment = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    with open(log, "w") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "sdar.cli", "train", *arguments],
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def tail(log: Path) -> str:
    return log.read_text()[-3000:]


def finish(process: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    assert process.wait(timeout=timeout) == 0, tail(log)


def kill_after_checkpoint(
    process: subprocess.Popen, log: Path, run_dir: Path, step: int, timeout: float = 300
) -> None:
    """SIGKILL `process` as soon as checkpoints/latest names the checkpoint of `step`."""
    pointer, wanted = run_dir / "checkpoints" / "latest", f"step_{step:06d}"
    deadline = time.monotonic() + timeout
    while not (pointer.exists() and pointer.read_text() == wanted):
        assert process.poll() is None, f"run ended before its checkpoint {wanted}: {tail(log)}"
        assert time.monotonic() < deadline, f"no checkpoint {wanted} after {timeout} s"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL


def volatile(key: str) -> bool:
    """Wall-clock measurements: time/* and the rollout's seconds and throughput (train/tokens_per_s, *_s)."""
    return key.startswith("time/") or key.endswith("_s")


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize(("variant", "kill_step"), [("full", 1), ("lora-dropout-ema-warmup", 2)])
def test_killed_and_resumed_run_equals_uninterrupted_run(tmp_path, variant, kill_step):
    pytest.importorskip("alfworld")
    overrides = [*SHAPE, *VARIANTS[variant]]
    uninterrupted, killed = tmp_path / "A", tmp_path / "B"
    log_a, log_b, log_resume = (tmp_path / name for name in ("A.log", "B.log", "resume.log"))
    run_a = sdar_train(log_a, "smoke", *overrides, "--output", str(uninterrupted))  # A and B side by side
    run_b = sdar_train(log_b, "smoke", *overrides, "--output", str(killed))
    kill_after_checkpoint(run_b, log_b, killed, kill_step)
    finish(run_a, log_a)
    assert len(lines(killed / "metrics.jsonl")) in (kill_step, kill_step + 1)  # step k+1 may be logged
    # A kill in the middle of writing a log line leaves a torn line: the resume must drop it, not choke.
    for name in ("metrics.jsonl", "samples.jsonl"):
        with open(killed / name, "a") as handle:
            handle.write('{"step": 3, "train/won_r')
    finish(sdar_train(log_resume, "--resume", str(killed)), log_resume)
    assert f"steps {kill_step + 1}..3" in log_resume.read_text()  # it resumed, it did not start over
    info = json.loads((killed / "run_info.json").read_text())
    assert [piece["from_step"] for piece in info["resumed"]] == [kill_step]
    assert info["resumed"][0]["argv"][-2:] == ["--resume", str(killed)] and "--resume" not in info["argv"]

    final = Path("checkpoints") / "step_000003"
    weights_a, weights_b = (load_file(run / final / checkpoint.WEIGHTS) for run in (uninterrupted, killed))
    assert weights_a.keys() == weights_b.keys() and weights_a
    differing = [name for name in weights_a if not torch.equal(weights_a[name], weights_b[name])]
    assert differing == [], f"{len(differing)} tensors differ, e.g. {differing[0]}"
    state_a, state_b = (
        torch.load(run / final / checkpoint.STATE, weights_only=False) for run in (uninterrupted, killed)
    )
    assert state_a["scheduler"] == state_b["scheduler"]
    for slot_a, slot_b in zip(
        state_a["optimizer"]["state"].values(), state_b["optimizer"]["state"].values(), strict=True
    ):
        assert all(torch.equal(slot_a[key], slot_b[key]) for key in slot_a)

    metrics_a, metrics_b = lines(uninterrupted / "metrics.jsonl"), lines(killed / "metrics.jsonl")
    assert [line["step"] for line in metrics_b] == [1, 2, 3]
    for line_a, line_b in zip(metrics_a, metrics_b, strict=True):
        assert line_a.keys() == line_b.keys()
        assert {k: v for k, v in line_a.items() if not volatile(k)} == {
            k: v for k, v in line_b.items() if not volatile(k)
        }
    assert lines(uninterrupted / "samples.jsonl") == lines(killed / "samples.jsonl")


# ---- atomic checkpoints, in process ------------------------------------------------------------------------
class Killed(BaseException):
    """Stands for SIGKILL: nothing after the raise runs (a BaseException: `except Exception` misses it)."""


def tiny_training_state(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (step + 1))
    return model, optimizer, scheduler


def train_one_step(model, optimizer, scheduler) -> None:
    model(torch.ones(2, 4)).square().sum().backward()
    optimizer.step()
    optimizer.zero_grad()
    scheduler.step()


def test_kill_during_checkpoint_write_keeps_latest_loadable_and_next_save_cleans_up(tmp_path, monkeypatch):
    model, optimizer, scheduler = tiny_training_state()
    train_one_step(model, optimizer, scheduler)
    save_checkpoint(tmp_path, 1, model, optimizer, scheduler, {"note": "one"})
    weights_at_1 = {name: p.detach().clone() for name, p in model.named_parameters()}
    train_one_step(model, optimizer, scheduler)

    def killed_midway(state, path):  # the weights file is written, the state file half-written, then death
        Path(path).write_bytes(b"\x80\x02partial")
        raise Killed("while writing the checkpoint")

    with monkeypatch.context() as patch:
        patch.setattr(checkpoint.torch, "save", killed_midway)
        with pytest.raises(Killed):
            save_checkpoint(tmp_path, 2, model, optimizer, scheduler, {"note": "two"})
    root = tmp_path / "checkpoints"
    assert (root / ".tmp-step_000002" / checkpoint.WEIGHTS).exists()  # the stray is there
    assert not (root / "step_000002").exists()
    assert latest_checkpoint(tmp_path) == root / "step_000001"

    fresh_model, fresh_optimizer, fresh_scheduler = tiny_training_state(seed=1)
    state = load_checkpoint(latest_checkpoint(tmp_path), fresh_model, fresh_optimizer, fresh_scheduler)
    assert state == {"step": 1, "note": "one"}
    assert all(torch.equal(p, weights_at_1[name]) for name, p in fresh_model.named_parameters())
    assert fresh_scheduler.last_epoch == 1

    # Killed after the rename but before `latest` moved: step_000002 is complete, latest still says 1.
    real_replace = os.replace

    def killed_before_pointer(source, destination):
        if Path(destination).name == "latest":
            raise Killed("before the pointer moved")
        real_replace(source, destination)

    with monkeypatch.context() as patch:
        patch.setattr(checkpoint.os, "replace", killed_before_pointer)
        with pytest.raises(Killed):
            save_checkpoint(tmp_path, 2, model, optimizer, scheduler, {"note": "two"})
    assert not (root / ".tmp-step_000002").exists()  # this save already swept the earlier stray
    assert latest_checkpoint(tmp_path) == root / "step_000001"

    # The resumed run saves step 2 again: it replaces the orphan, and `latest` moves.
    (root / ".tmp-step_000009").mkdir()  # any other stray goes too
    save_checkpoint(tmp_path, 2, model, optimizer, scheduler, {"note": "two"})
    assert sorted(path.name for path in root.iterdir()) == ["latest", "step_000001", "step_000002"]
    assert latest_checkpoint(tmp_path) == root / "step_000002"
    assert load_checkpoint(root / "step_000002", *tiny_training_state(seed=1)) == {"step": 2, "note": "two"}


def test_keep_last_deletes_older_checkpoints_only_after_latest_moved(tmp_path, monkeypatch):
    model, optimizer, scheduler = tiny_training_state()
    root = tmp_path / "checkpoints"
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, model, optimizer, scheduler, {}, keep_last=2)
    assert sorted(path.name for path in root.iterdir()) == ["latest", "step_000002", "step_000003"]

    real_rmtree = checkpoint.shutil.rmtree

    def killed_while_deleting(path, *args, **kwargs):
        if Path(path).name == "step_000003":
            (Path(path) / checkpoint.STATE).unlink()  # half deleted
            raise Killed("while deleting")
        real_rmtree(path, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(checkpoint.shutil, "rmtree", killed_while_deleting)
        with pytest.raises(Killed):
            save_checkpoint(tmp_path, 4, model, optimizer, scheduler, {}, keep_last=1)
    assert latest_checkpoint(tmp_path) == root / "step_000004"  # the pointer had already moved
    save_checkpoint(tmp_path, 5, model, optimizer, scheduler, {}, keep_last=1)
    assert sorted(path.name for path in root.iterdir()) == ["latest", "step_000005"]
    save_checkpoint(tmp_path, 6, model, optimizer, scheduler, {})  # keep_last 0: keeps every one
    assert sorted(path.name for path in root.iterdir()) == ["latest", "step_000005", "step_000006"]


def test_resume_truncation_drops_later_steps_and_a_torn_last_line(tmp_path):
    logger = RunLogger(tmp_path, tensorboard=False, config={})
    for step in (1, 2, 3):
        logger.log_step({"step": step, "loss": float(step)})
    with open(logger.metrics_path, "a") as handle:
        handle.write('{"step": 4, "lo')  # killed mid-line
    logger.truncate_after(2)
    assert lines(logger.metrics_path) == [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 2.0}]
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.slow
def test_a_run_stopped_before_its_first_checkpoint_resumes_from_step_zero(tmp_path, monkeypatch):
    """`--resume` always continues: with nothing saved it starts over in the same directory, dropping the
    logged steps, and ends as an uninterrupted run does."""
    pytest.importorskip("alfworld")
    from sdar.cli import main
    from sdar.training.trainer import Trainer

    overrides = [*SHAPE, "trainer.steps=2", "trainer.save_every=10", "trainer.eval_at_ends=false"]
    assert main(["train", "smoke", *overrides, "--output", str(tmp_path / "A")]) == 0
    train_step = Trainer.train_step

    def stopped_at_second_step(self, step):
        if step == 1:
            raise Killed()
        return train_step(self, step)

    with monkeypatch.context() as patch, pytest.raises(Killed):
        patch.setattr(Trainer, "train_step", stopped_at_second_step)
        main(["train", "smoke", *overrides, "--output", str(tmp_path / "B")])
    assert len(lines(tmp_path / "B" / "metrics.jsonl")) == 1 and latest_checkpoint(tmp_path / "B") is None
    assert main(["train", "--resume", str(tmp_path / "B")]) == 0
    metrics_a, metrics_b = (lines(tmp_path / run / "metrics.jsonl") for run in ("A", "B"))
    assert [line["step"] for line in metrics_b] == [1, 2]
    for line_a, line_b in zip(metrics_a, metrics_b, strict=True):
        assert {k: v for k, v in line_a.items() if not volatile(k)} == {
            k: v for k, v in line_b.items() if not volatile(k)
        }
    final = Path("checkpoints") / "step_000002" / checkpoint.WEIGHTS
    weights_a, weights_b = (load_file(tmp_path / run / final) for run in ("A", "B"))
    assert all(torch.equal(weights_a[name], weights_b[name]) for name in weights_a)
