"""One micro-batch objective composed from the terms (docs/method.md §3, §5 step 8):

    L = policy_coef·PPO(A, or the shaped Â)·w − entropy_coef·H + kl_coef·KL + distill_coef·L_distill

each term aggregated by `aggregate` (the one reduction); w is the per-token weight of the rollout correction
(sdar.algorithms.rollout_correction; 1 when it is "none"); the shaping and the distillation term are the
method's registry entries (sdar.algorithms.distill: ADVANTAGE_SHAPINGS, DISTILL_TERMS); distill_coef is λ,
the step's own under an adaptive `distill_weight` (sdar.algorithms.distill_weight). A term whose
coefficient is 0 is skipped, and so is the KL or entropy term when its input is None; a teacher term that is
ON but lacks teacher_logprobs raises, since silently dropping it would turn SDAR into GRPO.

Stats are detached scalar tensors (no .item()) describing THIS micro-batch alone: "loss/*" are the terms
aggregated with the micro-batch's own normalisers ("loss/entropy" is the aggregated entropy H itself, which
enters L with a minus sign), the rest are token means over its valid tokens. Average them over micro-batches
(weighted by "objective/valid_tokens" if micro-batches differ in size) for a step's log.
"""

from __future__ import annotations

import dataclasses
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
    ADVANTAGE_SHAPINGS,
    DISTILL_TERMS,
    GATE_BINS,
    GATES,
    RLSD_DECAY_STEPS,
    RLSD_LAMBDA_START,
    gate_bin,
    gate_off_half,
)
from sdar.algorithms.distill_weight import DISTILL_WEIGHTS
from sdar.algorithms.kl import KL_ESTIMATORS, entropy_token_loss, kl_token_penalty
from sdar.algorithms.methods import METHODS, MethodSpec, get_method
from sdar.algorithms.policy import PPO_CLIP, PPO_DUAL_CLIP, ppo_clip_token_loss
from sdar.algorithms.rollout_correction import ROLLOUT_CORRECTIONS
from sdar.errors import ConfigError

_BACKBONE = METHODS["grpo"]  # ObjectiveSettings() is the GRPO backbone


