"""Per-token log-probs and entropies of given tokens, without materialising full-vocabulary logits at once.

logprobs[b, t] = log p(input_ids[b, t] | input_ids[b, :t]) and entropy[b, t] = H(p(. | input_ids[b, :t])),
with p = softmax(logits / temperature). This is the one building block of the policy, old, reference and
teacher log-probs. The backbone runs once to hidden states; the LM head, logsumexp, gather and entropy then
run on chunks of `chunk_size` scored tokens, only for positions t >= start, so peak memory holds one chunk of
logits [chunk_size, V] instead of [B, T, V] (plus its log-softmax). With gradients enabled each chunk runs
under `torch.utils.checkpoint`, so the backward recomputes a chunk's logits instead of keeping all of them.

Shared-prefix reuse (teacher rows that all start with the same skill text): build the cache once with
`prefix_cache(model, prefix_ids[:, :-1])`, then score rows `input_ids = [prefix[-1]] + row` (left-padded) with
`past_key_values=cache`. The last prefix token stays in `input_ids` because its hidden state predicts the
row's first token; the cache is copied and repeated over the batch, so one cache serves many calls.
"""

from __future__ import annotations

import copy
import inspect

import torch
from torch.utils.checkpoint import checkpoint

from sdar.models.sharding import sharded_root


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip padding: [B, T] mask -> [B, T] = cumsum(mask) - 1, clamped at 0 (as `generate`)."""
    return (attention_mask.long().cumsum(dim=-1) - 1).clamp(min=0)


def backbone_and_head(model) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(decoder stack returning hidden states, LM head) of a causal LM; a PeftModel keeps its LoRA layers."""
    base = _unwrap_peft(model)
    return base.get_decoder(), base.get_output_embeddings()


