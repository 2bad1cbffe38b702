"""How far each training step moved a run's trainable weights, next to whether the step had reward signal.

    python experiments/cpu_reproduction/weight_motion.py RUN_DIR [--output JSON]

Reads the run's checkpoints (trainer.save_every 1: one per step; they stay on the machine that trained) and
its metrics.jsonl. Per step from the second checkpoint on: the L2 norm of the change of the trainable weights
(LoRA A and B) since the previous checkpoint, the step's mean gradient norm, and whether it had reward signal
(some group with both won and lost episodes: nonzero advantages). A step without reward signal has a gradient
only from the other terms (GRPO without entropy or KL: none), so what moves the weights there is mostly
AdamW's momentum from the last steps with it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from sdar.models.trained import checkpoint_path


def flat_weights(checkpoint: Path) -> torch.Tensor:
    state = load_file(checkpoint / "trainable.safetensors")
    return torch.cat([state[name].flatten().double() for name in sorted(state)])


def weight_motion(run_dir: Path) -> dict:
    """{"steps": [{step, moved, grad_norm, reward_signal}], "moved_with_reward_signal", "..._without_..."}."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    metrics = {row["step"]: row for row in map(json.loads, filter(None, lines))}
    steps, previous = [], None
    for step in sorted(metrics):
        checkpoint = checkpoint_path(run_dir, step)
        if not checkpoint.is_dir():
            raise SystemExit(f"{checkpoint} is missing: this needs every step's checkpoint (save_every 1)")
        weights = flat_weights(checkpoint)
        if previous is not None:
            row = metrics[step]
            steps.append(
                {
                    "step": step,
                    "moved": round(float((weights - previous).norm()), 4),
                    "grad_norm": row.get("grad/norm", 0.0),  # absent: no update was made
                    "reward_signal": row["train/advantage_abs_mean"] > 0,
                }
            )
        previous = weights

    def total(signal: bool) -> float:
        return round(sum(row["moved"] for row in steps if row["reward_signal"] == signal), 4)

    return {
        "run": run_dir.name,
        "steps": steps,
        "moved_with_reward_signal": total(True),
        "moved_without_reward_signal": total(False),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--output", type=Path, default=None, help="also write the result as JSON here")
    args = parser.parse_args()
    result = weight_motion(args.run_dir)
    for row in result["steps"]:
        signal = "reward signal" if row["reward_signal"] else "no reward signal"
        print(f"step {row['step']:3d}: moved {row['moved']:.4f}  grad norm {row['grad_norm']:.4g}  {signal}")
    print(f"moved in steps with reward signal: {result['moved_with_reward_signal']}, without: "
          f"{result['moved_without_reward_signal']}")  # fmt: skip
    if args.output:
        args.output.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
