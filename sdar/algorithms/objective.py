"""One micro-batch objective composed from the terms (spec/method.md §3, §5 step 8):

    L = policy_coef·PPO(A, or RLSD-reshaped Â)·w − entropy_coef·H + kl_coef·KL + distill_coef·L_distill

each term aggregated by `aggregate` (the one reduction); w is the per-token weight of the rollout correction
(sdar.algorithms.rollout_correction; 1 when it is "none"). A term whose coefficient is 0 is skipped, and so is
the KL or entropy term when its input is None; a teacher term that is ON but lacks teacher_logprobs raises,
since silently dropping it would turn SDAR into GRPO.

Stats are detached scalar tensors (no .item()) describing THIS micro-batch alone: "loss/*" are the terms
aggregated with the micro-batch's own normalisers ("loss/entropy" is the aggregated entropy H itself, which
enters L with a minus sign), the rest are token means over its valid tokens. Average them over micro-batches
(weighted by "objective/valid_tokens" if micro-batches differ in size) for a step's log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from sdar.algorithms.advantages import compute_advantages
from sdar.algorithms.aggregation import (
    AGGREGATIONS,
    Normaliser,
    aggregate,
    masked_token_mean,
    masked_token_std,
)
from sdar.algorithms.distill import (
    GATES,
    gate_off_half,
    rlsd_lambda,
    rlsd_token_advantages,
    sdar_token_loss,
    skill_sd_token_loss,
)
from sdar.algorithms.kl import KL_ESTIMATORS, entropy_token_loss, kl_token_penalty, normalised_entropy
from sdar.algorithms.methods import ADVANTAGE_SHAPINGS, DISTILL_TERMS, get_method
from sdar.algorithms.policy import ppo_clip_token_loss
from sdar.algorithms.rollout_correction import ROLLOUT_CORRECTIONS


@dataclass(frozen=True)
class ObjectiveSettings:
    """The resolved numbers of one run's objective (no `None`-means-default left)."""

    policy_coef: float = 1.0
    kl_coef: float = 0.01
    kl_estimator: str = "k3"
    entropy_coef: float = 0.001
    distill: str | None = None  # None | "sdar" | "skill_sd"
    distill_coef: float = 0.0
    beta: float = 5.0
    gate: str = "gap"
    clip_low: float = 0.2
    clip_high: float = 0.2
    dual_clip: float | None = 3.0  # None disables the dual clip
    aggregation: str = "token-mean"
    aggregation_constant: float | None = None  # the "constant" mode's normaliser (Dr. GRPO)
    advantage_shaping: str | None = None  # None | "rlsd"
    rlsd_lambda_start: float = 0.5
    rlsd_decay_steps: int = 100
    rollout_correction: str = "none"  # a ROLLOUT_CORRECTIONS name
    rollout_correction_cap: float = 2.0  # C of "tis"

    def __post_init__(self) -> None:
        checks = {
            "kl_estimator": (self.kl_estimator, tuple(KL_ESTIMATORS)),
            "distill": (self.distill, DISTILL_TERMS),
            "gate": (self.gate, tuple(GATES)),
            "aggregation": (self.aggregation, AGGREGATIONS),
            "advantage_shaping": (self.advantage_shaping, ADVANTAGE_SHAPINGS),
            "rollout_correction": (self.rollout_correction, tuple(ROLLOUT_CORRECTIONS)),
        }
        for name, (value, choices) in checks.items():
            if value not in choices:
                raise ValueError(f"objective setting {name}={value!r}; choose one of: {choices}")
        if self.aggregation == "constant" and not (
            self.aggregation_constant and self.aggregation_constant > 0
        ):
            raise ValueError("aggregation 'constant' needs a positive aggregation_constant")
        if self.dual_clip is not None and self.dual_clip <= 1.0:
            raise ValueError(f"dual_clip={self.dual_clip} must be > 1 (or None to disable the dual clip)")
        if self.rollout_correction_cap < 1.0:
            raise ValueError(f"rollout_correction_cap={self.rollout_correction_cap} must be ≥ 1")

    @property
    def needs_teacher(self) -> bool:
        """True when a term that is ON reads teacher_logprobs."""
        distilling = self.distill is not None and self.distill_coef != 0
        shaping = self.advantage_shaping is not None and self.policy_coef != 0
        return distilling or shaping


def settings_for_method(name: str, **overrides: Any) -> ObjectiveSettings:
    """ObjectiveSettings with method `name`'s defaults (sdar.algorithms.methods), then `overrides`."""
    method = get_method(name)
    defaults = {
        field: getattr(method, field)
        for field in ("policy_coef", "kl_coef", "entropy_coef", "distill", "distill_coef", "beta")
    }
    defaults["advantage_shaping"] = method.advantage_shaping
    return ObjectiveSettings(**{**defaults, **overrides})


