"""Data parallelism across processes: N copies of the trainer split each step's B tasks and sum their
gradients (gloo on CPU, NCCL on GPUs). Launch with accelerate's torchrun launcher (on CPU too; its `--cpu`
launcher needs MPI for several processes) or torchrun itself:

    accelerate launch --multi_gpu --num_processes 2 -m sdar.cli train smoke rollout.tasks_per_step=2
    torchrun --nproc_per_node 2 -m sdar.cli train smoke rollout.tasks_per_step=2

What each process does in a step of B tasks on a world of N processes:
- rollout: the tasks `tasks[rank::N]` (B must divide by N), sampled with a per-rank seed;
- old / teacher / ref log-probs and advantages: on its own rows (a group never spans processes, so GRPO's
  group statistics are exactly those of one process);
- update: the same number of mini-batches on every process (ceil(global rows / mini_batch_rows)), each
  process's share of a global mini-batch being a near-equal slice of its own shuffled rows. The token-mean
  is over the GLOBAL mini-batch (token and row counts summed across processes), so summing the gradients
  across processes (`all_reduce_gradients`) gives exactly the gradient of the 1-process token-mean over the
  same rows; clipping and the optimizer step then run identically everywhere and the replicas stay equal;
- logging, checkpoints and panel evaluation: process 0 only, the others wait at a barrier.

The gradient is all-reduced explicitly rather than through a DistributedDataParallel wrapper because the
policy's forward goes through `token_logprobs` (chunked, with a prefix cache), not `module.forward`. This
covers replicated-weights data parallelism (DDP semantics). With `trainer.sharding=fsdp` the weights,
gradients and optimizer state are sharded instead and FSDP reduces the gradients itself
(sdar/models/sharding.py); everything else above holds as written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch

BARRIER_TIMEOUT = timedelta(hours=6)


def default_device() -> str | None:
    """This process's GPU (`cuda:LOCAL_RANK`) when there is one, else None (the CPU)."""
    if not torch.cuda.is_available():
        return None
    local_rank, count = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
    if local_rank >= count:
        raise RuntimeError(
            f"process {local_rank} of this machine has no GPU: {count} visible "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}). Launch at most one "
            "process per GPU (accelerate launch --num_processes), or none with CUDA_VISIBLE_DEVICES= for CPU "
            "processes"
        )
    return f"cuda:{local_rank}"


@dataclass(frozen=True)
class DataParallel:
    rank: int = 0
    world_size: int = 1
    device: str | None = None  # where the model trains; collectives use it too (NCCL needs GPU tensors)

    @classmethod
    def from_environment(cls) -> DataParallel:
        """One process (no launcher), or the process group `accelerate launch` / torchrun describe."""
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return cls(device=default_device())
        from accelerate import PartialState

        # Initialises the process group: NCCL on GPUs; gloo on CPU (accelerate picks it only when told `cpu`).
        # The timeout covers the longest wait at a barrier: the other processes wait while process 0 plays a
        # whole evaluation panel (the paper's 140 games x 3 seeds x <= 50 turns), far past the default 30 min.
        state = PartialState(cpu=not torch.cuda.is_available(), timeout=BARRIER_TIMEOUT)
        return cls(rank=state.process_index, world_size=state.num_processes, device=default_device())

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, items: list) -> list:
        """This process's share of the step's tasks: items[rank::world_size]."""
        if len(items) % self.world_size:
            raise ValueError(
                f"rollout.tasks_per_step={len(items)} does not divide among {self.world_size} processes; "
                f"use a multiple of {self.world_size}"
            )
        return items[self.rank :: self.world_size]

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over processes (float64, so counts stay exact)."""
        if not self.enabled:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device or "cpu")
        torch.distributed.all_reduce(tensor)
        return tensor.tolist()

    def all_reduce_gradients(self, parameters: list[torch.nn.Parameter]) -> None:
        """Sum every gradient over processes (a missing gradient counts as zeros), in one flat buffer."""
        if not self.enabled:
            return
        for parameter in parameters:
            if parameter.grad is None:
                parameter.grad = torch.zeros_like(parameter)
        flat = torch.cat([parameter.grad.reshape(-1) for parameter in parameters])
        torch.distributed.all_reduce(flat)
        offset = 0
        for parameter in parameters:
            size = parameter.grad.numel()
            parameter.grad.copy_(flat[offset : offset + size].view_as(parameter.grad))
            offset += size

    def gather(self, value) -> list:
        """Every process's `value` (any picklable object), in rank order."""
        if not self.enabled:
            return [value]
        gathered = [None] * self.world_size
        torch.distributed.all_gather_object(gathered, value)
        return gathered

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def close(self) -> None:
        """Leave the process group together (a process exiting with the group alive can abort in gloo's
        teardown: "terminate called without an active exception")."""
        if self.enabled and torch.distributed.is_initialized():
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()


SUMMED = ("episodes", "turns", "generated_tokens", "prompt_tokens", "generate_calls", "failed_episodes")


def combine_rollout_stats(per_process: list[dict]) -> dict:
    """One step's `train/*` rollout stats over processes: counts summed, seconds and speeds as the slowest
    process saw them (`*_s`: max; tokens_per_s: summed), every other value averaged weighted by episodes. A
    value some process left out (a ratio its rollout could not give) is combined over those that have it."""
    if len(per_process) == 1:
        return per_process[0]
    combined = {}
    for key in dict.fromkeys(key for stats in per_process for key in stats):
        having = [stats for stats in per_process if key in stats]
        values = [stats[key] for stats in having]
        weights = [stats.get("train/episodes", 1) or 1 for stats in having]
        name = key.removeprefix("train/")
        if not all(isinstance(value, (int, float)) for value in values):
            combined[key] = values[0]
        elif name in SUMMED or name.startswith(("finish_", "prompts_")) or name == "tokens_per_s":
            combined[key] = sum(values)
        elif name.endswith("_s"):
            combined[key] = max(values)
        else:
            combined[key] = sum(w * v for w, v in zip(weights, values, strict=True)) / sum(weights)
    return combined


def ensure_process_group(parallel: DataParallel) -> None:
    """A process group even for one process (FSDP needs one to shard over): gloo on CPU, NCCL on GPUs."""
    if parallel.enabled or torch.distributed.is_initialized():
        return
    backend = "nccl" if parallel.device is not None and str(parallel.device).startswith("cuda") else "gloo"
    torch.distributed.init_process_group(backend, store=torch.distributed.HashStore(), rank=0, world_size=1)
