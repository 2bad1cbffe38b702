"""Several teachers routed by the gate: per token the teacher of largest gap, SDAR's gated term with it, and
each teacher's share of the tokens and gap; one teacher is SDAR exactly."""

import math

import torch

from sdar.algorithms import (
    DISTILL_TERMS,
    METHODS,
    policy_objective,
    route_by_largest_gap,
    sdar_token_loss,
    settings_for_method,
    teacher_routing_totals,
)

SIGMOID_OF_1 = 0.7310585786300049  # σ(5 · 0.2)
SIGMOID_OF_MINUS_1 = 0.2689414213699951
SIGMOID_OF_MINUS_2_5 = 1.0 / (1.0 + math.exp(2.5))  # σ(5 · −0.5)


def tensor(values):
    return torch.tensor(values, dtype=torch.float64)


def three_teachers():
    """The student at −1 on 4 tokens; per token the teachers' log-probs [3, 1, 4]: token 0 is endorsed most by
    teacher 2, token 1 by teacher 0, token 2 by teacher 1 (all reject it, 1 least), token 3 is a tie."""
    logprobs = tensor([[-1.0, -1.0, -1.0, -1.0]])
    teachers = tensor(
        [
            [[-1.0, -0.8, -2.0, -1.5]],
            [[-1.2, -0.9, -1.2, -1.5]],
            [[-0.8, -1.5, -3.0, -1.5]],
        ]
    )
    return logprobs, teachers


def test_each_token_is_routed_to_the_teacher_of_largest_gap_and_a_tie_to_the_first():
    _, teachers = three_teachers()
    routed, choice = route_by_largest_gap(teachers)
    assert torch.equal(choice, torch.tensor([[2, 0, 1, 0]]))
    assert torch.equal(routed, tensor([[-0.8, -0.8, -1.2, -1.5]]))
    assert DISTILL_TERMS["sdar"].route_teachers is route_by_largest_gap


def test_the_routed_term_is_sdars_with_the_routed_teacher_loss_and_gradient():
    logprobs, teachers = three_teachers()
    logprobs.requires_grad_(True)
    routed, choice = route_by_largest_gap(teachers)
    loss, stats = sdar_token_loss(logprobs, routed, beta=5.0)
    # Δ_k* = [0.2, 0.2, −0.2, −0.5]: g = [σ(1), σ(1), σ(−1), σ(−2.5)], ℓ = g·Δ_k*
    gate = tensor([[SIGMOID_OF_1, SIGMOID_OF_1, SIGMOID_OF_MINUS_1, SIGMOID_OF_MINUS_2_5]])
    torch.testing.assert_close(stats["gate"], gate)
    torch.testing.assert_close(loss, gate * tensor([[0.2, 0.2, -0.2, -0.5]]))
    loss.sum().backward()
    torch.testing.assert_close(logprobs.grad, -gate)  # the gate of the most endorsing teacher
    # token by token it is SDAR's term with the chosen teacher, and that teacher's gate is the largest
    for token in range(4):
        teacher = teachers[choice[0, token]]
        alone, alone_stats = sdar_token_loss(logprobs.detach(), teacher, beta=5.0)
        assert alone[0, token] == loss[0, token]
        gates = torch.stack([sdar_token_loss(logprobs.detach(), t, beta=5.0)[1]["gate"] for t in teachers])
        assert alone_stats["gate"][0, token] == gates[:, 0, token].max()


def test_one_teacher_routed_is_sdar_exactly():
    generator = torch.Generator().manual_seed(3)
    logprobs = -torch.rand(3, 5, generator=generator, dtype=torch.float64).requires_grad_(True)
    teacher = -2 * torch.rand(3, 5, generator=generator, dtype=torch.float64)
    routed, choice = route_by_largest_gap(teacher[None])
    assert torch.equal(routed, teacher) and not choice.any()
    mask = torch.arange(5)[None, :] < torch.tensor([5, 2, 4])[:, None]
    advantages = torch.randn(3, generator=generator, dtype=torch.float64)
    settings = settings_for_method("sdar", kl_coef=0.0, entropy_coef=0.0)

    def objective(teacher_logprobs):
        old = logprobs.detach() - 0.1
        return policy_objective(
            logprobs, old, None, teacher_logprobs, None, advantages, mask, settings=settings
        )

    sdar_loss, sdar_stats = objective(teacher)
    routed_loss, routed_stats = objective(routed)
    assert torch.equal(routed_loss, sdar_loss)
    assert all(torch.equal(routed_stats[key], sdar_stats[key]) for key in sdar_stats)
    (sdar_grad,) = torch.autograd.grad(sdar_loss, logprobs)
    (routed_grad,) = torch.autograd.grad(routed_loss, logprobs)
    assert torch.equal(routed_grad, sdar_grad)


def test_routing_totals_count_each_teachers_tokens_and_sum_its_gap_over_valid_tokens():
    logprobs, teachers = three_teachers()
    mask = torch.tensor([[True, True, True, False]])  # the tie is padding
    _, choice = route_by_largest_gap(teachers)
    routed, gap_sum, tokens = teacher_routing_totals(teachers, choice, logprobs, mask)
    assert torch.equal(routed, torch.tensor([1, 1, 1])) and int(tokens) == 3
    # Δ'_k over tokens 0-2: teacher 0: 0 + 0.2 − 1 ; teacher 1: −0.2 + 0.1 − 0.2 ; teacher 2: 0.2 − 0.5 − 2
    torch.testing.assert_close(gap_sum, tensor([-0.8, -0.3, -2.3]))


def test_the_methods_that_route_several_teachers_are_those_with_a_routing_distillation_term():
    routing = sorted(name for name, method in METHODS.items() if method.routes_teachers)
    assert routing == ["grpo_opsd", "opsd", "sdar"]
