"""Generation backends: token ids in, sampled token ids + their sampling log-probs out (one protocol).

`GenerationBackend.generate(prompts, ...)` takes B already-tokenised prompts (chat template applied by the
caller) and returns one `Generation` per prompt, in order:
- `token_ids`: exactly the sampled ids, never re-encoded. They include the eos token when the model emitted
  one, and the token(s) that completed a stop string (the closing `</action>` tag): both are part of the
  response and are trained on.
- `logprobs`: the log-probability of each sampled id under the distribution it was drawn from,
  log softmax(top_p_filter(logits / T)) — the nucleus is renormalised. With T = 1 and top_p = 1 this is the
  model's own log-prob (equal to `sdar.models.token_logprobs` up to float noise). With T = 0 (greedy) the
  sampling distribution is a point mass, so we report the model's T = 1 log-prob of the argmax instead.
- `text`: `tokenizer.decode(token_ids, skip_special_tokens=True)`, what the reply parser reads. When the last
  token straddles a stop string, the text runs on to that token's end (the ids are the truth).
- `finish_reason`: "eos" (an eos id was sampled), "stop" (a stop string appeared in the generated text) or
  "length" (`max_new_tokens` reached).

A backend that runs its own copy of the weights (vLLM, sdar/models/vllm_backend.py) also takes the trainer's
weights after every update (`load_weights(model)`: afterwards it samples exactly as `model` would, up to
kernel and precision differences), may free its memory while the trainer updates (`release_memory()`,
taken back by the next `load_weights`), and is shut down with `close()`. `HFBackend` samples with the
trainer's own module, so for it these three do nothing.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import torch

FinishReason = Literal["stop", "eos", "length"]


@dataclass(frozen=True)
class Generation:
    """One sampled response: ids exactly as sampled, their sampling log-probs, decoded text, why it ended."""

    token_ids: list[int]
    logprobs: list[float]
    text: str
    finish_reason: FinishReason


@runtime_checkable
class GenerationBackend(Protocol):
    # True when it samples with the trainer's own model in this process (its weights, sharded or not, are
    # the ones sampled); False when an engine holds a copy that `load_weights` refreshes.
    runs_trainer_model: bool

    def generate(
        self,
        prompts: list[list[int]],
        *,
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        stop_strings: Sequence[str] = (),
        seed: int | None = None,
    ) -> list[Generation]:
        """One Generation per prompt, in order; the same seed and prompts give the same tokens."""

    def load_weights(self, model) -> None:
        """Sample with `model`'s current weights from now on (LoRA adapters merged)."""

    def release_memory(self) -> None:
        """Free what the backend can until the next `load_weights` (between rollout and update)."""

    def close(self) -> None:
        """Shut the backend down (engine processes, temporary files); idempotent."""


def check_request(prompts: list[list[int]], max_new_tokens: int) -> bool:
    """Refuse what no backend can sample (an empty prompt, no new token); False when there is no prompt."""
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if any(len(prompt) == 0 for prompt in prompts):
        raise ValueError("every prompt needs at least one token")
    return bool(prompts)


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """[B, V] logits -> [B, V] with -inf outside the nucleus: the fewest top tokens whose mass reaches top_p.

    A token is kept when the probability mass of the tokens ranked above it is still below top_p, so the
    most likely token is always kept.
    """
    if top_p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)  # [B, V]
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # [B, V]
    drop = mass_before >= top_p
    drop[:, 0] = False
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.empty_like(logits).scatter_(-1, order, sorted_logits)


