"""Typed records that cross module boundaries: Turn (one training row), Episode, and the tensor Batch.

Data flow: the rollout produces Episodes of Turns (token ids exactly as sampled); `rows_to_batch` packs turns
into padded tensors; advantages, old/ref/teacher log-probs are added to the Batch as named fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import torch
from torch import Tensor

from sdar.env_records import Task


@dataclass
class Turn:
    """One policy reply and the env's response: one training row (docs/method.md §1)."""

    task: Task
    group_index: int  # which task of the step this row's group is
    episode_index: int  # which episode of the step (unique across groups)
    turn_index: int  # 0-based turn within the episode
    prompt_text: str  # the user message the student saw (before the chat template)
    prompt_ids: list[int]  # chat-templated prompt tokens, generation prompt included
    response_ids: list[int]  # exactly the sampled tokens (never re-encoded)
    response_text: str
    action: str  # what was stepped (the no-op command when the reply was invalid)
    valid: bool
    invalid_reason: str = ""
    # Was the stepped action one of the env's admissible actions for this turn? None where the env lists none
    # (WebShop's clickables are in the observation, Search-QA has none). An invalid reply counts as False.
    admissible: bool | None = None
    sampling_logprobs: list[float] | None = None  # the generator's own log-probs of response_ids
    finish_reason: str = ""  # why generation ended: "eos", "stop" (stop string) or "length" (cut off)
    env_reward: float = 0.0
    observation_after: str = ""
    reward: float = 0.0  # the row's training reward: episode return − penalty if this turn was invalid


@dataclass
class Episode:
    """One multi-turn run of the policy on a task."""

    task: Task
    group_index: int
    episode_index: int
    turns: list[Turn] = field(default_factory=list)
    won: bool = False
    episode_return: float = 0.0
    error: str = ""  # why the env ended the episode early (engine crash, timeout), if it did
    metrics: dict = field(default_factory=dict)  # the env's metrics after the last turn (WebShop "score")
    info: dict = field(default_factory=dict)  # bookkeeping, e.g. {"slot": 3}


def assign_row_rewards(episodes: list[Episode], invalid_penalty: float) -> None:
    """Spec §1: the episode return is copied to every turn row; each invalid turn's row loses the penalty."""
    for episode in episodes:
        for turn in episode.turns:
            turn.reward = episode.episode_return - (0.0 if turn.valid else invalid_penalty)


@dataclass
class Batch:
    """Padded rows [N, L]: prompt tokens left-padded, response tokens right-padded, joined at one column.

    Every row's response starts at column `response_start`, so per-token tensors of the response region are
    [N, T] with T = L − response_start, aligned across rows. Optional fields are filled as the step goes.
    """

    input_ids: Tensor  # [N, L] long
    attention_mask: Tensor  # [N, L] bool
    response_mask: Tensor  # [N, T] bool: True on generated tokens
    response_start: int
    rewards: Tensor  # [N]
    group_index: Tensor  # [N] long
    episode_index: Tensor  # [N] long
    turn_index: Tensor  # [N] long
    sampling_logprobs: Tensor | None = None  # [N, T]
    old_logprobs: Tensor | None = None  # [N, T]
    ref_logprobs: Tensor | None = None  # [N, T]
    teacher_logprobs: Tensor | None = None  # [N, T]
    advantages: Tensor | None = None  # [N]

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def select(self, rows: Tensor | slice | list[int]) -> Batch:
        """The sub-batch of the given rows (all row-indexed tensor fields are sliced alike)."""
        values = {}
        for f in fields(self):
            value = getattr(self, f.name)
            values[f.name] = value[rows] if isinstance(value, Tensor) else value
        return replace(self, **values)

    def to(self, device) -> Batch:
        """The same rows with every tensor on `device` (batches live on the CPU; micro-batches visit the
        model's device)."""
        values = {}
        for f in fields(self):
            value = getattr(self, f.name)
            values[f.name] = value.to(device) if isinstance(value, Tensor) else value
        return replace(self, **values)

    def compact(self) -> Batch:
        """The same rows without the columns that are padding in EVERY row: prompt columns before the earliest
        first token, response columns after the longest response. A micro-batch of short rows cut from a batch
        padded to its longest row then costs only its own length. Per-token tensors [N, T] become [N, T'];
        `pad_response(values, T)` puts log-probs computed on it back to the full width."""
        real = self.attention_mask.bool()
        columns = real.any(dim=0)  # [L]
        first = int(columns.nonzero()[0]) if bool(columns.any()) else 0
        first = min(first, self.response_start)
        response_columns = columns[self.response_start :].nonzero()
        kept = int(response_columns[-1]) + 1 if len(response_columns) else 0  # T'
        end = self.response_start + kept
        values = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("input_ids", "attention_mask"):
                value = value[:, first:end]
            elif f.name in RESPONSE_ALIGNED and value is not None:
                value = value[:, :kept]
            values[f.name] = value
        values["response_start"] = self.response_start - first
        return replace(self, **values)


