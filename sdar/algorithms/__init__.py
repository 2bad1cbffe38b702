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
    rlsd_lambda,
    rlsd_token_advantages,
    sdar_token_loss,
    skill_sd_token_loss,
    soft_or_gate,
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
    "GATES",
    "KL_ESTIMATORS",
    "METHODS",
    "ROLLOUT_CORRECTIONS",
    "GroupStatistics",
    "MethodSpec",
    "ObjectiveSettings",
    "RolloutCorrection",
    "advantages_from_config",
    "aggregate",
    "compute_advantages",
    "count_tokens_and_rows",
    "entropy_from_logits",
    "entropy_gate",
    "entropy_token_loss",
    "gap_by_turn",
    "gap_gate",
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
    "rows_with_gradient",
    "sampler_mismatch_metrics",
    "sampler_mismatch_token_stats",
    "sampler_mismatch_totals",
    "sdar_token_loss",
    "settings_for_method",
    "settings_from_config",
    "skill_sd_token_loss",
    "soft_or_gate",
    "truncated_importance_weights",
]
