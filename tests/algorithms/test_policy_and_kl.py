"""PPO-clip with dual clip, the KL estimators and the entropy helpers: hand-computed cases."""

import math

import pytest
import torch

from sdar.algorithms import (
    entropy_from_logits,
    entropy_token_loss,
    kl_token_penalty,
    normalised_entropy,
    ppo_clip_token_loss,
)


def tensor(values):
    return torch.tensor(values, dtype=torch.float64)


def ratios_as_logprobs(ratios):
    """logprobs with old_logprobs = 0, so that exp(logprobs − old) is exactly the given ratio."""
    logprobs = torch.log(tensor(ratios)).requires_grad_(True)
    return logprobs, torch.zeros_like(logprobs)


def test_ppo_clip_hand_cases_positive_and_negative_advantage():
    # row 0: A = +1, ratios 1.5 / 0.5 / 1.1; row 1: A = −2, ratios 1.5 / 0.5 / 4.0
    logprobs, old_logprobs = ratios_as_logprobs([[1.5, 0.5, 1.1], [1.5, 0.5, 4.0]])
    loss, stats = ppo_clip_token_loss(logprobs, old_logprobs, tensor([1.0, -2.0]))
    # A=+1: max(−1.5, −1.2) = −1.2 (clipped); max(−0.5, −0.8) = −0.5; −1.1
    # A=−2: max(3.0, 2.4) = 3.0; max(1.0, 1.6) = 1.6 (clipped); max(8.0, 2.4) = 8.0 -> dual clip min(8, 6) = 6
    torch.testing.assert_close(loss, tensor([[-1.2, -0.5, -1.1], [3.0, 1.6, 6.0]]))
    assert stats["clipped"].tolist() == [[True, False, False], [False, True, False]]
    assert stats["dual_clipped"].tolist() == [[False, False, False], [False, False, True]]
    torch.testing.assert_close(stats["ratio"], tensor([[1.5, 0.5, 1.1], [1.5, 0.5, 4.0]]))
    assert not any(value.requires_grad for value in stats.values())
    # d/dlogprob of −A·r is −A·r where unclipped, 0 where a clip is active
    loss.sum().backward()
    torch.testing.assert_close(logprobs.grad, tensor([[0.0, -0.5, -1.1], [3.0, 0.0, 0.0]]))


def test_ppo_dual_clip_can_be_disabled():
    logprobs, old_logprobs = ratios_as_logprobs([[4.0]])
    loss, stats = ppo_clip_token_loss(logprobs, old_logprobs, tensor([-2.0]), dual_clip=None)
    torch.testing.assert_close(loss, tensor([[8.0]]))
    assert not stats["dual_clipped"].any()


def test_ppo_asymmetric_clip_and_token_advantages_broadcast():
    logprobs, old_logprobs = ratios_as_logprobs([[1.5, 0.5]])
    loss, _ = ppo_clip_token_loss(logprobs, old_logprobs, tensor([[1.0, -1.0]]), clip_low=0.1, clip_high=0.3)
    # A=+1, r=1.5: max(−1.5, −1.3) = −1.3; A=−1, r=0.5: max(0.5, 0.9) = 0.9
    torch.testing.assert_close(loss, tensor([[-1.3, 0.9]]))
    per_row, _ = ppo_clip_token_loss(logprobs, old_logprobs, tensor([2.0]))
    per_token, _ = ppo_clip_token_loss(logprobs, old_logprobs, tensor([[2.0, 2.0]]))
    torch.testing.assert_close(per_row, per_token)


def test_ppo_rejects_dual_clip_at_most_one():
    logprobs, old_logprobs = ratios_as_logprobs([[1.0]])
    with pytest.raises(ValueError, match="dual_clip"):
        ppo_clip_token_loss(logprobs, old_logprobs, tensor([1.0]), dual_clip=1.0)


def test_kl_estimators_hand_cases():
    logprobs = tensor([[-1.0, -2.0]])
    ref_logprobs = tensor([[-2.0, -1.0]])
    torch.testing.assert_close(kl_token_penalty(logprobs, ref_logprobs, "k1"), tensor([[1.0, -1.0]]))
    torch.testing.assert_close(kl_token_penalty(logprobs, ref_logprobs, "k2"), tensor([[0.5, 0.5]]))
    # k3 with x = ref − logprobs = [−1, 1]: e^−1 + 1 − 1, e^1 − 1 − 1
    torch.testing.assert_close(
        kl_token_penalty(logprobs, ref_logprobs), tensor([[0.36787944117, 0.71828182846]])
    )


def test_k3_gradient_and_clamp():
    # x = ref − logprobs = [−1, 2, 20, −50]: values e^−1, e² − 3 = 4.389, then clamped to 10, 10
    logprobs = tensor([[1.0, -2.0, -20.0, 0.0]]).requires_grad_(True)
    ref_logprobs = tensor([[0.0, 0.0, 0.0, -50.0]])
    penalty = kl_token_penalty(logprobs, ref_logprobs, "k3")
    torch.testing.assert_close(penalty, tensor([[0.36787944117, 4.38905609893, 10.0, 10.0]]))
    penalty.sum().backward()
    # d/dlogprobs = 1 − e^x where unclamped, 0 where clamped (and never NaN)
    torch.testing.assert_close(logprobs.grad, tensor([[0.63212055883, 1 - math.exp(2.0), 0.0, 0.0]]))
    # the reference carries no gradient
    ref = tensor([[0.0]]).requires_grad_(True)
    kl_token_penalty(tensor([[1.0]]).requires_grad_(True), ref).sum().backward()
    assert ref.grad is None


def test_unknown_kl_estimator():
    with pytest.raises(ValueError, match="k1, k2, k3"):
        kl_token_penalty(tensor([[0.0]]), tensor([[0.0]]), "k4")


def test_entropy_helpers():
    entropy = tensor([[0.5, 2.0]]).requires_grad_(True)
    bonus = entropy_token_loss(entropy)
    torch.testing.assert_close(bonus, tensor([[-0.5, -2.0]]))
    bonus.sum().backward()
    torch.testing.assert_close(entropy.grad, tensor([[-1.0, -1.0]]))
    # uniform over 4 -> log 4 = 1.386294361; a near-one-hot -> ~0
    logits = tensor([[[0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0]]])
    torch.testing.assert_close(entropy_from_logits(logits), tensor([[1.3862943611, 0.0]]), atol=1e-9, rtol=0)
    torch.testing.assert_close(normalised_entropy(tensor([1.3862943611, 0.0]), 4), tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="vocab_size"):
        normalised_entropy(tensor([1.0]), 1)
