"""Teacher log-probs of the student's response tokens: log π_T(y_t | s_t^+) (docs/method.md §2, §5 step 5).

No gradient; the model passed in is the scoring model of `TeacherWeights` (the step's pre-update weights for
`live`). The result is [N, T], aligned with `rows_to_batch(turns).response_mask` (same rows, same order, T
response columns), zero outside the mask.

Shared prefix (docs/method.md §4): rows are grouped by their skill text. Within a group every teacher prompt
starts with the same tokens: at least the skill block for `prefix`, the system message for `system`, usually
more (the chat template's user header and the prompt's fixed first lines). That shared prefix P is run ONCE
into a KV cache; each row then scores only [P[-1]] + rest of its prompt + response against the cache
(`sdar.models.logprobs`: the last prefix token's hidden state predicts the row's first token). Two layouts
(`prefix_batching`):
- `per_group`: P = the group's longest common token prefix, one cache and its own micro-batches per group.
  Fewest tokens; 2+ forward calls per group.
- `batched`: every group's prefix cut to the SHORTEST group's shared length, all prefixes in one forward
  ([G, P] needs no padding), and micro-batches mix groups (each row gets its group's cache row). A few more
  tokens (the skill texts' length spread is recomputed per row), far fewer and fuller forward calls.
- `auto` (default): `per_group` on CPU (compute-bound), `batched` on an accelerator, where a forward call's
  launch overhead is large. Measured (benchmarks/README.md), 16 rows: H200, Qwen2.5-3B shape: plain 623 ms,
  per_group 581 ms, batched 470 ms; CPU, 6-layer SmolLM2 shape: plain 17.2 s, per_group 8.7 s, batched 11.7 s.
Rows are scored in micro-batches of `micro_batch_rows`, sorted by length to limit padding.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from sdar.models.logprobs import prefix_cache, token_logprobs
from sdar.records import Turn
from sdar.teacher.prompts import TeacherPrompt, build_teacher_prompts

PREFIX_BATCHING = ("auto", "per_group", "batched")


def longest_common_prefix(sequences: Sequence[Sequence[int]]) -> int:
    """Length of the longest common prefix of token sequences (0 for none)."""
    if not sequences:
        return 0
    shortest = min(len(sequence) for sequence in sequences)
    first = sequences[0]
    for position in range(shortest):
        token = first[position]
        if any(sequence[position] != token for sequence in sequences[1:]):
            return position
    return shortest


def teacher_logprobs(
    model,
    tokenizer,
    turns: Sequence[Turn],
    *,
    env_name: str,
    placement: str = "prefix",
    share_prefix: bool = True,
    prefix_batching: str = "auto",
    micro_batch_rows: int = 8,
    response_length: int | None = None,
    chunk_size: int = 512,
    temperature: float = 1.0,
    chat_template_kwargs: dict | None = None,
    prompts: Sequence[TeacherPrompt] | None = None,
) -> Tensor:
    """Turns -> teacher log-probs [N, T] float32 (CPU), T = response_length or the longest response (≥ 1).

    `prompts` may pass prebuilt teacher prompts (one per turn); otherwise they are built from the env's skill
    library. The model is put in eval mode for the pass and restored after.
    """
    if not turns:
        raise ValueError("teacher_logprobs needs at least one turn")
    if micro_batch_rows < 1:
        raise ValueError(f"micro_batch_rows must be >= 1, got {micro_batch_rows}")
    longest = max(max(len(turn.response_ids) for turn in turns), 1)
    length = longest if response_length is None else response_length
    if length < longest:
        raise ValueError(f"response_length={length} is shorter than the longest response ({longest} tokens)")
    if prompts is None:
        prompts = build_teacher_prompts(
            turns,
            tokenizer,
            env_name=env_name,
            placement=placement,
            chat_template_kwargs=chat_template_kwargs,
        )
    if len(prompts) != len(turns):
        raise ValueError(f"{len(prompts)} teacher prompts for {len(turns)} turns")
    # Padding is masked out, so any id serves; the tokenizer's own pad keeps printed batches readable.
    pad_id = next((i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id) if i is not None), 0)
    options = dict(pad_id=pad_id, chunk_size=chunk_size, temperature=temperature)
    responses = [list(turn.response_ids) for turn in turns]
    result = torch.zeros(len(turns), length)  # [N, T]
    with _eval_mode(model), torch.no_grad():
        for plan in _plans(model, prompts, share_prefix, prefix_batching):
            # Sorted by length: rows of similar length share a micro-batch, so little padding is scored.
            order = sorted(plan.rows, key=lambda row: len(plan.suffixes[row]) + len(responses[row]))
            for begin in range(0, len(order), micro_batch_rows):
                chosen = order[begin : begin + micro_batch_rows]
                scores = _score_rows(
                    model,
                    [plan.suffixes[row] for row in chosen],
                    [responses[row] for row in chosen],
                    plan.cache_for(chosen),
                    **options,
                ).cpu()  # [B, R]
                for local, row in enumerate(chosen):
                    count = len(responses[row])
                    result[row, :count] = scores[local, :count]
    return result


@dataclass
class _Plan:
    """Rows scored against one prefix cache: each row's suffix = its prompt from the last cached token on."""

    rows: list[int]
    suffixes: dict[int, list[int]]
    cache: object = None  # a KV cache of batch 1 or one row per group, or None (full prompts, no cache)
    group_of: dict[int, int] | None = None  # row -> the cache row holding its prefix (batched groups)

    def cache_for(self, rows: list[int]):
        if self.cache is None or self.group_of is None:
            return self.cache
        # One cache row per scored row: the cache rows of the rows' groups (a copy; the plan's stays intact).
        cache = copy.deepcopy(self.cache)
        index = torch.tensor([self.group_of[row] for row in rows], device=_device_of_cache(cache))
        cache.batch_select_indices(index)
        return cache