def sample_next(
    logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, V] float32 logits -> (token ids [B], their sampling log-probs [B]); temperature 0 = greedy."""
    if temperature <= 0.0:
        tokens = logits.argmax(dim=-1)  # [B]
        log_distribution = logits.log_softmax(dim=-1)  # the model's T = 1 log-probs (see module docstring)
    else:
        log_distribution = top_p_filter(logits / temperature, top_p).log_softmax(dim=-1)  # [B, V]
        tokens = torch.multinomial(log_distribution.exp(), 1, generator=generator).squeeze(-1)  # [B]
    return tokens, log_distribution.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def _unwrap_peft(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _cache_keyword(model) -> str:
    """transformers 5.24 calls the forward's KV-cache argument `cache` (earlier: `past_key_values`)."""
    parameters = inspect.signature(_unwrap_peft(model).forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def eos_token_ids(model, tokenizer) -> frozenset[int]:
    """The tokenizer's eos id plus the model's generation-config eos id(s) (an int or a list)."""
    ids = set() if tokenizer.eos_token_id is None else {int(tokenizer.eos_token_id)}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if configured is not None:
        ids.update(int(i) for i in (configured if isinstance(configured, list | tuple) else [configured]))
    return frozenset(ids)


class HFBackend:
    """Batched sampling with a Hugging Face causal LM (or a PeftModel of one), in this process.

    One call runs all prompts as one left-padded batch: a prefill of the distinct prompts (identical prompts,
    such as the G episodes of a group at their first turn, are computed once and their KV cache copied; logits
    of the last position only), then one forward per new token with the KV cache. Rows that finish (eos,
    stop string, length) leave the batch and the cache at once, so a long reply never makes short ones pay.
    We write the decode loop instead of calling `model.generate` so that the reported log-probs are exactly
    those of the distribution we sample from (generate's `output_scores` are post-processor scores whose
    meaning depends on the warper stack) and the stop check is a cheap decode of each row's last few tokens.
    `seed=None` continues the backend's own generator (seeded by `seed` at construction);
    `share_prefill=False` prefills every row, duplicates included (for measurements).
    """

    runs_trainer_model = True

    def __init__(self, model, tokenizer, *, seed: int = 0, share_prefill: bool = True):
        if tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token; load it with sdar.models.load_model")
        self.model = model
        self.tokenizer = tokenizer
        self.eos_ids = eos_token_ids(model, tokenizer)
        self.share_prefill = share_prefill
        self._cache_keyword = _cache_keyword(model)
        self._device = next(model.parameters()).device
        self._generator = torch.Generator(device=self._device).manual_seed(seed)

    def generate(
        self,
        prompts: list[list[int]],
        *,
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        stop_strings: Sequence[str] = (),
        seed: int | None = None,
    ) -> list[Generation]:
        if not check_request(prompts, max_new_tokens):
            return []
        generator = self._generator
        if seed is not None:
            generator = torch.Generator(device=self._device).manual_seed(seed)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                tokens, logprobs, reasons = self._decode(
                    prompts, max_new_tokens, temperature, top_p, tuple(stop_strings), generator
                )
        finally:
            self.model.train(was_training)
        texts = self.tokenizer.batch_decode(tokens, skip_special_tokens=True)
        return [Generation(*row) for row in zip(tokens, logprobs, texts, reasons, strict=True)]

    def load_weights(self, model) -> None:
        if model is not self.model:
            raise ValueError("HFBackend samples with the model it was built with; build another for this one")

    def release_memory(self) -> None:
        pass

    def close(self) -> None:
        pass

    def _forward(self, input_ids, attention_mask, position_ids, cache) -> torch.Tensor:
        """One model call with the KV cache -> float32 logits of the last position [b, V]."""
        output = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=True,  # the config may say False after enabling gradient checkpointing
            logits_to_keep=1,  # the prefill never builds [B, P, V] logits
            **{self._cache_keyword: cache},
        )
        return output.logits[:, -1].float()

    def _prefill(self, prompts: list[list[int]]):
        """Left-padded prefill of the DISTINCT prompts, expanded to every row (G episodes may share one).

        -> (logits [B, V], KV cache of B rows, attention_mask [B, P], next position [B, 1]).
        """
        distinct: dict[tuple[int, ...], int] = {}
        if self.share_prefill:
            row_of = [distinct.setdefault(tuple(prompt), len(distinct)) for prompt in prompts]  # [B] -> [U]
            unique = [list(prompt) for prompt in distinct]
        else:
            row_of, unique = list(range(len(prompts))), prompts
        length = max(len(prompt) for prompt in unique)
        input_ids = torch.full((len(unique), length), self.tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(unique), length), dtype=torch.long)
        for row, prompt in enumerate(unique):
            input_ids[row, length - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
            attention_mask[row, length - len(prompt) :] = 1
        input_ids, attention_mask = input_ids.to(self._device), attention_mask.to(self._device)
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # [U, P]: skip the left padding

        from transformers import DynamicCache

        cache = DynamicCache(config=_unwrap_peft(self.model).config)
        logits = self._forward(input_ids, attention_mask, position_ids, cache)  # [U, V]
        if len(unique) < len(prompts):
            index = torch.tensor(row_of, device=self._device)
            cache.batch_select_indices(index)  # repeated indices copy a row's keys/values
            logits, attention_mask = logits[index], attention_mask[index]
        return logits, cache, attention_mask, attention_mask.sum(-1, keepdim=True)

    def _decode(self, prompts, max_new_tokens, temperature, top_p, stop_strings, generator):
        batch_size = len(prompts)
        logits, cache, attention_mask, next_position = self._prefill(prompts)
        stop_window = max((len(s.encode("utf-8")) for s in stop_strings), default=0) + 2  # tokens
        tokens: list[list[int]] = [[] for _ in range(batch_size)]
        logprobs: list[list[float]] = [[] for _ in range(batch_size)]
        reasons: list[str | None] = [None] * batch_size
        live = list(range(batch_size))  # original index of each row still in the batch
        for _ in range(max_new_tokens):
            next_ids, next_logprobs = sample_next(logits, temperature, top_p, generator)  # [b], [b]
            keep = []
            for position, (row, token, logprob) in enumerate(
                zip(live, next_ids.tolist(), next_logprobs.tolist(), strict=True)
            ):
                tokens[row].append(token)
                logprobs[row].append(logprob)
                reasons[row] = self._finish_reason(tokens[row], max_new_tokens, stop_strings, stop_window)
                if reasons[row] is None:
                    keep.append(position)
            if not keep:
                break
            if len(keep) < len(live):  # drop finished rows from the batch and the KV cache
                index = torch.tensor(keep, device=self._device)
                cache.batch_select_indices(index)
                attention_mask, next_ids, next_position = (
                    attention_mask[index],
                    next_ids[index],
                    next_position[index],
                )
                live = [live[position] for position in keep]
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones(len(live), 1)], dim=1)
            logits = self._forward(next_ids.unsqueeze(-1), attention_mask, next_position, cache)
            next_position = next_position + 1
        return tokens, logprobs, reasons

    def _finish_reason(
        self, tokens: list[int], max_new_tokens: int, stop_strings: tuple[str, ...], stop_window: int
    ) -> str | None:
        if tokens[-1] in self.eos_ids:
            return "eos"
        # Every token carries at least one byte, so a stop string completed by the newest token lies within
        # the last len(stop bytes) + 1 tokens; decoding only that tail keeps the check O(1) per step.
        if stop_strings:
            tail = self.tokenizer.decode(tokens[-stop_window:], skip_special_tokens=True)
            if any(stop in tail for stop in stop_strings):
                return "stop"
        if len(tokens) >= max_new_tokens:
            return "length"
        return None