RESPONSE_ALIGNED = ("response_mask", "sampling_logprobs", "old_logprobs", "ref_logprobs", "teacher_logprobs")


def pad_response(values: Tensor, length: int) -> Tensor:
    """[N, T'] per-token values of a compacted batch -> [N, length], zeros after T'."""
    return torch.nn.functional.pad(values, (0, length - values.shape[1]))


def pack_sequences(
    prompts: list[list[int]], responses: list[list[int]], pad_token_id: int
) -> tuple[Tensor, Tensor, Tensor, int]:
    """(input_ids [N, L], attention_mask [N, L], response_mask [N, T], response_start): prompts left-padded,
    responses right-padded, so every response starts at column `response_start`."""
    if not prompts:
        raise ValueError("cannot build a batch from zero rows")
    prompt_length = max(len(p) for p in prompts)
    response_length = max(max(len(r) for r in responses), 1)
    n = len(prompts)
    input_ids = torch.full((n, prompt_length + response_length), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids, dtype=torch.bool)
    response_mask = torch.zeros((n, response_length), dtype=torch.bool)
    for row, (prompt, response) in enumerate(zip(prompts, responses, strict=True)):
        p, r = len(prompt), len(response)
        input_ids[row, prompt_length - p : prompt_length] = torch.tensor(prompt, dtype=torch.long)
        input_ids[row, prompt_length : prompt_length + r] = torch.tensor(response, dtype=torch.long)
        attention_mask[row, prompt_length - p : prompt_length + r] = True
        response_mask[row, :r] = True
    return input_ids, attention_mask, response_mask, prompt_length


def rows_to_batch(turns: list[Turn], pad_token_id: int) -> Batch:
    """Pack turns into a Batch (prompt left-padded to the longest prompt, response right-padded)."""
    input_ids, attention_mask, response_mask, response_start = pack_sequences(
        [t.prompt_ids for t in turns], [t.response_ids for t in turns], pad_token_id
    )
    sampling = torch.zeros(response_mask.shape)
    has_sampling = all(t.sampling_logprobs is not None for t in turns)
    if has_sampling:
        for row, turn in enumerate(turns):
            sampling[row, : len(turn.response_ids)] = torch.tensor(
                turn.sampling_logprobs, dtype=torch.float32
            )
    return Batch(
        input_ids=input_ids,
        attention_mask=attention_mask,
        response_mask=response_mask,
        response_start=response_start,
        rewards=torch.tensor([t.reward for t in turns], dtype=torch.float32),
        group_index=torch.tensor([t.group_index for t in turns], dtype=torch.long),
        episode_index=torch.tensor([t.episode_index for t in turns], dtype=torch.long),
        turn_index=torch.tensor([t.turn_index for t in turns], dtype=torch.long),
        sampling_logprobs=sampling if has_sampling else None,
    )