def _plans(model, prompts: Sequence[TeacherPrompt], share_prefix: bool, prefix_batching: str) -> list[_Plan]:
    """How rows are scored: per skill group, all groups against one batched cache, or without any cache."""
    if prefix_batching not in PREFIX_BATCHING:
        raise ValueError(f"prefix_batching={prefix_batching!r}; choose one of: {', '.join(PREFIX_BATCHING)}")
    everything = list(range(len(prompts)))
    if not share_prefix:
        return [_Plan(everything, {row: prompts[row].prompt_ids for row in everything})]
    groups: dict[str, list[int]] = {}
    for row, prompt in enumerate(prompts):
        groups.setdefault(prompt.skills, []).append(row)
    shared = [longest_common_prefix([prompts[row].prompt_ids for row in rows]) for rows in groups.values()]
    device = _device_of(model)
    if prefix_batching == "auto":
        prefix_batching = "per_group" if device.type == "cpu" else "batched"
    if prefix_batching == "per_group" or len(groups) == 1:
        return [
            _plan(model, prompts, rows, length, torch.tensor([prompts[rows[0]].prompt_ids[: length - 1]]))
            for rows, length in zip(groups.values(), shared, strict=True)
        ]
    # batched: every group's prefix cut to the shortest group's shared length, all in one forward.
    length = min(shared)
    heads = torch.tensor([prompts[rows[0]].prompt_ids[: length - 1] for rows in groups.values()])  # [G, P]
    plan = _plan(model, prompts, everything, length, heads)
    if plan.cache is not None:
        plan.group_of = {row: group for group, rows in enumerate(groups.values()) for row in rows}
    return [plan]


def _plan(
    model, prompts: Sequence[TeacherPrompt], rows: list[int], length: int, heads: torch.Tensor
) -> _Plan:
    """Cache the first `length - 1` shared tokens (`heads` [G, length - 1]); rows keep the rest."""
    if length < 2:  # nothing worth caching
        return _Plan(rows, {row: prompts[row].prompt_ids for row in rows})
    cache = prefix_cache(model, heads.to(_device_of(model)))
    # Each row keeps the last shared token: its hidden state predicts the row's next token.
    return _Plan(rows, {row: prompts[row].prompt_ids[length - 1 :] for row in rows}, cache)


def _score_rows(
    model,
    prompts: list[list[int]],
    responses: list[list[int]],
    cache,
    *,
    pad_id: int,
    chunk_size: int,
    temperature: float,
) -> Tensor:
    """Log-probs [B, R] of each row's response after its prompt (prompts left-, responses right-padded)."""
    prompt_length = max(len(ids) for ids in prompts)
    response_length = max(max(len(ids) for ids in responses), 1)
    batch = len(prompts)
    input_ids = torch.full((batch, prompt_length + response_length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for row, (prompt, response) in enumerate(zip(prompts, responses, strict=True)):
        tokens = torch.tensor(prompt + response, dtype=torch.long)
        start = prompt_length - len(prompt)
        input_ids[row, start : start + len(tokens)] = tokens
        attention_mask[row, start : start + len(tokens)] = 1
    device = _device_of(model)
    logprobs, _ = token_logprobs(
        model,
        input_ids.to(device),
        attention_mask.to(device),
        start=prompt_length,
        chunk_size=chunk_size,
        temperature=temperature,
        past_key_values=cache,
    )  # [B, P + R]
    return logprobs[:, prompt_length:]


def _device_of(model) -> torch.device:
    return next(model.parameters()).device


def _device_of_cache(cache) -> torch.device:
    return cache.layers[0].keys.device


@contextlib.contextmanager
def _eval_mode(model):
    """Dropout off while scoring (LoRA dropout included); the caller's mode comes back after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
