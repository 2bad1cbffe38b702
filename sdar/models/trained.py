"""Trained weights as their readers find them on disk: a run's checkpoints and cached SFT warm starts.

A run directory's checkpoints (written by `sdar.training.checkpoint`):
    checkpoints/step_000010/trainable.safetensors   the trainable weights (LoRA adapters, or every weight)
    checkpoints/step_000010/state.pt                 optimizer, scheduler, RNG and trainer state
    checkpoints/latest                               the name of the newest COMPLETE checkpoint
A cached SFT warm start (written by `sdar.training.sft`) is a Hugging Face model folder
`<cache>/sft/<16 hex key>/`, complete once its `sft_summary.json` exists.

Evaluation, export and the run records read them through this module, so none of them imports the trainer.
"""

from __future__ import annotations

import re
from pathlib import Path

from safetensors.torch import load_file

from sdar.models.sharding import copy_full_

WEIGHTS = "trainable.safetensors"
STATE = "state.pt"
WARM_START_FOLDER = "sft"  # <cache>/sft/<key>
WARM_START_SUMMARY = "sft_summary.json"  # written last: a warm-start directory with it is complete


def checkpoint_path(run_dir: Path, step: int) -> Path:
    """Where the checkpoint of `step` lives (whether or not it was written)."""
    return Path(run_dir) / "checkpoints" / f"step_{step:06d}"


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run, or None when it has none."""
    pointer = Path(run_dir) / "checkpoints" / "latest"
    if not pointer.exists():
        return None
    path = pointer.parent / pointer.read_text().strip()
    if not (path / WEIGHTS).exists() or not (path / STATE).exists():
        raise FileNotFoundError(
            f"{pointer} names {path.name}, which is incomplete; the run directory is damaged"
        )
    return path


def load_trainable_weights(checkpoint: Path, model) -> int:
    """Copy a checkpoint's trainable.safetensors into the model's parameters; returns how many tensors.

    Refuses a checkpoint whose names or shapes do not match the model's trainable parameters exactly.
    """
    weights = load_file(Path(checkpoint) / WEIGHTS)
    parameters = dict(model.named_parameters())
    missing = [name for name in weights if name not in parameters]
    if missing:
        raise ValueError(
            f"checkpoint {checkpoint} has weights this model lacks (e.g. {missing[0]}); wrong model/LoRA?"
        )
    untouched = [name for name, p in parameters.items() if p.requires_grad and name not in weights]
    if untouched:
        raise ValueError(
            f"checkpoint {checkpoint} lacks trainable weights of this model (e.g. {untouched[0]}); "
            f"wrong model/LoRA settings?"
        )
    shapes = [name for name, value in weights.items() if value.shape != parameters[name].shape]
    if shapes:
        name = shapes[0]
        raise ValueError(
            f"checkpoint {checkpoint}: {name} has shape {tuple(weights[name].shape)}, the model "
            f"{tuple(parameters[name].shape)}; wrong model/LoRA settings?"
        )
    for name, value in weights.items():
        copy_full_(parameters[name], value)
    return len(weights)


def is_warm_start(model_name: str) -> bool:
    """Whether a model name is a cached warm start: `<cache>/sft/<16 hex key>` (see `sdar.training.sft`)."""
    path = Path(model_name)
    return path.parent.name == WARM_START_FOLDER and re.fullmatch(r"[0-9a-f]{16}", path.name) is not None
