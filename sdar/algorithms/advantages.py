"""Group-relative advantages: one value per training row (a row = one turn of one episode).

Two ways to take the group statistics (docs/method.md §3):
- "per_row" (release default): the statistic runs over ALL turn rows of the group, each contributing its
  return.
- "per_episode" (classic GRPO): the statistic runs over the episodes of the group, each contributing the
  return of its FIRST row (the episode return; later rows may differ by invalid-action penalties).
In both modes every row is then scored with its OWN return R: A = (R − mean_g) / (std_g + eps).

Conventions shared by every estimator here (chosen to match the release where it is defined):
- std is the unbiased sample std (torch.std); a group whose statistic holds one value uses mean 0, std 1.
- a group whose statistic values are all equal uses mean = that value exactly and std = 1 (not 0 + eps):
  rows equal to it get exactly 0, and a row that differs (an invalid-action penalty under per_episode) gets
  the plain difference instead of a 1/eps blow-up. This differs from the release only in that blow-up case.
- group ids (and episode ids) may be any integers, not necessarily contiguous; episode ids are read within
  their group, so (group, episode) is the episode key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

ADVANTAGE_MODES = ("per_row", "per_episode")


@dataclass(frozen=True)
class GroupStatistics:
    """Per-group statistics [G] and, per row [N], its group and its own statistic value."""

    row_group: Tensor  # [N] dense group id of each row, in 0..G-1
    row_value: Tensor  # [N] the row's own statistic value: its return (per_row) or its episode's return
    count: Tensor  # [G] number of values in the statistic
    total: Tensor  # [G] sum of the values
    constant: Tensor  # [G] bool: ≥ 2 values, all equal
    mean: Tensor  # [G] with the single-value and constant-group conventions applied
    std: Tensor  # [G] likewise


def group_statistics(
    returns: Tensor,
    group_index: Tensor,
    *,
    mode: str = "per_row",
    episode_index: Tensor | None = None,
) -> GroupStatistics:
    """Count, sum, mean and unbiased std of each group's statistic values (see the module docstring)."""
    if returns.dim() != 1 or group_index.shape != returns.shape:
        raise ValueError(
            f"returns {tuple(returns.shape)} and group_index {tuple(group_index.shape)} must both be [N]"
        )
    values = returns.detach().to(torch.float64)  # [N]; float64 keeps sums of equal returns exact-ish
    groups, row_group = torch.unique(group_index, return_inverse=True)  # row_group: [N] dense ids
    num_groups = groups.numel()

    if mode == "per_row":
        row_value, statistic_values, statistic_group = values, values, row_group
    elif mode == "per_episode":
        if episode_index is None:
            raise ValueError("advantage mode 'per_episode' needs episode_index (one episode id per row)")
        if episode_index.shape != returns.shape:
            raise ValueError(f"episode_index {tuple(episode_index.shape)} must match returns [N]")
        keys = torch.stack([row_group, episode_index.to(row_group.device).long()], dim=1)  # [N, 2]
        episodes, row_episode = torch.unique(keys, dim=0, return_inverse=True)  # row_episode: [N]
        rows = torch.arange(values.numel(), device=values.device)
        first_row = torch.full((episodes.shape[0],), values.numel(), device=values.device, dtype=torch.long)
        first_row = first_row.scatter_reduce(0, row_episode, rows, reduce="amin")  # [E] first row of each
        statistic_values, statistic_group = values[first_row], row_group[first_row]  # [E]
        row_value = statistic_values[row_episode]  # [N]
    else:
        raise ValueError(f"unknown advantage mode {mode!r}; choose one of: {', '.join(ADVANTAGE_MODES)}")

    zeros = values.new_zeros(num_groups)
    count = zeros.index_add(0, statistic_group, torch.ones_like(statistic_values))  # [G]
    total = zeros.index_add(0, statistic_group, statistic_values)  # [G]
    mean = total / count.clamp(min=1)
    squared = (statistic_values - mean[statistic_group]) ** 2  # [E or N]
    std = (zeros.index_add(0, statistic_group, squared) / (count - 1).clamp(min=1)).sqrt()  # unbiased

    low = zeros.scatter_reduce(0, statistic_group, statistic_values, reduce="amin", include_self=False)
    high = zeros.scatter_reduce(0, statistic_group, statistic_values, reduce="amax", include_self=False)
    single = count == 1
    constant = (low == high) & ~single
    mean = torch.where(single, zeros, torch.where(constant, low, mean))
    std = torch.where(single | constant, torch.ones_like(std), std)
    return GroupStatistics(row_group, row_value, count, total, constant, mean, std)


