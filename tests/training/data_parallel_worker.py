"""One policy update of a fixed global batch, run by `tests/training/test_data_parallel.py` and
`test_sharded_training.py` either in one process or as each of the processes of `accelerate launch` (which
then split the batch by group), the model replicated or sharded with FSDP2.

    python data_parallel_worker.py OUTPUT_DIR [none|fsdp]
writes OUTPUT_DIR/rank0.safetensors (+ rank1, ...: the updated trainable weights, whole) and rank0.json (the
update's statistics, losses included).
"""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from sdar.algorithms.objective import settings_from_config
from sdar.config import TrainerConfig, load_config
from sdar.models import load_model
from sdar.models.sharding import shard_model
from sdar.records import Batch, pack_sequences
from sdar.training.checkpoint import trainable_state
from sdar.training.distributed import DataParallel, ensure_process_group
from sdar.training.update import Learner, policy_update, score_batch

GROUPS, ROWS_PER_GROUP = 4, 3


def global_rows(vocab_size: int) -> list[dict]:
    """12 rows in 4 groups, prompts and responses of unequal lengths, fixed by a seed."""
    generator = torch.Generator().manual_seed(1234)
    rows = []
    for index in range(GROUPS * ROWS_PER_GROUP):
        prompt_length = int(torch.randint(4, 12, (1,), generator=generator))
        response_length = int(torch.randint(2, 9, (1,), generator=generator))
        rows.append(
            {
                "group": index // ROWS_PER_GROUP,
                "prompt": torch.randint(1, vocab_size, (prompt_length,), generator=generator).tolist(),
                "response": torch.randint(1, vocab_size, (response_length,), generator=generator).tolist(),
                "advantage": float(torch.randn(1, generator=generator)),
                "teacher_shift": float(torch.randn(1, generator=generator)),
            }
        )
    return rows


def build_batch(rows: list[dict], model, pad_token_id: int) -> Batch:
    input_ids, attention_mask, response_mask, start = pack_sequences(
        [row["prompt"] for row in rows], [row["response"] for row in rows], pad_token_id
    )
    count = len(rows)
    batch = Batch(
        input_ids=input_ids,
        attention_mask=attention_mask,
        response_mask=response_mask,
        response_start=start,
        rewards=torch.zeros(count),
        group_index=torch.tensor([row["group"] for row in rows]),
        episode_index=torch.arange(count),
        turn_index=torch.zeros(count, dtype=torch.long),
    )
    batch.old_logprobs, _ = score_batch(model, batch, micro_batch_rows=4)
    batch.ref_logprobs = batch.old_logprobs - 0.05 * response_mask
    batch.teacher_logprobs = batch.old_logprobs + torch.tensor([[row["teacher_shift"]] for row in rows]) * 0.3
    batch.advantages = torch.tensor([row["advantage"] for row in rows])
    return batch


def main(output_dir: Path, sharding: str = "none") -> None:
    parallel = DataParallel.from_environment()
    config = load_config("smoke", ["algorithm.method=sdar", "algorithm.entropy_coef=0.01"])
    torch.manual_seed(0)
    model, tokenizer = load_model(config.model)
    rows = [
        row
        for row in global_rows(model.config.vocab_size)
        if row["group"] % parallel.world_size == parallel.rank
    ]
    batch = build_batch(rows, model, tokenizer.pad_token_id)
    if sharding == "fsdp":
        ensure_process_group(parallel)
        shard_model(model)
    # Plain SGD: the weight change is lr x the gradient, so weights compare gradients (Adam's first step
    # divides by |g| and would blow tiny float-order differences of near-zero gradients up to lr).
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    stats = policy_update(
        Learner(model, optimizer, scheduler, parallel=parallel),
        batch,
        objective=settings_from_config(config.algorithm),
        trainer=TrainerConfig(
            mini_batch_rows=GROUPS * ROWS_PER_GROUP,  # one global mini-batch: one optimizer step
            micro_batch_rows=2,
            grad_clip=1.0,
            ppo_epochs=1,
            max_bad_updates=3,
        ),
        step=0,
        generator=torch.Generator().manual_seed(0),
    )
    weights = trainable_state(model)  # collective when sharded
    output_dir.mkdir(parents=True, exist_ok=True)
    save_file(weights, output_dir / f"rank{parallel.rank}.safetensors")
    (output_dir / f"rank{parallel.rank}.json").write_text(json.dumps(stats))
    parallel.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]), *sys.argv[2:])
