"""The sampler-trainer mismatch: its metrics and TIS, by hand; TIS inside the objective; its config checks."""

import dataclasses
import math

import pytest
import torch

from sdar.algorithms import (
    ROLLOUT_CORRECTIONS,
    policy_objective,
    sampler_mismatch_metrics,
    sampler_mismatch_token_stats,
    sampler_mismatch_totals,
    settings_for_method,
    truncated_importance_weights,
)
from sdar.config import AlgorithmConfig, load_config
from sdar.errors import ConfigError


def tensor(values):
    return torch.tensor(values, dtype=torch.float64)


# log r = old − sampler per token: row 0 [0, −0.5, ln 2], row 1 [ln 3 (masked out), 0 (masked out), 0.25]
OLD = tensor([[-1.0, -2.0, -0.3], [-0.1, -4.0, -1.0]])
SAMPLING = OLD - tensor([[0.0, -0.5, math.log(2.0)], [math.log(3.0), 0.0, 0.25]])
MASK = torch.tensor([[True, True, True], [False, False, True]])


def test_mismatch_token_stats_by_hand():
    abs_diff, k3 = sampler_mismatch_token_stats(OLD, SAMPLING)
    torch.testing.assert_close(abs_diff[0], tensor([0.0, 0.5, math.log(2.0)]))
    # k3 = (r − 1) − log r: r = 1 -> 0; r = e^−0.5 -> 0.60653066 − 1 + 0.5; r = 2 -> 1 − ln 2
    torch.testing.assert_close(k3[0], tensor([0.0, 0.1065306597126334, 0.3068528194400547]))
    assert bool((k3 >= 0).all())


def test_mismatch_metrics_are_token_means_and_the_max_over_valid_tokens():
    totals = sampler_mismatch_totals(OLD, SAMPLING, MASK)
    assert totals["tokens"] == 4.0
    metrics = sampler_mismatch_metrics(totals)
    # |Δ|: 0, 0.5, ln 2, 0.25 (ln 3 is masked out, so the max is ln 2)
    assert metrics["rollout/logprob_abs_diff_mean"] == pytest.approx((0.75 + math.log(2.0)) / 4)
    assert metrics["rollout/logprob_abs_diff_max"] == pytest.approx(math.log(2.0))
    k3_last = math.exp(0.25) - 1 - 0.25  # 0.0340254166877414
    expected_k3 = (0.1065306597126334 + 0.3068528194400547 + k3_last) / 4
    assert metrics["rollout/k3"] == pytest.approx(expected_k3)
    assert sampler_mismatch_metrics(sampler_mismatch_totals(OLD, SAMPLING, MASK & False)) == {}


def test_truncated_importance_weights_by_hand():
    # r = 1, e^−0.5, 2 | 3, 1, e^0.25; C = 2 truncates 3 only (2 is the cap itself, not above it)
    old = OLD.clone().requires_grad_(True)
    weights, stats = truncated_importance_weights(old, SAMPLING, cap=2.0)
    expected = tensor([[1.0, math.exp(-0.5), 2.0], [2.0, 1.0, math.exp(0.25)]])
    torch.testing.assert_close(weights, expected)
    assert stats["truncated"].tolist() == [[False, False, False], [True, False, False]]
    assert not weights.requires_grad  # no gradient through the weight
    weights, stats = truncated_importance_weights(OLD, SAMPLING, cap=1.0)
    torch.testing.assert_close(weights, tensor([[1.0, math.exp(-0.5), 1.0], [1.0, 1.0, 1.0]]))
    assert stats["truncated"].sum() == 3
    huge, _ = truncated_importance_weights(tensor([[0.0]]), tensor([[-1e4]]), cap=2.0)  # r = e^10000
    assert huge.item() == 2.0
    with pytest.raises(ValueError, match="≥ 1"):
        truncated_importance_weights(OLD, SAMPLING, cap=0.5)


def policy_only(correction: str, **overrides):
    return settings_for_method(
        "grpo", kl_coef=0.0, entropy_coef=0.0, rollout_correction=correction, **overrides
    )


def objective(settings, logprobs, old, sampling, advantages, mask):
    return policy_objective(
        logprobs, old, None, None, None, advantages, mask, settings=settings, sampling_logprobs=sampling
    )