def settings_from_config(algorithm_config: Any) -> ObjectiveSettings:
    """ObjectiveSettings from a sdar.config.AlgorithmConfig; a `None` coefficient = the method's default."""
    method = get_method(algorithm_config.method)

    def pick(name: str) -> float:
        value = getattr(algorithm_config, name)
        return getattr(method, name) if value is None else value

    return ObjectiveSettings(
        policy_coef=pick("policy_coef"),
        kl_coef=pick("kl_coef"),
        kl_estimator=algorithm_config.kl_estimator,
        entropy_coef=pick("entropy_coef"),
        distill=method.distill,
        distill_coef=pick("distill_coef"),
        beta=pick("beta"),
        gate=algorithm_config.gate,
        clip_low=algorithm_config.clip_low,
        clip_high=algorithm_config.clip_high,
        dual_clip=algorithm_config.dual_clip,
        aggregation=algorithm_config.loss_aggregation,
        aggregation_constant=algorithm_config.loss_constant,
        advantage_shaping=method.advantage_shaping,
        rlsd_lambda_start=algorithm_config.rlsd_lambda_start,
        rlsd_decay_steps=algorithm_config.rlsd_decay_steps,
        rollout_correction=algorithm_config.rollout_correction,
        rollout_correction_cap=algorithm_config.rollout_correction_cap,
    )


def advantages_from_config(
    algorithm_config: Any, returns: Tensor, group_index: Tensor, episode_index: Tensor | None = None
) -> Tensor:
    """Row advantages [N] by the config's `advantage`, `advantage_stats` and `norm_by_std`."""
    return compute_advantages(
        algorithm_config.advantage,
        returns,
        group_index,
        mode=algorithm_config.advantage_stats,
        episode_index=episode_index,
        norm_by_std=algorithm_config.norm_by_std,
    )


def rows_with_gradient(settings: ObjectiveSettings, advantages: Tensor) -> Tensor:
    """Which rows [N] (bool) the objective can have a gradient on. With the policy-gradient term as the only
    term on, a row whose advantage is 0 has none: that term, RLSD-shaped or not, is each token's advantage
    times a finite factor (GRPO's rows of all-won or all-lost groups). Any other term (KL, entropy,
    distillation) reaches every row."""
    other_terms = (
        settings.kl_coef != 0
        or settings.entropy_coef != 0
        or (settings.distill is not None and settings.distill_coef != 0)
    )
    if other_terms:
        return torch.ones_like(advantages, dtype=torch.bool)
    if settings.policy_coef == 0:
        return torch.zeros_like(advantages, dtype=torch.bool)
    return advantages.ne(0)


def has_gradient(settings: ObjectiveSettings, advantages: Tensor) -> bool:
    """Whether the objective can have a gradient on rows with these advantages (`rows_with_gradient`): none
    when the policy-gradient term is the only term on and every advantage is 0."""
    return bool(rows_with_gradient(settings, advantages).any())


