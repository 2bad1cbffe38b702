"""What skipping the rows without gradient saves in a GRPO step: old log-probs and update, all rows vs. only
the rows with gradient, on the SAME batch, for several shares of rows in all-won or all-lost groups.

    python benchmarks/gradient_rows.py                                  # tiny model (smoke preset), ~1 min
    python benchmarks/gradient_rows.py --model smollm2-135m --lora-rank 16 --tasks 4 --group-size 4 \
        --max-turns 1 --max-new-tokens 64                               # the alfworld_cpu shape, ~5 min

With the policy gradient as the only term on (GRPO without KL or entropy term, as in the CPU experiment), a
row of a group whose episodes all won or all lost has advantage 0 and no gradient; the trainer then scores and
updates only the other rows (`sdar.algorithms.rows_with_gradient`). One rollout is collected with the
trainer's own session and packed into one batch. For each --dead-shares value, that share of the batch's
groups gets reward 0 for every episode and every other group one winning episode (its lowest episode index),
so the advantages are GRPO's for a step with that many dead groups. Then each pass is timed both ways, as
`Trainer.old_logprobs` and `policy_update` run them (all rows: `rows_with_gradient` patched to answer "every
row", the code before the shortcut), with weights, optimizer and scheduler restored before every update.
Median of --repeats rounds of this process's CPU time (wall time next to it); the two updates alternate order.
The expectation: both passes cost about the share of rows with gradient, plus the update's fixed costs.
"""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import step_cost  # noqa: E402  (the same config builder, timer, restorer and update call)

from sdar.algorithms import rows_with_gradient  # noqa: E402
from sdar.algorithms.objective import advantages_from_config, settings_from_config  # noqa: E402
from sdar.records import rows_to_batch  # noqa: E402
from sdar.training import update as update_module  # noqa: E402
from sdar.training.trainer import Trainer, step_seed  # noqa: E402
from sdar.training.update import bf16_autocast  # noqa: E402

GRPO_ONLY_POLICY_GRADIENT = ["algorithm.method=grpo", "algorithm.kl_coef=0", "algorithm.entropy_coef=0"]


def rewards_with_dead_groups(batch, share: float) -> torch.Tensor:
    """Row returns: the first round(share x groups) groups all lost, every other group won by its lowest
    episode index (so each of its rows has a non-zero GRPO advantage)."""
    groups = batch.group_index.unique(sorted=True).tolist()
    dead = set(groups[: round(share * len(groups))])
    rewards = torch.zeros(len(batch), dtype=torch.float32)
    for group in groups:
        if group in dead:
            continue
        rows = batch.group_index.eq(group)
        winner = batch.episode_index[rows].min()
        rewards[rows & batch.episode_index.eq(winner)] = 1.0
    return rewards


def advantages_of(config, batch, dead_share: float) -> torch.Tensor:
    rewards = rewards_with_dead_groups(batch, dead_share)
    return advantages_from_config(config.algorithm, rewards, batch.group_index, batch.episode_index)


def all_rows():
    """Inside the block, `policy_update` gives every row its passes (the code before the shortcut)."""
    every_row = lambda settings, advantages: torch.ones_like(advantages, dtype=torch.bool)  # noqa: E731
    return mock.patch.object(update_module, "rows_with_gradient", every_row)


def measure(args) -> None:
    args.override = [*GRPO_ONLY_POLICY_GRADIENT, *args.override]
    config = step_cost.build_config(args)
    settings = settings_from_config(config.algorithm)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(config, run_dir)
        try:
            episodes, stats = trainer.session.rollout(0, seed=step_seed(config.seed, 0))
            batch = rows_to_batch([t for e in episodes for t in e.turns], trainer.tokenizer.pad_token_id)
            rollout, trainer_config = config.rollout, config.trainer
            print(
                f"model {config.model.name}, LoRA rank {config.model.lora_rank}: "
                f"{rollout.tasks_per_step} tasks x G={rollout.group_size} -> {len(batch)} rows, "
                f"padded batch {tuple(batch.input_ids.shape)}, "
                f"micro-batch {trainer_config.micro_batch_rows}, {torch.get_num_threads()} thread(s), "
                f"bf16 autocast {trainer_config.autocast_bf16}"
            )
            precision = lambda: bf16_autocast(config.trainer.autocast_bf16, batch.input_ids.device)  # noqa: E731
            with precision():
                batch.old_logprobs = trainer.old_logprobs(batch, None)
            restore = step_cost.training_state_restorer(trainer)
            batch.advantages = advantages_of(config, batch, 0.0)
            step_cost.update_step(trainer, batch, settings)  # untimed: a process's first update pays set-up
            restore()
            print(f"\nmedian of {args.repeats}, CPU s (wall s):")
            print(f"  {'dead groups':>11s} {'rows w/o grad':>13s} {'old, all':>15s} {'old, skip':>15s} "
                  f"{'update, all':>15s} {'update, skip':>15s} {'(old+update) skip/all':>22s}")  # fmt: skip
            for share in args.dead_shares:
                batch.advantages = advantages_of(config, batch, share)
                rows = rows_with_gradient(settings, batch.advantages)

                def old(selected=rows):
                    with precision():
                        trainer.old_logprobs(batch, selected)

                def update(every_row: bool):
                    with all_rows() if every_row else nullcontext():
                        step_cost.update_step(trainer, batch, settings)

                seconds = step_cost.timed(
                    {
                        "old, all": lambda: old(None),
                        "old, skip": old,
                        "update, all": lambda: update(True),
                        "update, skip": lambda: update(False),
                    },
                    args.repeats,
                    0,
                    before=restore,
                )
                cells = " ".join(f"{cpu:7.2f} ({wall:5.2f})" for wall, cpu in seconds.values())
                cpu = {name: values[1] for name, values in seconds.items()}
                ratio = (cpu["old, skip"] + cpu["update, skip"]) / (cpu["old, all"] + cpu["update, all"])
                without = 1 - rows.float().mean().item()
                print(f"  {share:11.2f} {without:13.2f} {cells} {ratio:22.3f}")
        finally:
            trainer.close()


def main(argv=None) -> int:
    parser = step_cost.shape_parser(__doc__, tasks=4, group_size=2)
    parser.add_argument("--dead-shares", type=float, nargs="+", default=[0.0, 0.5, 0.75])
    parser.add_argument(
        "--repeats", type=int, default=2, help="an even count balances the two updates' order"
    )
    args = parser.parse_args(argv)
    if any(not 0 <= share <= 1 for share in args.dead_shares):
        parser.error(f"--dead-shares {args.dead_shares}: each must be a share of the groups, in [0, 1]")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    measure(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
