"""Teacher signals: the SDAR gated distillation term, its gates, Skill-SD, and RLSD advantage reshaping.

Notation (docs/method.md §2): the teacher is the same network at the step's start weights, scoring the
student's own tokens under the skill-augmented prompt; per token
    Δ_t = teacher_logprobs − logprobs        (the teacher–student gap on the sampled token).
teacher_logprobs never carry gradient; every function here detaches them.

Three registries, each entry carrying all that the objective, the update and the sample log need: GATES
(`algorithm.gate`), DISTILL_TERMS (a method's `distill`) and ADVANTAGE_SHAPINGS (a method's
`advantage_shaping`). A new one is an entry here; nothing outside dispatches on its name.

Several teachers (`teacher.contexts`, docs/method.md §9): the same network under K privileged contexts
scores the student's tokens, [K, B, T]; a term that can learn from them says how it picks one per token
(`DistillTerm.route_teachers`), and the rest of the step sees that routed teacher's log-probs [B, T].
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from sdar.algorithms.kl import normalised_entropy

SDAR_BETA = 5.0  # gate sharpness β of the paper (docs/method.md §6)

# ----------------------------------------------------------------------------------------------- gates
# A gate maps the detached gap Δ [B, T] (and, when it needs it, the student's entropy normalised to [0, 1])
# to a weight in [0, 1]. The ablation gates are our own documented definitions (docs/method.md §3: not in the
# release).


def gap_gate(gap: Tensor, *, beta: float, entropy: Tensor | None = None) -> Tensor:
    """g = σ(β·Δ) (SDAR default): → 1 where the teacher endorses the token, → 0 where it rejects it."""
    return torch.sigmoid(beta * gap)


GATE_OFF_HALF = 0.05  # a gate further than this from ½ weighs the term unlike GRPO+OPSD's constant ½


def gate_off_half(gate: Tensor) -> Tensor:
    """Where a gate is more than GATE_OFF_HALF from ½ (bool, like `gate`): the tokens on which SDAR's
    distillation term differs from GRPO+OPSD's (β = 0, g ≡ ½)."""
    return (gate - 0.5).abs() > GATE_OFF_HALF


GATE_BINS = 10  # the gate's histogram: bin i holds [i/10, (i+1)/10), the last one also 1


def gate_bin(gate: Tensor) -> Tensor:
    """The histogram bin of each gate value (long, like `gate`): i for i/10 ≤ g < (i+1)/10, 9 for g = 1.

    The edges are i/10 in the gate's own dtype, so a gate of exactly 0.3 falls in bin 3 (0.3 · 10 in floats
    may round below 3)."""
    edges = torch.arange(1, GATE_BINS, dtype=gate.dtype, device=gate.device) / GATE_BINS  # [9]
    return torch.bucketize(gate, edges, right=True)


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


@dataclass(frozen=True)
class Gate:
    """A registry entry: `weight(gap, beta=, entropy=)` -> g ∈ [0, 1] [B, T]; `reads_entropy`: it needs the
    student's normalised entropy, so the update computes it and the gate is known only inside the update
    (samples.jsonl logs the gates that read the gap alone)."""

    weight: Callable[..., Tensor]
    reads_entropy: bool

    def __call__(self, gap: Tensor, *, beta: float, entropy: Tensor | None = None) -> Tensor:
        return self.weight(gap, beta=beta, entropy=entropy)


GATES: dict[str, Gate] = {
    "gap": Gate(gap_gate, reads_entropy=False),
    "entropy": Gate(entropy_gate, reads_entropy=True),
    "soft_or": Gate(soft_or_gate, reads_entropy=True),
}

# ------------------------------------------------------------------------------------------ SDAR term


