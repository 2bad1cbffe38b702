"""Teacher signals: the SDAR gated distillation term, its gates, Skill-SD, and RLSD advantage reshaping.

Notation (spec/method.md §2): the teacher is the same network at the step's start weights, scoring the
student's own tokens under the skill-augmented prompt; per token
    Δ_t = teacher_logprobs − logprobs        (the teacher–student gap on the sampled token).
teacher_logprobs never carry gradient; every function here detaches them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

# ----------------------------------------------------------------------------------------------- gates
# A gate maps the detached gap Δ [B, T] (and, when it needs it, the student's entropy normalised to [0, 1])
# to a weight in [0, 1]. The ablation gates are our own documented definitions (spec §3: not in the release).


def gap_gate(gap: Tensor, *, beta: float, entropy: Tensor | None = None) -> Tensor:
    """g = σ(β·Δ) (SDAR default): → 1 where the teacher endorses the token, → 0 where it rejects it."""
    return torch.sigmoid(beta * gap)


GATE_OFF_HALF = 0.05  # a gate further than this from ½ weighs the term unlike GRPO+OPSD's constant ½


def gate_off_half(gate: Tensor) -> Tensor:
    """Where a gate is more than GATE_OFF_HALF from ½ (bool, like `gate`): the tokens on which SDAR's
    distillation term differs from GRPO+OPSD's (β = 0, g ≡ ½)."""
    return (gate - 0.5).abs() > GATE_OFF_HALF


def entropy_gate(gap: Tensor, *, beta: float, entropy: Tensor | None = None) -> Tensor:
    """g = σ(β·h), h = student entropy / log|V| ∈ [0, 1]: distil more where the student is unsure."""
    return torch.sigmoid(beta * _require_entropy(entropy, "entropy"))


def soft_or_gate(gap: Tensor, *, beta: float, entropy: Tensor | None = None) -> Tensor:
    """g = 1 − (1 − σ(β·h))·(1 − σ(β·Δ)): open when the student is unsure OR the teacher endorses."""
    entropy_open = torch.sigmoid(beta * _require_entropy(entropy, "soft_or"))
    return 1.0 - (1.0 - entropy_open) * (1.0 - torch.sigmoid(beta * gap))


def _require_entropy(entropy: Tensor | None, gate: str) -> Tensor:
    if entropy is None:
        raise ValueError(
            f"gate {gate!r} needs the student's per-token entropy normalised to [0, 1] "
            "(sdar.algorithms.normalised_entropy(entropy, vocab_size)); got entropy=None"
        )
    return entropy.detach()


Gate = Callable[..., Tensor]

GATES: dict[str, Gate] = {
    "gap": gap_gate,
    "entropy": entropy_gate,
    "soft_or": soft_or_gate,
}

# ------------------------------------------------------------------------------------------ SDAR term


