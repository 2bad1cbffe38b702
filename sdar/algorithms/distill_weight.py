"""The distillation weight λ of a step (`algorithm.distill_weight`, docs/method.md §9): the configured
constant, or one adapted once per step so that the distillation term pushes the token log-probs with a
target fraction ρ of the policy-gradient term's push.

Both pushes are the magnitude of a term's derivative with respect to a token's log-prob at the step's start,
where π_θ = π_old: the PPO surrogate −A_t·r_t has derivative −A_t at ratio 1, so the policy-gradient term
(weighted `policy_coef`) pushes token t by policy_coef·|A_t|; the gated term (g_t − b)·(log π_T − log π_θ),
g stop-grad, b = `algorithm.gate_baseline` (0 in the paper), has derivative −(g_t − b), so it pushes by
|g_t − b| (the paper's term: g_t; GRPO+OPSD: ½), g_t from the teacher's and π_old's log-probs. Over every
response token of the step, on every process:

    λ = min(λ_max, ρ · mean_t policy_coef·|A_t| / mean_t |g_t − b|)    (`adaptive_distill_weight`)

A term's push is one derivative per token, so the ratio of the means is that of the token sums, which the
processes add before dividing (`distill_push_sums`, `step_distill_weight`). A new rule is an entry in
DISTILL_WEIGHTS; nothing outside dispatches on its name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor


@dataclass(frozen=True)
class PushSums:
    """Σ_t policy_coef·|A_t| and Σ_t |g_t − b| over the step's valid response tokens (every process's)."""

    policy: float
    distill: float


def distill_push_sums(
    settings: Any,
    advantages: Tensor,
    old_logprobs: Tensor,
    teacher_logprobs: Tensor,
    response_mask: Tensor,
) -> list[float]:
    """[Σ policy_coef·|A_t|, Σ |g_t − b|] over this process's valid tokens at the step's start (module
    docstring).

    advantages: [N] (one per row) or [N, T]; old/teacher_logprobs, response_mask: [N, T]. `settings` is the
    run's ObjectiveSettings; g is its gate of the gap Δ' = teacher − old (`gate_of_gap`), b its
    `gate_baseline` (0 in the paper's term, where the push is g itself).
    """
    mask = response_mask.bool()
    if advantages.dim() == mask.dim() - 1:
        advantages = advantages[:, None]  # [N] -> [N, 1]
    policy_push = settings.policy_coef * advantages.detach().abs().expand(mask.shape)  # [N, T]
    gate = settings.gate_of_gap(teacher_logprobs.detach() - old_logprobs.detach())  # [N, T]
    if gate is None:
        raise ValueError(
            f"the distillation term {settings.distill!r} with gate {settings.gate!r} has no gate of the gap "
            "alone to measure its push by"
        )
    return [float(policy_push[mask].sum()), float((gate - settings.gate_baseline).abs()[mask].sum())]


def adaptive_distill_weight(sums: PushSums, *, target: float, maximum: float, fallback: float) -> float:
    """λ = min(maximum, target · sums.policy / sums.distill); `fallback` when sums.policy = 0.

    No advantage is nonzero (every group all won or all lost, or the policy-gradient term is off): the
    policy-gradient term says nothing, so there is nothing to hold the distillation term's share of, and the
    step takes the configured constant λ — distillation still moves the policy, with the weight it has under
    `constant`. Not 0: that would throw away the teacher's signal exactly where it is the only one (SDAR's
    term reaches the rows of all-won and all-lost groups). Not `maximum`: the cap bounds a ratio, and a step
    without policy gradient would otherwise take a larger distillation step than any step with one.
    With sums.distill = 0 (every gate 0) the ratio is unbounded: `maximum`.
    """
    if sums.policy == 0:
        return fallback
    if sums.distill == 0:
        return maximum
    return min(maximum, target * sums.policy / sums.distill)


@dataclass(frozen=True)
class DistillWeight:
    """A registry entry: `weight(settings, sums)` -> λ of the step, `sums` the step's PushSums over every
    process (None when `reads_pushes` is False); `reads_pushes`: it needs them, so π_old and the teacher's
    log-probs of every row before the update; `is_on(settings)`: whether its λ can be nonzero."""

    weight: Callable[[Any, PushSums | None], float]
    reads_pushes: bool
    is_on: Callable[[Any], bool]


def _constant(settings: Any, sums: PushSums | None) -> float:
    return settings.distill_coef


def _adaptive(settings: Any, sums: PushSums | None) -> float:
    return adaptive_distill_weight(
        sums,
        target=settings.distill_weight_target,
        maximum=settings.distill_weight_max,
        fallback=settings.distill_coef,
    )


DISTILL_WEIGHTS: dict[str, DistillWeight] = {
    "constant": DistillWeight(_constant, reads_pushes=False, is_on=lambda s: s.distill_coef != 0),
    "adaptive": DistillWeight(
        _adaptive,
        reads_pushes=True,
        is_on=lambda s: s.distill_coef != 0 or (s.distill_weight_target != 0 and s.distill_weight_max != 0),
    ),
}


def step_distill_weight(
    settings: Any,
    advantages: Tensor,
    old_logprobs: Tensor | None,
    teacher_logprobs: Tensor | None,
    response_mask: Tensor,
    *,
    sum_over_processes: Callable[[list[float]], list[float]] = list,
) -> float:
    """λ of a step by `settings.distill_weight`, from this process's rows [N, T] at the step's start;
    `sum_over_processes` adds a list of floats over the processes (DataParallel.sum; collective: every
    process calls it when the entry reads the pushes)."""
    entry = DISTILL_WEIGHTS[settings.distill_weight]
    if not entry.reads_pushes:
        return entry.weight(settings, None)
    if old_logprobs is None or teacher_logprobs is None:
        raise ValueError(
            f"distill_weight={settings.distill_weight!r} reads π_old and the teacher's log-probs of every "
            "row before the update; the batch lacks them (score batch.old_logprobs in a pass of its own)"
        )
    local = distill_push_sums(settings, advantages, old_logprobs, teacher_logprobs, response_mask)
    return entry.weight(settings, PushSums(*sum_over_processes(local)))