def sdar_token_loss(
    logprobs: Tensor,
    teacher_logprobs: Tensor,
    *,
    beta: float = SDAR_BETA,
    gate: str = "gap",
    entropy: Tensor | None = None,
    baseline: float = 0.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Gated distillation per token [B, T]: ℓ = (g − b) · (teacher_logprobs − logprobs), g = stopgrad(gate(β,
    Δ)), b = `baseline`.

    ∂ℓ/∂logprobs = −(g − b). With b = 0 (the paper) the term always raises the sampled token's probability,
    by the gate's amount. With b = ½ it raises the tokens the teacher endorses (g > ½), lowers those it
    rejects (g < ½) and leaves those where teacher and student agree (g = ½); since E_y[∇ log π(y)] = 0, b
    changes the gradient's variance, not its expectation over the sampled tokens.
    `entropy` (needed by the "entropy" and "soft_or" gates) is the student's per-token entropy ALREADY
    normalised to [0, 1] by log|V| (see `normalised_entropy`). β = 0 gives g ≡ 0.5 (GRPO+OPSD).
    stats (detached, per token): "gate" g (without b), "gap" Δ.
    """
    if gate not in GATES:
        raise ValueError(f"unknown gate {gate!r}; choose one of: {', '.join(GATES)}")
    teacher_logprobs = teacher_logprobs.detach()
    gap = teacher_logprobs - logprobs.detach()  # [B, T] Δ with the CURRENT student, detached
    weight = GATES[gate](gap, beta=beta, entropy=entropy).detach()  # [B, T]
    loss = (weight - baseline) * (teacher_logprobs - logprobs)
    return loss, {"gate": weight, "gap": gap}


def route_by_largest_gap(teacher_logprobs: Tensor) -> tuple[Tensor, Tensor]:
    """Per token, the teacher of largest gap: k*(t) = argmax_k Δ_k,t over K teachers' log-probs [K, B, T].

    Δ_k = log π_Tk − log π_θ shares its student term across k, so k* = argmax_k log π_Tk, whatever the
    student; every gate that reads the gap is monotone in it, so k* is also the teacher whose gate is
    largest. Returns (log π_Tk* [B, T], k* [B, T] long), detached; a tie goes to the first teacher."""
    routed, choice = teacher_logprobs.detach().max(dim=0)
    return routed, choice


def teacher_routing_totals(
    teacher_logprobs: Tensor, choice: Tensor, old_logprobs: Tensor, response_mask: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Per teacher, over the valid tokens: (tokens routed to it [K], Σ of its gap Δ'_k = log π_Tk − log π_old
    [K], valid tokens []); sums, so that processes add them before dividing (share, gap mean).

    teacher_logprobs: [K, B, T]; choice (each token's teacher, `route_teachers`), old_logprobs,
    response_mask: [B, T]."""
    mask = response_mask.bool()
    teachers = torch.arange(teacher_logprobs.shape[0], device=choice.device)[:, None, None]  # [K, 1, 1]
    routed = ((choice[None] == teachers) & mask).sum(dim=(1, 2))  # [K]
    gap = teacher_logprobs.detach() - old_logprobs.detach()[None]  # [K, B, T]
    gap_sum = torch.where(mask[None], gap, torch.zeros_like(gap)).sum(dim=(1, 2))  # [K]
    return routed, gap_sum, mask.sum()


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
RLSD_LAMBDA_START, RLSD_DECAY_STEPS = 0.5, 100  # λ decays from 0.5 to 0 over 100 updates (release)


def rlsd_lambda(step: int, start: float = RLSD_LAMBDA_START, decay_steps: int = RLSD_DECAY_STEPS) -> float:
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


# ------------------------------------------------------------------------------------------ registries
# What the objective calls for a method's `distill` and `advantage_shaping` names. `settings` is the run's
# sdar.algorithms.objective.ObjectiveSettings: an entry reads its own knobs there (β and the gate, RLSD's λ).


@dataclass(frozen=True)
class DistillTerm:
    """A registry entry: `token_loss(logprobs, old_logprobs, teacher_logprobs, *, entropy, vocab_size,
    settings)` -> (per-token loss [B, T], detached per-token stats); a "gate" stat is logged as
    distill/gate_*. `gated`: the term weighs tokens by `algorithm.gate` (samples.jsonl shows that gate).
    `route_teachers(teacher_logprobs [K, B, T])` -> (the log-probs [B, T] the term reads, each token's
    teacher [B, T]): how it learns from several teachers (`teacher.contexts`); None: from one only."""

    token_loss: Callable[..., tuple[Tensor, dict[str, Tensor]]]
    gated: bool = False
    route_teachers: Callable[[Tensor], tuple[Tensor, Tensor]] | None = None


def _sdar_term(logprobs, old_logprobs, teacher_logprobs, *, entropy, vocab_size, settings: Any):
    gate = GATES[settings.gate]
    gate_entropy = None  # the gates that read it take the entropy normalised by log|V|
    if gate.reads_entropy and entropy is not None and vocab_size is not None:
        gate_entropy = normalised_entropy(entropy.detach(), vocab_size)
    return sdar_token_loss(
        logprobs,
        teacher_logprobs,
        beta=settings.beta,
        gate=settings.gate,
        entropy=gate_entropy,
        baseline=settings.gate_baseline,
    )


def _skill_sd_term(logprobs, old_logprobs, teacher_logprobs, *, entropy, vocab_size, settings: Any):
    return skill_sd_token_loss(logprobs, old_logprobs, teacher_logprobs)


DISTILL_TERMS: dict[str, DistillTerm] = {
    # Routed, the term is g_k*·(log π_Tk* − log π_θ); with the gap gate its gradient −σ(β·max_k Δ_k) follows
    # the teacher that endorses the token most.
    "sdar": DistillTerm(_sdar_term, gated=True, route_teachers=route_by_largest_gap),
    "skill_sd": DistillTerm(_skill_sd_term),
}


@dataclass(frozen=True)
class AdvantageShaping:
    """A registry entry: `token_advantages(advantages, teacher_logprobs, old_logprobs, *, step, settings)` ->
    (token advantages [B, T], {stat name: value}) for the policy-gradient term; step is the 0-based one."""

    token_advantages: Callable[..., tuple[Tensor, dict[str, float]]]


def _rlsd_shaping(advantages, teacher_logprobs, old_logprobs, *, step: int, settings: Any):
    lam = rlsd_lambda(step, settings.rlsd_lambda_start, settings.rlsd_decay_steps)
    shaped = rlsd_token_advantages(advantages, teacher_logprobs, old_logprobs, lam=lam)
    return shaped, {"rlsd/lambda": lam}


ADVANTAGE_SHAPINGS: dict[str, AdvantageShaping] = {"rlsd": AdvantageShaping(_rlsd_shaping)}


# ------------------------------------------------------------------------------------------ diagnostics


def gap_by_turn(
    gap: Tensor, response_mask: Tensor, turn_index: Tensor, num_turns: int
) -> tuple[Tensor, Tensor]:
    """Mean gap per turn index (docs/method.md §3 "gap by turn index"): ([K] means, [K] token counts),
    K = num_turns.

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
