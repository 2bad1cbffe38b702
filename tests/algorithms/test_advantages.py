"""GRPO / RLOO row advantages: hand-computed cases and the per_row / per_episode invariants."""

import pytest
import torch

from sdar.algorithms import ADVANTAGES, compute_advantages, grpo_advantages, rloo_advantages

EPS = 1e-6


def tensor(values, dtype=torch.float64):
    return torch.tensor(values, dtype=dtype)


def assert_close(actual, expected, atol=1e-7):
    torch.testing.assert_close(actual, tensor(expected, actual.dtype), atol=atol, rtol=0)


def test_grpo_per_row_hand_case():
    # one group, 4 rows [10, 0, 0, 0]: mean 2.5, unbiased std sqrt((7.5² + 3·2.5²)/3) = 5
    returns = tensor([10.0, 0.0, 0.0, 0.0])
    advantages = grpo_advantages(returns, torch.tensor([0, 0, 0, 0]))
    assert_close(advantages, [7.5 / (5 + EPS), -2.5 / (5 + EPS), -2.5 / (5 + EPS), -2.5 / (5 + EPS)])
    assert_close(advantages, [1.5, -0.5, -0.5, -0.5], atol=1e-6)


def test_dr_grpo_without_std():
    advantages = grpo_advantages(
        tensor([10.0, 0.0, 0.0, 0.0]), torch.zeros(4, dtype=torch.long), norm_by_std=False
    )
    assert_close(advantages, [7.5, -2.5, -2.5, -2.5])


def test_per_row_and_per_episode_differ_with_unequal_episode_lengths():
    # episode 0 won in 1 turn (R=10); episode 1 lost over 3 turns (R=0)
    returns = tensor([10.0, 0.0, 0.0, 0.0])
    group = torch.tensor([4, 4, 4, 4])
    episode = torch.tensor([0, 1, 1, 1])
    per_row = grpo_advantages(returns, group, mode="per_row", episode_index=episode)
    per_episode = grpo_advantages(returns, group, mode="per_episode", episode_index=episode)
    assert_close(per_row, [1.5, -0.5, -0.5, -0.5], atol=1e-6)
    # per_episode: values [10, 0], mean 5, std sqrt(50) = 7.0710678
    assert_close(per_episode, [0.70710668, -0.70710668, -0.70710668, -0.70710668], atol=1e-7)


def test_per_episode_scores_each_row_with_its_own_return():
    # episode 0 rows [10, 9.9] (second turn invalid, −0.1), episode 1 rows [0]; statistic over [10, 0]
    returns = tensor([10.0, 9.9, 0.0])
    advantages = grpo_advantages(
        returns, torch.tensor([0, 0, 0]), mode="per_episode", episode_index=torch.tensor([0, 0, 1])
    )
    assert_close(advantages, [0.70710668, 0.69296455, -0.70710668], atol=1e-7)


def test_per_row_equals_per_episode_when_every_episode_has_one_turn():
    generator = torch.Generator().manual_seed(0)
    returns = torch.randint(0, 3, (24,), generator=generator).double() * 5
    group = torch.arange(24) // 8
    episode = torch.arange(24) % 8
    per_row = grpo_advantages(returns, group, mode="per_row")
    per_episode = grpo_advantages(returns, group, mode="per_episode", episode_index=episode)
    torch.testing.assert_close(per_row, per_episode, atol=0, rtol=0)


def test_single_element_group_uses_mean_zero_std_one():
    advantages = grpo_advantages(tensor([3.0]), torch.tensor([5]))
    assert_close(advantages, [3.0 / (1 + EPS)])
    assert_close(grpo_advantages(tensor([3.0]), torch.tensor([5]), norm_by_std=False), [3.0])


def test_all_equal_group_gets_exactly_zero():
    returns = tensor([0.1, 0.1, 0.1, 10.0, 10.0], dtype=torch.float32)
    advantages = grpo_advantages(returns, torch.tensor([0, 0, 0, 1, 1]))
    assert torch.equal(advantages, torch.zeros(5))
    assert advantages.dtype == torch.float32


def test_constant_episode_statistic_does_not_blow_up_by_one_over_eps():
    # both episodes returned 10; one row of episode 0 carries a −0.1 invalid-action penalty
    advantages = grpo_advantages(
        tensor([10.0, 9.9, 10.0]),
        torch.tensor([0, 0, 0]),
        mode="per_episode",
        episode_index=torch.tensor([0, 0, 1]),
    )
    assert_close(advantages, [0.0, -0.0999999, 0.0], atol=1e-7)


def test_non_contiguous_group_ids():
    # group 100: [1, 3] -> ±1/sqrt(2); group -3: [2, 6] -> ±2/(2·sqrt(2)); group 7: [4, 4] -> 0
    returns = tensor([1.0, 2.0, 3.0, 4.0, 6.0, 4.0])
    advantages = grpo_advantages(returns, torch.tensor([100, -3, 100, 7, -3, 7]))
    assert_close(advantages, [-0.7071063, -0.7071066, 0.7071063, 0.0, 0.7071066, 0.0], atol=1e-6)


def test_unbiased_std_matches_torch_std():
    generator = torch.Generator().manual_seed(1)
    returns = torch.randn(7, generator=generator, dtype=torch.float64)
    expected = (returns - returns.mean()) / (returns.std() + EPS)
    torch.testing.assert_close(grpo_advantages(returns, torch.zeros(7, dtype=torch.long)), expected)


def test_per_episode_needs_episode_index():
    with pytest.raises(ValueError, match="episode_index"):
        grpo_advantages(tensor([1.0, 0.0]), torch.tensor([0, 0]), mode="per_episode")
    with pytest.raises(ValueError, match="per_row"):
        grpo_advantages(tensor([1.0, 0.0]), torch.tensor([0, 0]), mode="per_group")


def test_rloo_per_row_hand_case():
    # leave-one-out: row 0 -> 1 − (0+0+1)/3; row 1 -> 0 − (1+0+1)/3
    advantages = rloo_advantages(tensor([1.0, 0.0, 0.0, 1.0]), torch.tensor([2, 2, 2, 2]))
    assert_close(advantages, [2 / 3, -2 / 3, -2 / 3, 2 / 3], atol=1e-12)


def test_rloo_per_episode_leaves_out_the_rows_episode():
    # episodes: 0 -> 10 (row 0), 1 -> 0 (rows 1, 2), 2 -> 0 (row 3); S = 10, n = 3
    advantages = rloo_advantages(
        tensor([10.0, 0.0, 0.0, 0.0]),
        torch.tensor([0, 0, 0, 0]),
        mode="per_episode",
        episode_index=torch.tensor([0, 1, 1, 2]),
    )
    assert_close(advantages, [10.0, -5.0, -5.0, -5.0])


def test_rloo_single_and_constant_groups():
    advantages = rloo_advantages(tensor([3.0, 0.1, 0.1, 0.1]), torch.tensor([9, 1, 1, 1]))
    assert torch.equal(advantages, tensor([3.0, 0.0, 0.0, 0.0]))


def test_registry_and_dispatch():
    assert set(ADVANTAGES) == {"grpo", "rloo"}
    returns, group = tensor([1.0, 0.0]), torch.tensor([0, 0])
    torch.testing.assert_close(compute_advantages("rloo", returns, group), tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="grpo, rloo"):
        compute_advantages("ppo", returns, group)