@dataclass(frozen=True)
class ObjectiveSettings:
    """The resolved numbers of one run's objective, in the formula's words (no `None`-means-default left).

    A run's are built by `settings_from_config` from its config's algorithm section, the one place that reads
    it. The defaults (the GRPO entry's coefficients, the formulas' paper values) serve direct use of
    `policy_objective`; tests/test_registries.py holds them equal to the config's defaults."""

    policy_coef: float = _BACKBONE.policy_coef
    kl_coef: float = _BACKBONE.kl_coef
    kl_estimator: str = "k3"
    entropy_coef: float = _BACKBONE.entropy_coef
    distill: str | None = _BACKBONE.distill  # None or a DISTILL_TERMS name
    # λ. Under an adaptive distill_weight the fallback; policy_update sets each step's λ here.
    distill_coef: float = _BACKBONE.distill_coef
    distill_weight: str = "constant"  # a DISTILL_WEIGHTS name: how each step's λ is set
    distill_weight_target: float = 0.01  # ρ of "adaptive"
    distill_weight_max: float = 1.0  # λ_max of "adaptive": at most the policy-gradient term's weight
    beta: float = _BACKBONE.beta
    gate: str = "gap"
    gate_baseline: float = 0.0  # b in (g − b)·(log π_T − log π_θ); 0 is the paper's term
    clip_low: float = PPO_CLIP
    clip_high: float = PPO_CLIP
    dual_clip: float | None = PPO_DUAL_CLIP  # None disables the dual clip
    aggregation: str = "token-mean"
    aggregation_constant: float | None = None  # the "constant" mode's normaliser (Dr. GRPO)
    advantage_shaping: str | None = _BACKBONE.advantage_shaping  # None or an ADVANTAGE_SHAPINGS name
    rlsd_lambda_start: float = RLSD_LAMBDA_START
    rlsd_decay_steps: int = RLSD_DECAY_STEPS
    rollout_correction: str = "none"  # a ROLLOUT_CORRECTIONS name
    rollout_correction_cap: float = 2.0  # C of "tis"

    def __post_init__(self) -> None:
        checks = {
            "kl_estimator": (self.kl_estimator, tuple(KL_ESTIMATORS)),
            "distill": (self.distill, (None, *DISTILL_TERMS)),
            "distill_weight": (self.distill_weight, tuple(DISTILL_WEIGHTS)),
            "gate": (self.gate, tuple(GATES)),
            "aggregation": (self.aggregation, AGGREGATIONS),
            "advantage_shaping": (self.advantage_shaping, (None, *ADVANTAGE_SHAPINGS)),
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
        if self.gate_baseline != 0 and not (self.distill is not None and DISTILL_TERMS[self.distill].gated):
            raise ConfigError(
                f"algorithm.gate_baseline={self.gate_baseline} has no gated distillation term to act on "
                f"(the method's term: {self.distill!r}); use it with sdar or grpo_opsd, or leave it at 0"
            )
        if self.reads_old_before_update and not self.gated_by_gap:
            raise ConfigError(
                f"algorithm.distill_weight={self.distill_weight!r} measures the distillation term's push by "
                f"its gate of the gap, known before the update; the term {self.distill!r} with "
                f"algorithm.gate={self.gate!r} has none: use a gate that reads the gap alone "
                f"({', '.join(name for name, gate in GATES.items() if not gate.reads_entropy)}), a method "
                "with SDAR's term, or algorithm.distill_weight=constant"
            )

    @property
    def distilling(self) -> bool:
        """True when the distillation term is ON: a term is named and its weight λ can be nonzero."""
        return self.distill is not None and DISTILL_WEIGHTS[self.distill_weight].is_on(self)

    @property
    def reads_old_before_update(self) -> bool:
        """True when the step's λ is computed from π_old and the teacher of every row before the update (an
        adaptive distill_weight): then the update cannot take π_old from its own forward."""
        return self.distilling and DISTILL_WEIGHTS[self.distill_weight].reads_pushes

    @property
    def needs_teacher(self) -> bool:
        """True when a term that is ON reads teacher_logprobs."""
        shaping = self.advantage_shaping is not None and self.policy_coef != 0
        return self.distilling or shaping

    @property
    def needs_entropy(self) -> bool:
        """True when the update's forward must give the student's per-token entropy: the entropy bonus, or a
        gate that reads it."""
        return self.entropy_coef != 0 or GATES[self.gate].reads_entropy

    @property
    def gated_by_gap(self) -> bool:
        """True when the distillation term is gated and its gate reads the gap Δ alone (not the entropy of
        the update's own forward)."""
        gated = self.distill is not None and DISTILL_TERMS[self.distill].gated
        return gated and not GATES[self.gate].reads_entropy

    def gate_of_gap(self, gap: Tensor) -> Tensor | None:
        """The gate [B, T] the distillation term weighs tokens with, from the gap Δ alone; None where there is
        no gated term, or where the gate also reads the entropy of the update's own forward."""
        if not self.gated_by_gap:
            return None
        return GATES[self.gate](gap, beta=self.beta)


# Where settings_from_config reads each ObjectiveSettings field: the method's entry for its terms, the
# algorithm section for the rest, under the section's own name where it differs.
METHOD_TERMS = ("distill", "advantage_shaping")
CONFIG_NAMES = {"aggregation": "loss_aggregation", "aggregation_constant": "loss_constant"}


def settings_from_config(algorithm_config: Any) -> ObjectiveSettings:
    """ObjectiveSettings from a sdar.config.AlgorithmConfig, resolved first (`None` coefficient = the method's
    default, `AlgorithmConfig.resolved`): every field read by name (METHOD_TERMS, CONFIG_NAMES)."""
    section = algorithm_config.resolved()
    method = get_method(section.method)

    def read(name: str) -> Any:
        return (
            getattr(method, name) if name in METHOD_TERMS else getattr(section, CONFIG_NAMES.get(name, name))
        )

    return ObjectiveSettings(**{f.name: read(f.name) for f in dataclasses.fields(ObjectiveSettings)})


def settings_for_method(name: str, **overrides: Any) -> ObjectiveSettings:
    """ObjectiveSettings with method `name`'s entry (every field MethodSpec shares), then `overrides`."""
    method = get_method(name)
    shared = {f.name for f in dataclasses.fields(MethodSpec)} & {
        f.name for f in dataclasses.fields(ObjectiveSettings)
    }
    defaults = {field_name: getattr(method, field_name) for field_name in shared}
    return ObjectiveSettings(**{**defaults, **overrides})


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
    other_terms = settings.kl_coef != 0 or settings.entropy_coef != 0 or settings.distilling
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
        if settings.advantage_shaping is not None:
            shaping = ADVANTAGE_SHAPINGS[settings.advantage_shaping]
            token_advantages, shaping_stats = shaping.token_advantages(
                advantages, teacher_logprobs, old_logprobs, step=step, settings=settings
            )
            stats.update({key: logprobs.new_tensor(value) for key, value in shaping_stats.items()})
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
        term = DISTILL_TERMS[settings.distill]
        distill_per_token, distill_stats = term.token_loss(
            logprobs,
            old_logprobs,
            teacher_logprobs,
            entropy=entropy,
            vocab_size=vocab_size,
            settings=settings,
        )
        if "gate" in distill_stats:
            gate = distill_stats["gate"]
            stats["distill/gate_mean"] = masked_token_mean(gate, mask)
            # Where the gate weighs the term differently from GRPO+OPSD's constant ½: the gate mean alone
            # hides it when nearly every token sits at ½ (experiments/cpu_reproduction/README.md).
            stats["distill/gate_off_half_ratio"] = masked_token_mean(gate_off_half(gate).float(), mask)
            bins = gate_bin(gate)  # [B, T]: the gate's histogram, the share of tokens in each tenth of [0, 1]
            for index in range(GATE_BINS):
                stats[f"distill/gate_bin_{index}"] = masked_token_mean((bins == index).float(), mask)
        loss = loss + settings.distill_coef * reduce(distill_per_token)
        stats["loss/distill"] = reduce_locally(distill_per_token)

    if teacher_logprobs is not None:  # gap diagnostics whenever a teacher was scored, even for GRPO
        gap = (teacher_logprobs - logprobs).detach()  # [B, T] Δ
        stats["distill/gap_mean"] = masked_token_mean(gap, mask)
        stats["distill/gap_std"] = masked_token_std(gap, mask)
        stats["distill/positive_gap_ratio"] = masked_token_mean((gap > 0).float(), mask)

    return loss, stats
