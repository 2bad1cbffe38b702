"""KL-to-reference estimators (per token, on sampled tokens) and the entropy bonus.

With x = ref_logprobs − logprobs (log of π_ref/π_θ on the sampled token), the estimators of KL(π_θ ‖ π_ref)
are (Schulman, "Approximating KL divergence"):
- k1 = logprobs − ref_logprobs                       (unbiased, can be negative)
- k2 = ½ (logprobs − ref_logprobs)²
- k3 = exp(x) − x − 1, clamped to [−10, 10]          (release default, docs/method.md §3; always ≥ 0)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

K3_BOUND = 10.0
# x beyond ±20 already puts k3 past its ±10 clamp; clamping x first keeps exp() finite so the backward pass
# sees 0·finite instead of 0·inf = NaN. Values and gradients are unchanged.
K3_MAX_LOG_RATIO = 20.0


def k1_token_penalty(logprobs: Tensor, ref_logprobs: Tensor) -> Tensor:
    """k1 = logprobs − ref_logprobs, [B, T]."""
    return logprobs - ref_logprobs.detach()


def k2_token_penalty(logprobs: Tensor, ref_logprobs: Tensor) -> Tensor:
    """k2 = ½ (logprobs − ref_logprobs)², [B, T]."""
    return 0.5 * (logprobs - ref_logprobs.detach()) ** 2


def k3_token_penalty(logprobs: Tensor, ref_logprobs: Tensor) -> Tensor:
    """k3 = clamp(exp(x) − x − 1, −10, 10) with x = ref_logprobs − logprobs, [B, T]."""
    log_ratio = (ref_logprobs.detach() - logprobs).clamp(-K3_MAX_LOG_RATIO, K3_MAX_LOG_RATIO)
    return (torch.exp(log_ratio) - log_ratio - 1.0).clamp(-K3_BOUND, K3_BOUND)


KL_ESTIMATORS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "k1": k1_token_penalty,
    "k2": k2_token_penalty,
    "k3": k3_token_penalty,
}


def kl_token_penalty(logprobs: Tensor, ref_logprobs: Tensor, kind: str = "k3") -> Tensor:
    """Per-token KL penalty [B, T] by estimator `kind` ("k1", "k2", "k3"); gradient only through logprobs."""
    if kind not in KL_ESTIMATORS:
        raise ValueError(f"unknown KL estimator {kind!r}; choose one of: {', '.join(KL_ESTIMATORS)}")
    return KL_ESTIMATORS[kind](logprobs, ref_logprobs)


def entropy_token_loss(entropy: Tensor) -> Tensor:
    """Entropy bonus as a per-token loss to MINIMISE: −H_t, [B, T] (gradient passes through H).

    The objective adds entropy_coef · aggregate(−H), i.e. the spec's "− 0.001 · token_mean(entropy)".
    """
    return -entropy


def entropy_from_logits(logits: Tensor) -> Tensor:
    """Per-position entropy of softmax(logits): H = logsumexp(z) − Σ softmax(z)·z, [B, T, V] -> [B, T]."""
    log_normaliser = torch.logsumexp(logits, dim=-1)  # [B, T]
    probabilities = torch.softmax(logits, dim=-1)  # [B, T, V]
    return log_normaliser - (probabilities * logits).sum(dim=-1)


def normalised_entropy(entropy: Tensor, vocab_size: int) -> Tensor:
    """Entropy in [0, 1]: h = H / log|V| (H in nats), the input of the entropy and soft-OR gates."""
    if vocab_size < 2:
        raise ValueError(f"vocab_size must be ≥ 2 to normalise entropy, got {vocab_size}")
    return entropy / math.log(vocab_size)