def _unwrap_peft(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def token_logprobs(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    start: int = 0,
    with_entropy: bool = False,
    chunk_size: int = 512,
    temperature: float = 1.0,
    past_key_values=None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """[B, T] token ids -> (logprobs [B, T], entropy [B, T] or None), both float32.

    Positions t < max(start, 1), padding, and each row's first real token hold 0: they have no context to be
    predicted from (a prefix cache supplies one: see the module docstring). `start` is usually
    the first response position of a left-padded [prompt | response] batch, so prompt logits are never built.
    `chunk_size` counts scored tokens (rows x positions) per LM-head chunk; it changes memory and speed only
    (SmolLM2, vocabulary 49k: ~0.2 GB per 256 tokens of fp32 logits, softmax and product for the entropy).
    A sharded model (`trainer.sharding=fsdp`) runs this under its FSDP root (sdar/models/sharding.py).
    """
    options = dict(
        start=start,
        with_entropy=with_entropy,
        chunk_size=chunk_size,
        temperature=temperature,
        past_key_values=past_key_values,
    )
    root = sharded_root(model)
    if root is not None:
        return root(_token_logprobs, input_ids, attention_mask, **options)
    return _token_logprobs(model, input_ids, attention_mask, **options)


def _token_logprobs(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    *,
    start: int,
    with_entropy: bool,
    chunk_size: int,
    temperature: float,
    past_key_values,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    batch_size, length = input_ids.shape
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    prefix_length = 0
    if past_key_values is not None:
        _check_cache_usable(model)
        prefix_length = past_key_values.get_seq_length()
        past_key_values = _expand_cache(past_key_values, batch_size)
    # The cached prefix is shared and unpadded: the model sees mask [B, P + T].
    prefix_mask = attention_mask.new_ones(batch_size, prefix_length)
    full_mask = torch.cat([prefix_mask, attention_mask], dim=1)  # [B, P + T]
    position_ids = position_ids_from_mask(full_mask)[:, prefix_length:]  # [B, T]

    backbone, head = backbone_and_head(model)
    cache_argument = {_cache_keyword(backbone): past_key_values} if past_key_values is not None else {}
    hidden = backbone(
        input_ids=input_ids,
        attention_mask=full_mask,
        position_ids=position_ids,
        use_cache=past_key_values is not None,
        **cache_argument,
    ).last_hidden_state  # [B, T, H]

    first = min(max(start, 1), length)
    predictors = hidden[:, first - 1 : length - 1].reshape(-1, hidden.shape[-1])  # [B * (T - first), H]
    targets = input_ids[:, first:].reshape(-1)  # [B * (T - first)]
    # A token is scored when it and its predecessor are real: a row's first real token has no context.
    real = attention_mask.bool()
    scored = (real[:, first:] & real[:, first - 1 : length - 1]).reshape(-1).nonzero().squeeze(-1)  # [N]
    predictors, targets = predictors.index_select(0, scored), targets.index_select(0, scored)

    softcap = getattr(backbone.config, "final_logit_softcapping", None)  # Gemma-2 style; None elsewhere
    use_checkpoint = torch.is_grad_enabled() and (
        predictors.requires_grad or any(parameter.requires_grad for parameter in head.parameters())
    )
    logprob_chunks, entropy_chunks = [], []
    for begin in range(0, targets.shape[0], max(chunk_size, 1)):
        arguments = (predictors[begin : begin + chunk_size], targets[begin : begin + chunk_size])
        options = dict(head=head, temperature=temperature, softcap=softcap, with_entropy=with_entropy)
        if use_checkpoint:
            # The chunk is deterministic (no dropout): no RNG state to save and restore for the recompute.
            chunk = checkpoint(
                _chunk_logprobs, *arguments, use_reentrant=False, preserve_rng_state=False, **options
            )
        else:
            chunk = _chunk_logprobs(*arguments, **options)
        logprob_chunks.append(chunk[0])
        entropy_chunks.append(chunk[1])

    logprobs = _scatter(logprob_chunks, scored, batch_size, length, first, hidden.device)
    entropy = (
        _scatter(entropy_chunks, scored, batch_size, length, first, hidden.device) if with_entropy else None
    )
    return logprobs, entropy


def _scatter(
    chunks: list[torch.Tensor], scored: torch.Tensor, batch_size: int, length: int, first: int, device
):
    """Chunks of [N] scored values -> [B, T], zeros at positions not scored (before `first`, padding)."""
    values = torch.cat(chunks) if chunks else torch.zeros(0, device=device)
    flat = values.new_zeros(batch_size * (length - first)).index_copy(0, scored, values)
    return torch.cat([flat.new_zeros(batch_size, first), flat.view(batch_size, length - first)], dim=1)


def _chunk_logprobs(
    hidden: torch.Tensor,
    targets: torch.Tensor,
    *,
    head: torch.nn.Module,
    temperature: float,
    softcap: float | None,
    with_entropy: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """[N, H] hidden, [N] targets -> (log p(target) [N], entropy [N] or empty), softmax in float32.

    log p(y) = z_y - logsumexp(z);  H = logsumexp(z) - sum_v softmax(z)_v z_v;  z = logits / temperature.
    """
    logits = head(hidden).float()  # [N, V]
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    if temperature != 1.0:
        logits = logits / temperature
    log_normaliser = torch.logsumexp(logits, dim=-1)  # [N]
    logprobs = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - log_normaliser
    if not with_entropy:
        return logprobs, logprobs.new_zeros(0)
    entropy = log_normaliser - (torch.softmax(logits, dim=-1) * logits).sum(-1)
    return logprobs, entropy


@torch.no_grad()
def prefix_cache(model, prefix_ids: torch.Tensor):
    """KV cache of a shared prefix: [1, P] ids -> a cache of P positions, reusable across calls."""
    from transformers import DynamicCache

    backbone, _ = backbone_and_head(model)
    cache = DynamicCache(config=backbone.config)
    backbone(input_ids=prefix_ids, use_cache=True, **{_cache_keyword(backbone): cache})
    return cache


def _cache_keyword(backbone) -> str:
    """transformers 5.24 renamed the decoder's `past_key_values` argument to `cache` (old name until 5.40)."""
    return "cache" if "cache" in inspect.signature(backbone.forward).parameters else "past_key_values"


def _expand_cache(cache, batch_size: int):
    """A private copy of a prefix cache, its batch repeated to `batch_size` (the caller's stays intact)."""
    cache = copy.deepcopy(cache)
    cached_batch = cache.layers[0].keys.shape[0] if hasattr(cache, "layers") else batch_size
    if cached_batch != batch_size:
        if cached_batch != 1:
            raise ValueError(f"a prefix cache of batch {cached_batch} cannot serve a batch of {batch_size}")
        cache.batch_repeat_interleave(batch_size)
    return cache


def _check_cache_usable(model) -> None:
    # Checkpointed decoder layers drop the cache while training with gradients, which would silently ignore
    # the prefix; prefix reuse is meant for no-grad scoring (teacher, reference).
    base = _unwrap_peft(model)
    name = (
        "is_activation_checkpointing"
        if hasattr(base, "is_activation_checkpointing")
        else "is_gradient_checkpointing"
    )
    if torch.is_grad_enabled() and model.training and getattr(base, name, False):
        raise ValueError(
            "past_key_values cannot be used with gradient checkpointing in training mode with grad"
        )