def test_tis_weighs_each_policy_token_and_passes_no_gradient_through_the_weight():
    # One row, A = 1, logprobs = old (PPO ratio 1, so the per-token PPO loss is −1): sampler ratios
    # r = 1, 1.5, 3 -> w = 1, 1.5, 2 (C = 2) -> per-token loss −1, −1.5, −2, token mean −1.5.
    old = tensor([[-1.0, -2.0, -0.5]])
    logprobs = old.clone().requires_grad_(True)
    sampling = (old - torch.log(tensor([[1.0, 1.5, 3.0]]))).requires_grad_(True)
    mask = torch.tensor([[True, True, True]])
    loss, stats = objective(policy_only("tis"), logprobs, old, sampling, tensor([1.0]), mask)
    assert loss.item() == pytest.approx(-1.5)
    assert stats["loss/policy"].item() == pytest.approx(-1.5)
    assert stats["policy/tis_weight_mean"].item() == pytest.approx(1.5)
    assert stats["policy/tis_truncated_fraction"].item() == pytest.approx(1 / 3)
    # d(−A·r·w)/dlogprobs = −A·r·w / N = −w / 3 (w a constant); nothing reaches the sampler's log-probs
    grad_logprobs, grad_sampling = torch.autograd.grad(loss, [logprobs, sampling], allow_unused=True)
    torch.testing.assert_close(grad_logprobs, tensor([[-1 / 3, -0.5, -2 / 3]]))
    assert grad_sampling is None
    # the cap follows the settings: C = 4 keeps the ratio 3 -> token mean (−1 − 1.5 − 3) / 3
    loss, stats = objective(
        policy_only("tis", rollout_correction_cap=4.0), logprobs, old, sampling, tensor([1.0]), mask
    )
    assert loss.item() == pytest.approx(-5.5 / 3) and stats["policy/tis_truncated_fraction"].item() == 0.0


def test_tis_with_every_ratio_one_equals_no_correction():
    generator = torch.Generator().manual_seed(0)
    old = -torch.rand(3, 5, generator=generator, dtype=torch.float64)
    logprobs = (old + 0.3 * torch.randn(3, 5, generator=generator, dtype=torch.float64)).requires_grad_(True)
    advantages = torch.randn(3, generator=generator, dtype=torch.float64)
    mask = torch.arange(5)[None, :] < torch.tensor([5, 2, 4])[:, None]
    plain, plain_stats = objective(policy_only("none"), logprobs, old, None, advantages, mask)
    corrected, stats = objective(policy_only("tis"), logprobs, old, old.clone(), advantages, mask)
    assert corrected.item() == plain.item()
    assert stats["policy/tis_weight_mean"].item() == 1.0 and stats["policy/tis_truncated_fraction"] == 0
    assert "policy/tis_weight_mean" not in plain_stats
    (plain_grad,) = torch.autograd.grad(plain, logprobs)
    (corrected_grad,) = torch.autograd.grad(corrected, logprobs)
    torch.testing.assert_close(corrected_grad, plain_grad, atol=0, rtol=0)


def test_tis_without_sampler_logprobs_is_an_error_naming_what_to_do():
    old = tensor([[-1.0]])
    with pytest.raises(ValueError, match="needs sampling_logprobs.*rollout_correction=none"):
        objective(policy_only("tis"), old.clone(), old, None, tensor([1.0]), torch.tensor([[True]]))


def test_config_choices_are_the_registry_and_the_cap_is_at_least_one():
    (choice,) = [f for f in dataclasses.fields(AlgorithmConfig) if f.name == "rollout_correction"]
    assert choice.metadata["choices"] == tuple(ROLLOUT_CORRECTIONS)
    config = load_config("smoke", ["algorithm.rollout_correction=tis", "algorithm.rollout_correction_cap=3"])
    assert (config.algorithm.rollout_correction, config.algorithm.rollout_correction_cap) == ("tis", 3.0)
    with pytest.raises(ConfigError, match=r"algorithm.rollout_correction_cap=0.5 is out of range"):
        load_config("smoke", ["algorithm.rollout_correction_cap=0.5"])
    with pytest.raises(ConfigError, match="algorithm.rollout_correction='is' is not valid; choose one of"):
        load_config("smoke", ["algorithm.rollout_correction=is"])


@pytest.mark.parametrize(
    "sampling", ["rollout.temperature=0.7", "rollout.top_p=0.9", "rollout.temperature=0"]
)
def test_tis_is_refused_where_the_sampler_log_probs_are_of_a_processed_distribution(sampling):
    with pytest.raises(ConfigError) as error:
        load_config("smoke", ["algorithm.rollout_correction=tis", sampling])
    message = str(error.value)
    assert "algorithm.rollout_correction='tis'" in message and sampling.split("=")[0] in message
    assert "rollout_correction=none" in message and "temperature 1 and top_p 1" in message
    load_config("smoke", [sampling])  # no correction: any sampling is fine
