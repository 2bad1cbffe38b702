"""How far each training step moved a run's trainable weights, next to whether the step had a gradient.

    python experiments/cpu_reproduction/weight_motion.py RUN_DIR [--output JSON]

Reads the run's checkpoints (trainer.save_every 1: one per step; they stay on the machine that trained) and
its metrics.jsonl. Per step from the second checkpoint on: the L2 norm of the change of the trainable weights
(LoRA A and B) since the previous checkpoint, and the step's mean gradient norm. A step whose gradient norm is
0 moved the weights only by AdamW's momentum and weight decay.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from sdar.training.checkpoint import checkpoint_path


def flat_weights(checkpoint: Path) -> torch.Tensor:
    state = load_file(checkpoint / "trainable.safetensors")
    return torch.cat([state[name].flatten().double() for name in sorted(state)])


def weight_motion(run_dir: Path) -> dict:
    """{"steps": [{step, moved, grad_norm}], "moved_with_gradient", "moved_without_gradient"}."""
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    grad_norms = {row["step"]: row.get("grad/norm", 0.0) for row in metrics}  # absent: no update was made
    steps, previous = [], None
    for step in sorted(grad_norms):
        checkpoint = checkpoint_path(run_dir, step)
        if not checkpoint.is_dir():
            raise SystemExit(f"{checkpoint} is missing: this needs every step's checkpoint (save_every 1)")
        weights = flat_weights(checkpoint)
        if previous is not None:
            moved = float((weights - previous).norm())
            steps.append({"step": step, "moved": round(moved, 4), "grad_norm": grad_norms[step]})
        previous = weights

    def total(with_gradient: bool) -> float:
        return round(sum(row["moved"] for row in steps if (row["grad_norm"] > 0) == with_gradient), 4)

    return {
        "run": run_dir.name,
        "steps": steps,
        "moved_with_gradient": total(True),
        "moved_without_gradient": total(False),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--output", type=Path, default=None, help="also write the result as JSON here")
    args = parser.parse_args()
    result = weight_motion(args.run_dir)
    for row in result["steps"]:
        print(f"step {row['step']:3d}: moved {row['moved']:.4f}  grad norm {row['grad_norm']:.4g}")
    print(f"moved in steps with a gradient: {result['moved_with_gradient']}, without: "
          f"{result['moved_without_gradient']}")  # fmt: skip
    if args.output:
        args.output.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