def sdar_token_loss(
    logprobs: Tensor,
    teacher_logprobs: Tensor,
    *,
    beta: float = 5.0,
    gate: str = "gap",
    entropy: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Gated distillation per token [B, T]: ℓ = g · (teacher_logprobs − logprobs), g = stopgrad(gate(β, Δ)).

    ∂ℓ/∂logprobs = −g: the term always raises the sampled token's probability, by the gate's amount.
    `entropy` (needed by the "entropy" and "soft_or" gates) is the student's per-token entropy ALREADY
    normalised to [0, 1] by log|V| (see `normalised_entropy`). β = 0 gives g ≡ 0.5 (GRPO+OPSD).
    stats (detached, per token): "gate" g, "gap" Δ.
    """
    if gate not in GATES:
        raise ValueError(f"unknown gate {gate!r}; choose one of: {', '.join(GATES)}")
    teacher_logprobs = teacher_logprobs.detach()
    gap = teacher_logprobs - logprobs.detach()  # [B, T] Δ with the CURRENT student, detached
    weight = GATES[gate](gap, beta=beta, entropy=entropy).detach()  # [B, T]
    loss = weight * (teacher_logprobs - logprobs)
    return loss, {"gate": weight, "gap": gap}


# -------------------------------------------------------------------------------------- Skill-SD term

SKILL_SD_MAX_NEGATIVE_LOG_RATIO = 20.0  # −ℓ clamped ≤ 20 (release)
SKILL_SD_MAX_LOG_IMPORTANCE = 10.0  # ρ = exp(min(logprobs − old_logprobs, 10)) (release)


def skill_sd_token_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    teacher_logprobs: Tensor,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Skill-SD per token [B, T]: ρ·k3 with ℓ = logprobs − teacher_logprobs, k3 = exp(−ℓ) − 1 + ℓ.

    −ℓ is clamped ≤ 20 (as one variable, in both places, so k3 ≥ 0 and saturated tokens carry no gradient);
    ρ = exp(min(logprobs − old_logprobs, 10)). Gradient flows through both ρ and k3.
    stats (detached, per token): "gap" Δ = −ℓ (unclamped), "importance_ratio" ρ, "k3".
    """
    teacher_logprobs = teacher_logprobs.detach()
    negative_log_ratio = (teacher_logprobs - logprobs).clamp(max=SKILL_SD_MAX_NEGATIVE_LOG_RATIO)  # −ℓ
    k3 = torch.exp(negative_log_ratio) - 1.0 - negative_log_ratio  # [B, T]
    log_importance = (logprobs - old_logprobs.detach()).clamp(max=SKILL_SD_MAX_LOG_IMPORTANCE)
    importance_ratio = torch.exp(log_importance)  # [B, T], with gradient
    stats = {
        "gap": (teacher_logprobs - logprobs).detach(),
        "importance_ratio": importance_ratio.detach(),
        "k3": k3.detach(),
    }
    return importance_ratio * k3, stats


# ------------------------------------------------------------------------------------------------- RLSD

RLSD_WEIGHT_LOW, RLSD_WEIGHT_HIGH = 0.8, 1.2


def rlsd_lambda(step: int, start: float = 0.5, decay_steps: int = 100) -> float:
    """λ = start · max(0, 1 − (step + 1) / decay_steps) for the 0-based training `step`.

    The release counts its updates from 1 and takes λ = start · (1 − n / decay_steps) at update n: the first
    update (step 0 here) has 0.495 for the defaults, and λ reaches 0 at the release's update 100 (step 99
    here, logged as step 100) and stays 0.
    """
    if decay_steps <= 0:
        raise ValueError(f"decay_steps must be positive, got {decay_steps}")
    if step < 0:
        raise ValueError(f"step is the 0-based training step and cannot be negative, got {step}")
    return start * max(0.0, 1.0 - (step + 1) / decay_steps)


def rlsd_token_advantages(
    advantages: Tensor,
    teacher_logprobs: Tensor,
    old_logprobs: Tensor,
    *,
    lam: float,
) -> Tensor:
    """RLSD token advantages [B, T]: Â_t = A · [(1 − λ) + λ · clip(exp(sign(A)·Δ'_t), 0.8, 1.2)].

    Δ'_t = teacher_logprobs − old_logprobs (both without gradient); `advantages` is [B] or [B, T].
    λ = 0 returns A broadcast to [B, T] exactly (no arithmetic on it).
    """
    if advantages.dim() == teacher_logprobs.dim() - 1:
        advantages = advantages.unsqueeze(-1)  # [B] -> [B, 1]
    advantages = advantages.detach()
    if lam == 0:
        return advantages.expand(teacher_logprobs.shape).clone()
    gap = (teacher_logprobs - old_logprobs).detach()  # [B, T] Δ'
    weight = torch.exp(torch.sign(advantages) * gap).clamp(RLSD_WEIGHT_LOW, RLSD_WEIGHT_HIGH)
    return advantages * ((1.0 - lam) + lam * weight)


# ------------------------------------------------------------------------------------------ diagnostics


def gap_by_turn(
    gap: Tensor, response_mask: Tensor, turn_index: Tensor, num_turns: int
) -> tuple[Tensor, Tensor]:
    """Mean gap per turn index (spec §3 "gap by turn index"): ([K] means, [K] token counts), K = num_turns.

    gap, response_mask: [B, T]; turn_index: [B] (0-based turn of each row); turns ≥ K pool into the last
    bucket. Turns without tokens give mean 0.
    """
    gap = gap.detach()
    tokens_per_row = response_mask.sum(dim=-1).to(gap.dtype)  # [B]
    gap_sum_per_row = torch.where(response_mask, gap, torch.zeros_like(gap)).sum(dim=-1)  # [B]
    turn_index = turn_index.long().clamp(0, num_turns - 1)
    totals = gap.new_zeros(num_turns).index_add(0, turn_index, gap_sum_per_row)  # [K]
    counts = gap.new_zeros(num_turns).index_add(0, turn_index, tokens_per_row)  # [K]
    return totals / counts.clamp(min=1), counts
