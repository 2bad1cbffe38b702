"""Algorithm core: advantages, policy/KL/entropy/distillation losses, aggregation, the method table.

Pure functions over tensors. Losses return per-token values [B, T] plus detached stats; `aggregate` is the
one place that reduces; `policy_objective` composes one micro-batch loss for a method (docs/method.md §3).
"""

from sdar.algorithms.advantages import (
    ADVANTAGE_MODES,
    ADVANTAGES,
    GroupStatistics,
    compute_advantages,
    group_statistics,
    grpo_advantages,
    rloo_advantages,
)
from sdar.algorithms.aggregation import (
    AGGREGATIONS,
    aggregate,
    count_tokens_and_rows,
    masked_token_mean,
    masked_token_std,
)
from sdar.algorithms.distill import (
    ADVANTAGE_SHAPINGS,
    DISTILL_TERMS,
    GATES,
    entropy_gate,
    gap_by_turn,
    gap_gate,
    gate_bin,
    rlsd_lambda,
    rlsd_token_advantages,
    route_by_largest_gap,
    sdar_token_loss,
    skill_sd_token_loss,
    soft_or_gate,
    teacher_routing_totals,
)
from sdar.algorithms.distill_weight import (
    DISTILL_WEIGHTS,
    PushSums,
    adaptive_distill_weight,
    distill_push_sums,
    step_distill_weight,
)
from sdar.algorithms.kl import (
    KL_ESTIMATORS,
    entropy_from_logits,
    entropy_token_loss,
    kl_token_penalty,
    normalised_entropy,
)
from sdar.algorithms.methods import METHODS, MethodSpec, get_method
from sdar.algorithms.objective import (
    ObjectiveSettings,
    advantages_from_config,
    has_gradient,
    policy_objective,
    rows_with_gradient,
    settings_for_method,
    settings_from_config,
)
from sdar.algorithms.policy import ppo_clip_token_loss
from sdar.algorithms.rollout_correction import (
    ROLLOUT_CORRECTIONS,
    RolloutCorrection,
    sampler_mismatch_metrics,
    sampler_mismatch_token_stats,
    sampler_mismatch_totals,
    truncated_importance_weights,
)

__all__ = [
    "ADVANTAGES",
    "ADVANTAGE_SHAPINGS",
    "ADVANTAGE_MODES",
    "AGGREGATIONS",
    "DISTILL_TERMS",
    "DISTILL_WEIGHTS",
    "GATES",
    "KL_ESTIMATORS",
    "METHODS",
    "ROLLOUT_CORRECTIONS",
    "GroupStatistics",
    "MethodSpec",
    "ObjectiveSettings",
    "PushSums",
    "RolloutCorrection",
    "adaptive_distill_weight",
    "advantages_from_config",
    "aggregate",
    "compute_advantages",
    "count_tokens_and_rows",
    "distill_push_sums",
    "entropy_from_logits",
    "entropy_gate",
    "entropy_token_loss",
    "gap_by_turn",
    "gap_gate",
    "gate_bin",
    "get_method",
    "group_statistics",
    "grpo_advantages",
    "has_gradient",
    "kl_token_penalty",
    "masked_token_mean",
    "masked_token_std",
    "normalised_entropy",
    "policy_objective",
    "ppo_clip_token_loss",
    "rloo_advantages",
    "rlsd_lambda",
    "rlsd_token_advantages",
    "route_by_largest_gap",
    "rows_with_gradient",
    "sampler_mismatch_metrics",
    "sampler_mismatch_token_stats",
    "sampler_mismatch_totals",
    "sdar_token_loss",
    "settings_for_method",
    "settings_from_config",
    "skill_sd_token_loss",
    "soft_or_gate",
    "step_distill_weight",
    "teacher_routing_totals",
    "truncated_importance_weights",
]