def policy_objective(
    logprobs: Tensor,
    old_logprobs: Tensor,
    ref_logprobs: Tensor | None,
    teacher_logprobs: Tensor | None,
    entropy: Tensor | None,
    advantages: Tensor,
    response_mask: Tensor,
    *,
    settings: ObjectiveSettings,
    num_tokens: Normaliser | None = None,
    num_rows: Normaliser | None = None,
    step: int = 0,
    vocab_size: int | None = None,
    sampling_logprobs: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Micro-batch loss (scalar, to backward) and detached scalar stats; see the module docstring.

    logprobs, old/ref/teacher_logprobs, entropy (nats), response_mask: [B, T]; advantages: [B] or [B, T].
    num_tokens / num_rows: the mini-batch normalisers (count_tokens_and_rows) for exact gradient
    accumulation; None = this micro-batch's own. step: the 0-based training step (`rlsd_lambda`).
    vocab_size: needed only by gates that read the entropy (normalised by log|V|).
    sampling_logprobs [B, T]: the generator's log-probs of the tokens, read by a rollout correction.
    """
    mask = response_mask.bool()
    if logprobs.shape != mask.shape:
        raise ValueError(f"logprobs {tuple(logprobs.shape)} and response_mask {tuple(mask.shape)} must match")
    if settings.needs_teacher and teacher_logprobs is None:
        raise ValueError(
            f"this objective (distill={settings.distill!r}, "
            f"advantage_shaping={settings.advantage_shaping!r}) needs teacher_logprobs; got None"
        )
    correction = ROLLOUT_CORRECTIONS[settings.rollout_correction]
    if settings.policy_coef != 0 and correction.needs_sampling_logprobs and sampling_logprobs is None:
        raise ValueError(
            f"rollout_correction={settings.rollout_correction!r} weighs each token by π_old / π_sampler and "
            "needs sampling_logprobs (the generator's log-probs of the sampled tokens); the batch has none: "
            "use a generation backend that returns them, or algorithm.rollout_correction=none"
        )

    def reduce(per_token: Tensor) -> Tensor:
        return aggregate(
            per_token,
            mask,
            settings.aggregation,
            num_tokens=num_tokens,
            num_rows=num_rows,
            constant=settings.aggregation_constant,
        )

    def reduce_locally(per_token: Tensor) -> Tensor:
        return aggregate(
            per_token.detach(), mask, settings.aggregation, constant=settings.aggregation_constant
        )

    loss = logprobs.new_zeros(())
    stats: dict[str, Tensor] = {"objective/valid_tokens": mask.sum().detach()}

    if settings.policy_coef != 0:
        token_advantages = advantages
        if settings.advantage_shaping == "rlsd":
            lam = rlsd_lambda(step, settings.rlsd_lambda_start, settings.rlsd_decay_steps)
            token_advantages = rlsd_token_advantages(advantages, teacher_logprobs, old_logprobs, lam=lam)
            stats["rlsd/lambda"] = logprobs.new_tensor(lam)
        policy_per_token, policy_stats = ppo_clip_token_loss(
            logprobs,
            old_logprobs,
            token_advantages,
            clip_low=settings.clip_low,
            clip_high=settings.clip_high,
            dual_clip=settings.dual_clip,
        )
        if correction.token_weights is not None:
            weights, correction_stats = correction.token_weights(
                old_logprobs, sampling_logprobs, cap=settings.rollout_correction_cap
            )
            policy_per_token = policy_per_token * weights  # [B, T]; the weights carry no gradient
            for key, value in correction_stats.items():  # "policy/tis_weight_mean", "..._truncated_fraction"
                suffix = "fraction" if value.dtype == torch.bool else "mean"
                stats[f"policy/{settings.rollout_correction}_{key}_{suffix}"] = masked_token_mean(
                    value.to(logprobs.dtype), mask
                )
        loss = loss + settings.policy_coef * reduce(policy_per_token)
        stats["loss/policy"] = reduce_locally(policy_per_token)
        stats["policy/clip_fraction"] = masked_token_mean(policy_stats["clipped"].float(), mask)
        stats["policy/dual_clip_fraction"] = masked_token_mean(policy_stats["dual_clipped"].float(), mask)
        stats["policy/ratio_mean"] = masked_token_mean(policy_stats["ratio"], mask)

    if settings.entropy_coef != 0 and entropy is not None:
        loss = loss + settings.entropy_coef * reduce(entropy_token_loss(entropy))
        stats["loss/entropy"] = reduce_locally(entropy)

    if settings.kl_coef != 0 and ref_logprobs is not None:
        kl_per_token = kl_token_penalty(logprobs, ref_logprobs, settings.kl_estimator)
        loss = loss + settings.kl_coef * reduce(kl_per_token)
        stats["loss/kl"] = reduce_locally(kl_per_token)

    if settings.distill is not None and settings.distill_coef != 0:
        if settings.distill == "sdar":
            gate_entropy = None
            if entropy is not None and vocab_size is not None:
                gate_entropy = normalised_entropy(entropy.detach(), vocab_size)
            distill_per_token, distill_stats = sdar_token_loss(
                logprobs, teacher_logprobs, beta=settings.beta, gate=settings.gate, entropy=gate_entropy
            )
            gate = distill_stats["gate"]
            stats["distill/gate_mean"] = masked_token_mean(gate, mask)
            # Where the gate weighs the term differently from GRPO+OPSD's constant ½: the gate mean alone
            # hides it when nearly every token sits at ½ (experiments/cpu_reproduction/README.md).
            stats["distill/gate_off_half_ratio"] = masked_token_mean(gate_off_half(gate).float(), mask)
        else:  # "skill_sd"
            distill_per_token, distill_stats = skill_sd_token_loss(logprobs, old_logprobs, teacher_logprobs)
        loss = loss + settings.distill_coef * reduce(distill_per_token)
        stats["loss/distill"] = reduce_locally(distill_per_token)

    if teacher_logprobs is not None:  # gap diagnostics whenever a teacher was scored, even for GRPO
        gap = (teacher_logprobs - logprobs).detach()  # [B, T] Δ
        stats["distill/gap_mean"] = masked_token_mean(gap, mask)
        stats["distill/gap_std"] = masked_token_std(gap, mask)
        stats["distill/positive_gap_ratio"] = masked_token_mean((gap > 0).float(), mask)

    return loss, stats