def grpo_advantages(
    returns: Tensor,
    group_index: Tensor,
    *,
    mode: str = "per_row",
    episode_index: Tensor | None = None,
    norm_by_std: bool = True,
    eps: float = 1e-6,
) -> Tensor:
    """GRPO advantage per row [N]: A = (R − mean_g) / (std_g + eps); Dr. GRPO (norm_by_std=False): R − mean_g.

    See the module docstring for the per_row / per_episode statistics and the single-value, all-equal cases.
    """
    stats = group_statistics(returns, group_index, mode=mode, episode_index=episode_index)
    values = returns.detach().to(torch.float64)
    centred = values - stats.mean[stats.row_group]  # [N]
    if norm_by_std:
        centred = centred / (stats.std[stats.row_group] + eps)
    return centred.to(_output_dtype(returns))


def rloo_advantages(
    returns: Tensor,
    group_index: Tensor,
    *,
    mode: str = "per_row",
    episode_index: Tensor | None = None,
    norm_by_std: bool = True,
    eps: float = 1e-6,
) -> Tensor:
    """RLOO advantage per row [N]: A = R − (S_g − v_own) / (n_g − 1), the mean of the group's OTHER values.

    S_g, n_g: sum and count of the group's statistic values; v_own: the row's own statistic value (its return
    under per_row; its episode's first-row return under per_episode, so the baseline leaves out its episode).
    n_g = 1: no baseline, A = R. All-equal group: baseline = that value, so equal rows get exactly 0.
    RLOO is unnormalised: `norm_by_std` and `eps` are accepted for a shared signature and ignored.
    """
    del norm_by_std, eps
    stats = group_statistics(returns, group_index, mode=mode, episode_index=episode_index)
    values = returns.detach().to(torch.float64)
    count = stats.count[stats.row_group]  # [N]
    baseline = (stats.total[stats.row_group] - stats.row_value) / (count - 1).clamp(min=1)  # [N]
    baseline = torch.where(count == 1, torch.zeros_like(baseline), baseline)
    baseline = torch.where(stats.constant[stats.row_group], stats.mean[stats.row_group], baseline)
    return (values - baseline).to(_output_dtype(returns))


def _output_dtype(returns: Tensor) -> torch.dtype:
    return returns.dtype if returns.is_floating_point() else torch.get_default_dtype()


AdvantageEstimator = Callable[..., Tensor]

ADVANTAGES: dict[str, AdvantageEstimator] = {
    "grpo": grpo_advantages,
    "rloo": rloo_advantages,
}


def compute_advantages(
    name: str,
    returns: Tensor,
    group_index: Tensor,
    *,
    mode: str = "per_row",
    episode_index: Tensor | None = None,
    norm_by_std: bool = True,
    eps: float = 1e-6,
) -> Tensor:
    """Dispatch to ADVANTAGES[name]; raises ValueError naming the valid estimators."""
    if name not in ADVANTAGES:
        raise ValueError(f"unknown advantage estimator {name!r}; choose one of: {', '.join(ADVANTAGES)}")
    return ADVANTAGES[name](
        returns, group_index, mode=mode, episode_index=episode_index, norm_by_std=norm_by_std, eps=eps
    )
