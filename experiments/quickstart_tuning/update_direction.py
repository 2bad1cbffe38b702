"""Does one update move each row's response log-prob the way its advantage says? Trains a config's first
steps and, around each update, scores every row before and after it (mean change of log-prob per token),
printing the mean over the rows with a positive and with a negative advantage.

    python experiments/quickstart_tuning/update_direction.py CONFIG RUN_DIR [KEY=VALUE ...]

The q6 figures of README.md: q6.yaml with q4's warm start, `algorithm.method=grpo teacher.skill_library=
trainer.steps=1 trainer.eval_at_start=false trainer.eval_at_ends=false trainer.save_every=0`.
"""

from __future__ import annotations

import sys

import torch

from sdar.config import load_config
from sdar.training.trainer import Trainer
from sdar.training.update import score_batch


def per_token_change(before, after, mask) -> torch.Tensor:
    """[N]: each row's mean log-prob change over its response tokens."""
    mask = mask.float()
    return ((after - before) * mask).sum(-1) / mask.sum(-1).clamp(min=1)


def main() -> None:
    config = load_config(sys.argv[1], sys.argv[3:])
    trainer = Trainer(config, sys.argv[2])
    update = trainer._update
    rows = config.trainer.micro_batch_rows

    def traced(batch, step, old_from_forward=False):
        with torch.no_grad():
            before = score_batch(trainer.model, batch, micro_batch_rows=rows)[0]
        stats = update(batch, step, old_from_forward)
        with torch.no_grad():
            after = score_batch(trainer.model, batch, micro_batch_rows=rows)[0]
        change = per_token_change(before, after, batch.response_mask)
        for sign, rows_of_sign in (("> 0", batch.advantages > 0), ("< 0", batch.advantages < 0)):
            mean = change[rows_of_sign].mean().item() if rows_of_sign.any() else float("nan")
            print(f"step {step + 1}: rows with advantage {sign}: mean log-prob change per token {mean:+.5f}")
        return stats

    trainer._update = traced
    try:
        for step in range(config.trainer.steps):
            trainer.train_step(step)
    finally:
        trainer.close()


if __name__ == "__main__":
    main()
