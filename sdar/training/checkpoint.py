"""Checkpoints that survive a kill at any moment.

Layout of a run directory:
    checkpoints/step_000010/   trainable weights (safetensors), optimizer + scheduler + RNG + trainer state
    checkpoints/latest         the name of the newest COMPLETE checkpoint (replaced atomically)
A checkpoint is written into a temporary folder, fsynced, renamed into place, and only then named in
`latest`; a kill during saving leaves the previous `latest` intact and a stray temporary folder that the
next save removes.

A sharded run (`trainer.sharding=fsdp`) writes the same files, the weights gathered whole (so that
evaluation, export and a run on another number of processes read them alike), except the optimizer state:
every process writes its shard into `optimizer/` with torch.distributed.checkpoint, which also reads it back
on any number of processes. Every process then takes part in saving; process 0 alone renames and points
`latest`, so the kill guarantees are those above (the run directory must be on a filesystem every process
sees, as for any multi-node checkpoint).

The readers' side (the layout's names, the newest complete checkpoint, loading its trainable weights) is
`sdar.models.trained`, which evaluation and export use without importing the trainer.

A new run is refused a directory that already holds a run's logged steps or checkpoints
(`refuse_a_used_run_dir`): it would append to the one and overwrite the other.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from sdar.errors import ConfigError
from sdar.models.sharding import full_tensor, is_sharded
from sdar.models.trained import STATE, WEIGHTS, checkpoint_path, latest_checkpoint, load_trainable_weights
from sdar.training.distributed import DataParallel

OPTIMIZER = "optimizer"  # a sharded run's optimizer state (torch.distributed.checkpoint)
SINGLE_PROCESS = DataParallel()


def trainable_state(model) -> dict[str, torch.Tensor]:
    """The parameters that training changes (LoRA adapters, or every weight in full fine-tuning), whole.
    Collective for a sharded model: every process must call it."""
    return {
        name: full_tensor(p.detach()).cpu().contiguous()
        for name, p in model.named_parameters()
        if p.requires_grad
    }


def rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(
    run_dir: Path,
    step: int,
    model,
    optimizer,
    scheduler,
    trainer_state: dict,
    *,
    keep_last: int = 0,
    parallel: DataParallel = SINGLE_PROCESS,
) -> Path:
    """Write the checkpoint of `step` and name it in `latest`; then delete all but the `keep_last` newest
    checkpoints up to it (0 keeps every one). Called by process 0 alone, or, for a sharded model, by every
    process (module docstring)."""
    final = checkpoint_path(run_dir, step)
    root = final.parent
    staging = root / f".tmp-{final.name}"
    sharded = is_sharded(model)
    if parallel.is_main:
        root.mkdir(parents=True, exist_ok=True)
        for stray in root.glob(".tmp-*"):
            shutil.rmtree(stray, ignore_errors=True)
        staging.mkdir()
    state = {"step": step, "scheduler": scheduler.state_dict(), "rng": rng_state(), "trainer": trainer_state}
    weights = trainable_state(model)
    if sharded:
        parallel.barrier()  # the staging folder exists for every process
        _save_sharded_optimizer(model, optimizer, staging / OPTIMIZER)
        parallel.barrier()  # every shard is written
    else:
        state["optimizer"] = optimizer.state_dict()
    if parallel.is_main:
        save_file(weights, staging / WEIGHTS)
        torch.save(state, staging / STATE)
        _publish(staging, final, keep_last)
    return final


def _publish(staging: Path, final: Path, keep_last: int) -> None:
    """fsync the staging folder's files, rename it to `final`, point `latest` at it, prune older ones."""
    root = final.parent
    for file in staging.rglob("*"):
        if file.is_file():
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    pointer = root / ".latest.tmp"
    pointer.write_text(final.name)
    os.replace(pointer, root / "latest")
    _fsync_dir(root)
    if keep_last > 0:
        # Only once `latest` names the new one: a kill midway leaves an old folder that the next save removes.
        older = sorted(path for path in root.glob("step_*") if path.name < final.name)
        for path in older[: max(len(older) - (keep_last - 1), 0)]:
            shutil.rmtree(path)


def _save_sharded_optimizer(model, optimizer, folder: Path) -> None:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    dcp.save({"optimizer": get_optimizer_state_dict(model, optimizer)}, checkpoint_id=folder)


def _load_sharded_optimizer(model, optimizer, folder: Path) -> None:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict, set_optimizer_state_dict

    state = {"optimizer": get_optimizer_state_dict(model, optimizer)}
    dcp.load(state, checkpoint_id=folder)
    set_optimizer_state_dict(model, optimizer, state["optimizer"])


def load_checkpoint(path: Path, model, optimizer, scheduler) -> dict:
    """Restore weights, optimizer, scheduler and RNG in place; returns the saved trainer state (with step)."""
    load_trainable_weights(path, model)
    state = torch.load(Path(path) / STATE, weights_only=False)
    if (Path(path) / OPTIMIZER).is_dir():  # written by a sharded run
        _load_sharded_optimizer(model, optimizer, Path(path) / OPTIMIZER)
    else:
        optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return {"step": state["step"], **state["trainer"]}


def refuse_a_used_run_dir(run_dir: Path) -> None:
    """ConfigError when `run_dir` holds a run's logged steps or a checkpoint: a new run must not mix in."""
    held = [name for name in ("metrics.jsonl", "samples.jsonl") if _size(run_dir / name)]
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is not None:
        held.append(f"checkpoints up to {checkpoint.name}")
    if not held:
        return
    remedy = f"continue it with `sdar train --resume {run_dir}`"
    if checkpoint is None:  # a resume starts that run over from step 0
        remedy += " (it saved no checkpoint yet, so that starts it over from step 0)"
    raise ConfigError(
        f"{run_dir} already holds a run ({', '.join(held)}); {remedy}, or train into another directory "
        f"(--output)"
    )


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else 0
