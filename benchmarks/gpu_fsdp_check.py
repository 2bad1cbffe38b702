"""Two SDAR steps of a random-weight paper architecture sharded with FSDP, against `sdar plan`'s estimate.

On a GPU (the check it is written for; about 5 minutes on one H100):

    python benchmarks/gpu_fsdp_check.py --arch qwen2.5-3b

prints the peak GPU memory the steps allocated (torch.cuda.max_memory_allocated) next to the peak
`sdar plan` estimates for the same config on one GPU of that size, and the time of each step. The env is
the dependency-free lockbox example (examples/lockbox), so nothing but torch, transformers and peft is
needed. On a CPU it runs the same code as a dry run (`--arch "qwen2.5-0.5b?layers=2"`), without a memory
figure: the plan's comparison on CPUs is benchmarks/memory_plan.py.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from sdar.config import load_config
from sdar.training.plan import GIB, make_plan
from sdar.training.trainer import Trainer

LOCKBOX = Path(__file__).resolve().parent.parent / "examples" / "lockbox" / "config.yaml"


def check_config(arch: str, steps: int):
    """The lockbox example on `random:<arch>` in bf16, sharded, at a small but real step shape."""
    return load_config(
        str(LOCKBOX),
        [
            f"model.name=random:{arch}",
            "model.dtype=bf16",
            "model.gradient_checkpointing=true",
            "trainer.autocast_bf16=true",
            "trainer.sharding=fsdp",
            f"trainer.steps={steps}",
            "trainer.save_every=0",
            "trainer.eval_at_ends=false",
            "trainer.micro_batch_rows=4",
            "rollout.tasks_per_step=4",
            "rollout.group_size=4",
            "rollout.max_new_tokens=64",
            "rollout.max_prompt_tokens=1024",
            "env.max_turns=3",
            "env.workers=0",
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="qwen2.5-3b", help="a random: architecture (docs/plan.md)")
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()
    config = check_config(args.arch, args.steps)
    gpu = torch.cuda.is_available()
    memory_gib = torch.cuda.get_device_properties(0).total_memory / GIB if gpu else 80.0
    plan = make_plan(config, gpus=1, gpu_memory_gib=memory_gib)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(config, Path(folder) / "run")
        built = time.perf_counter() - started
        if gpu:
            torch.cuda.reset_peak_memory_stats()
        try:
            history = trainer.train()
        finally:
            trainer.close()
    result = {
        "device": torch.cuda.get_device_name(0) if gpu else "cpu",
        "arch": args.arch,
        "build_s": round(built, 1),
        "step_s": [round(step["time/step_s"], 1) for step in history],
        "plan_peak_gib": round(plan.estimate.peak / GIB, 2),
        "plan_peak_phase": plan.estimate.peak_phase,
        "plan_fits": plan.fits,
    }
    if gpu:
        result["measured_peak_gib"] = round(torch.cuda.max_memory_allocated() / GIB, 2)
        result["measured_over_plan"] = round(result["measured_peak_gib"] / result["plan_peak_gib"], 3)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
