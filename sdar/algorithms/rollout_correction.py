"""The sampler–trainer mismatch: its diagnostics and the corrections of the policy-gradient term for it.

A step's tokens are drawn by the generation backend (π_sampler: HF `generate`, or a separate engine such as
vLLM), while the PPO ratio is taken against π_old, the trainer's own forward pass at the step's start
weights. Both stand for the same policy, but different kernels and precisions (a bf16 sampler, an fp32
trainer) make them differ a little on every token. Per sampled token, with

    r = π_old / π_sampler = exp(old_logprobs − sampling_logprobs)

- |log π_old − log π_sampler| is the log-prob gap (0 where both agree);
- k3 = (r − 1) − log r ≥ 0 is an unbiased estimate of KL(π_sampler ‖ π_old), since the tokens are drawn from
  π_sampler (E[r − 1] = 0, E[−log r] = the KL; Schulman, "Approximating KL divergence");
- truncated importance sampling (TIS) multiplies each token's policy-gradient term by w = min(r, C), without
  gradient through w: the PPO term then estimates the gradient under π_old from tokens drawn from π_sampler,
  with the variance bounded by the cap C.

`ROLLOUT_CORRECTIONS` is the registry of corrections (`algorithm.rollout_correction`); docs/
rollout-correction.md says when to turn one on.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


def sampler_mismatch_token_stats(old_logprobs: Tensor, sampling_logprobs: Tensor) -> tuple[Tensor, Tensor]:
    """(|log π_old − log π_sampler|, k3 = (r − 1) − log r) per token, [B, T] each, in float64, detached.

    r = exp(old_logprobs − sampling_logprobs); float64 keeps r finite for any gap a float32 log-prob can hold.
    """
    log_ratio = old_logprobs.detach().double() - sampling_logprobs.detach().double()  # [B, T] log r
    return log_ratio.abs(), torch.expm1(log_ratio) - log_ratio


def sampler_mismatch_totals(
    old_logprobs: Tensor, sampling_logprobs: Tensor, mask: Tensor
) -> dict[str, float]:
    """Totals over the valid tokens of `mask` [B, T], summable over processes (the max: max-able):
    {"tokens": n, "abs_diff_sum": Σ|Δ|, "abs_diff_max": max|Δ| (0 without tokens), "k3_sum": Σ k3},
    with Δ = log π_old − log π_sampler and k3 as in `sampler_mismatch_token_stats`."""
    mask = mask.bool()
    abs_diff, k3 = sampler_mismatch_token_stats(old_logprobs, sampling_logprobs)
    zeros = torch.zeros_like(abs_diff)
    return {
        "tokens": float(mask.sum()),
        "abs_diff_sum": float(torch.where(mask, abs_diff, zeros).sum()),
        "abs_diff_max": float(torch.where(mask, abs_diff, zeros).max()) if mask.any() else 0.0,
        "k3_sum": float(torch.where(mask, k3, zeros).sum()),
    }


def sampler_mismatch_metrics(totals: dict[str, float]) -> dict[str, float]:
    """`rollout/*` of metrics.jsonl from `sampler_mismatch_totals` (summed over processes): token means of
    |Δ| and k3, and the max of |Δ|; {} without a valid token."""
    tokens = totals["tokens"]
    if not tokens:
        return {}
    return {
        "rollout/logprob_abs_diff_mean": totals["abs_diff_sum"] / tokens,
        "rollout/logprob_abs_diff_max": totals["abs_diff_max"],
        "rollout/k3": totals["k3_sum"] / tokens,
    }


def truncated_importance_weights(
    old_logprobs: Tensor, sampling_logprobs: Tensor, *, cap: float
) -> tuple[Tensor, dict[str, Tensor]]:
    """TIS weights w = min(exp(old_logprobs − sampling_logprobs), C) per token [B, T], detached.

    Computed as exp(min(log r, log C)), so a huge gap cannot overflow. stats (detached, per token):
    "weight" w, "truncated" (bool: r > C, the cap is the weight).
    """
    if cap < 1.0:
        raise ValueError(f"the TIS cap must be ≥ 1 (weights of agreeing tokens are 1), got {cap}")
    log_ratio = (old_logprobs - sampling_logprobs).detach()  # [B, T] log r
    weights = torch.exp(log_ratio.clamp(max=math.log(cap)))
    return weights, {"weight": weights, "truncated": log_ratio > math.log(cap)}


@dataclass(frozen=True)
class RolloutCorrection:
    """One `algorithm.rollout_correction`: what it does, and its per-token weights of the policy-gradient
    term, (old_logprobs, sampling_logprobs, cap=C) -> (weights [B, T], per-token stats); None = no weights."""

    description: str
    token_weights: Callable[..., tuple[Tensor, dict[str, Tensor]]] | None = None

    @property
    def needs_sampling_logprobs(self) -> bool:
        return self.token_weights is not None


ROLLOUT_CORRECTIONS: dict[str, RolloutCorrection] = {
    "none": RolloutCorrection("the PPO ratio against π_old alone; the sampler's log-probs are only logged"),
    "tis": RolloutCorrection(
        "truncated importance sampling: each token's PPO term times min(π_old / π_sampler, C)",
        truncated_importance_weights,
    ),
}
