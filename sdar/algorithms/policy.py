"""PPO clipped surrogate with dual clip (docs/method.md §3: ε_low = ε_high = 0.2, c = 3 for A < 0)."""

from __future__ import annotations

import torch
from torch import Tensor

# exp() of a log-ratio beyond this overflows float32 long before it means anything; the clip makes such
# tokens constant anyway, so clamping only protects against inf·0 = NaN in the backward pass.
MAX_LOG_RATIO = 20.0
PPO_CLIP, PPO_DUAL_CLIP = 0.2, 3.0  # ε_low = ε_high and c of the paper


def ppo_clip_token_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    *,
    clip_low: float = PPO_CLIP,
    clip_high: float = PPO_CLIP,
    dual_clip: float | None = PPO_DUAL_CLIP,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Per-token PPO-clip loss [B, T] and detached per-token stats.

    r = exp(logprobs − old_logprobs); L = max(−A·r, −A·clip(r, 1 − ε_low, 1 + ε_high));
    for A < 0 (dual clip, c = `dual_clip`): L = min(L, −A·c). `advantages` is [B] (one per row) or [B, T].
    stats: "ratio" r, "clipped" (the clip branch is the active one), "dual_clipped" (the −A·c bound is).
    """
    if dual_clip is not None and dual_clip <= 1.0:
        raise ValueError(f"dual_clip must be > 1 (or None to disable), got {dual_clip}")
    if advantages.dim() == logprobs.dim() - 1:
        advantages = advantages.unsqueeze(-1)  # [B] -> [B, 1], broadcast over tokens
    advantages = advantages.detach().to(logprobs.dtype)
    log_ratio = (logprobs - old_logprobs.detach()).clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)  # [B, T]
    ratio = torch.exp(log_ratio)
    unclipped_loss = -advantages * ratio
    clipped_loss = -advantages * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    loss = torch.maximum(unclipped_loss, clipped_loss)  # [B, T]
    clipped = clipped_loss > unclipped_loss
    dual_clipped = torch.zeros_like(clipped)
    if dual_clip is not None:
        dual_bound = -advantages * dual_clip  # [B, 1] or [B, T]
        dual_clipped = (advantages < 0) & (loss > dual_bound)
        loss = torch.where(dual_clipped, dual_bound.expand_as(loss), loss)
    stats = {
        "ratio": ratio.detach(),
        "clipped": clipped.detach(),
        "dual_clipped": dual_clipped.detach(),
    }
    return loss, stats
