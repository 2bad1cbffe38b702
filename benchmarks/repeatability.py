"""How far apart two identical training runs end, and a killed-and-resumed one, on this machine's device.

    SEARCHQA_DATA=../shared/data/searchqa python benchmarks/repeatability.py                 # both modes
    SEARCHQA_DATA=../shared/data/searchqa python benchmarks/repeatability.py --deterministic # one mode

Three 2-step SDAR runs of the tiny model on Search-QA (bf16 weights and autocast, LoRA rank 4 with dropout
0.2, lr 1e-3; the trainer picks the GPU when there is one): A and A2 uninterrupted, B stopped right after its
step-1 checkpoint and resumed. Printed per step: the largest weight difference A-A2 and A-B, and whether the
sampled replies were the same. With `trainer.deterministic` both must be 0; without it, a GPU differs by the
order of its atomic adds. Each mode runs in a child process, since deterministic kernels are process-wide
and cuBLAS reads its workspace setting once.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("JAX_PLATFORMS", "cpu")  # bm25s's JAX top-k, when JAX is installed, stays off the GPU

OVERRIDES = [
    "model.dtype=bf16",
    "trainer.autocast_bf16=true",
    "model.lora_rank=4",
    "model.lora_dropout=0.2",
    "trainer.lr=1e-3",
    "trainer.save_every=1",
]


class Stopped(BaseException):
    """Stands for a kill right after the step-1 checkpoint."""


def train(config, run_dir: Path, *, resume=False, stop_after=None) -> None:
    from sdar.training.trainer import Trainer

    trainer = Trainer(config, run_dir, resume=resume)
    if stop_after is not None:
        save = trainer._save

        def save_then_stop(step):
            save(step)
            if step == stop_after:
                raise Stopped

        trainer._save = save_then_stop
    try:
        trainer.train()
    except Stopped:
        pass
    finally:
        trainer.close()


def largest_difference(run_a: Path, run_b: Path, step: int) -> float:
    from safetensors.torch import load_file

    from sdar.models.trained import WEIGHTS, checkpoint_path

    a, b = (load_file(checkpoint_path(run, step) / WEIGHTS) for run in (run_a, run_b))
    return max(float((a[name].float() - b[name].float()).abs().max()) for name in a)


def replies(run: Path) -> list:
    lines = (run / "samples.jsonl").read_text().splitlines()
    return [[turn["tokens"] for turn in json.loads(line)["turns"]] for line in lines]


def measure(deterministic: bool, data: str) -> None:
    import torch

    from sdar.config import load_config

    mode = f"trainer.deterministic={str(deterministic).lower()}"
    config = load_config("search_qa_smoke", [f"env.data_dir={data}", *OVERRIDES, mode])
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    with tempfile.TemporaryDirectory() as scratch:
        a, a2, b = (Path(scratch) / name for name in ("A", "A2", "B"))
        train(config, a)
        train(config, a2)
        train(config, b, stop_after=1)
        train(config, b, resume=True)
        print(f"{mode} on {device}:")
        for other, label in ((a2, "A-A2 (repeat)"), (b, "A-B (resumed)")):
            steps = ", ".join(f"step {s} {largest_difference(a, other, s):.3g}" for s in (1, 2))
            same = replies(a) == replies(other)
            print(f"  {label}: largest weight difference {steps}; same replies: {same}")


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--data", default=os.environ.get("SEARCHQA_DATA", "../shared/data/searchqa"))
    args = parser.parse_args()
    if not (Path(args.data) / "questions").is_dir():
        sys.exit(f"no Search-QA data at {args.data}: pass --data DIR or set SEARCHQA_DATA")
    if args.deterministic is not None:
        if args.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before the first CUDA product
        measure(args.deterministic, args.data)
        return
    for flag in ("--no-deterministic", "--deterministic"):
        subprocess.run([sys.executable, __file__, flag, "--data", args.data], check=True)


if __name__ == "__main__":
    main()
