"""SDAR gate and gated term, the ablation gates, Skill-SD and RLSD: hand cases and invariants."""

import pytest
import torch

from sdar.algorithms import (
    GATES,
    gap_by_turn,
    gate_bin,
    rlsd_lambda,
    rlsd_token_advantages,
    sdar_token_loss,
    skill_sd_token_loss,
)

SIGMOID_OF_1 = 0.7310585786300049  # σ(1) = σ(5 · 0.2)
SIGMOID_OF_MINUS_1 = 0.2689414213699951


def tensor(values):
    return torch.tensor(values, dtype=torch.float64)


def test_sdar_gate_and_loss_hand_case():
    logprobs = tensor([[-1.0, -1.0, -1.0]]).requires_grad_(True)
    teacher_logprobs = tensor([[-1.0, -0.8, -1.2]])  # Δ = [0, 0.2, −0.2]
    loss, stats = sdar_token_loss(logprobs, teacher_logprobs, beta=5.0)
    torch.testing.assert_close(stats["gate"], tensor([[0.5, SIGMOID_OF_1, SIGMOID_OF_MINUS_1]]))
    torch.testing.assert_close(stats["gap"], tensor([[0.0, 0.2, -0.2]]))
    # ℓ = g·Δ = [0, 0.2·σ(1), −0.2·σ(−1)]
    torch.testing.assert_close(loss, tensor([[0.0, 0.14621171572600, -0.05378828427400]]))
    loss.sum().backward()
    # the gate is a constant: ∂ℓ/∂logprobs = −g exactly
    torch.testing.assert_close(logprobs.grad, tensor([[-0.5, -SIGMOID_OF_1, -SIGMOID_OF_MINUS_1]]))


def test_a_gate_baseline_of_one_half_lowers_rejected_tokens_and_leaves_neutral_ones():
    logprobs = tensor([[-1.0, -1.0, -1.0]]).requires_grad_(True)
    teacher_logprobs = tensor([[-1.0, -0.8, -1.2]])  # Δ = [0, 0.2, −0.2]: neutral, endorsed, rejected
    loss, stats = sdar_token_loss(logprobs, teacher_logprobs, beta=5.0, baseline=0.5)
    # the logged gate is g, not g − b
    torch.testing.assert_close(stats["gate"], tensor([[0.5, SIGMOID_OF_1, SIGMOID_OF_MINUS_1]]))
    # ℓ = (g − ½)·Δ = [0, 0.2·(σ(1) − ½), −0.2·(σ(−1) − ½)]
    torch.testing.assert_close(loss, tensor([[0.0, 0.04621171572600, 0.04621171572600]]))
    loss.sum().backward()
    # ∂ℓ/∂logprobs = −(g − ½): the neutral token stays, the endorsed one rises, the rejected one falls
    torch.testing.assert_close(logprobs.grad, tensor([[0.0, 0.5 - SIGMOID_OF_1, 0.5 - SIGMOID_OF_MINUS_1]]))
    assert logprobs.grad[0, 1] < 0 < logprobs.grad[0, 2]


def test_gate_carries_no_gradient_and_teacher_none():
    logprobs = tensor([[-1.0, -2.0]]).requires_grad_(True)
    teacher_logprobs = tensor([[-0.5, -2.5]]).requires_grad_(True)
    loss, stats = sdar_token_loss(logprobs, teacher_logprobs)
    assert not stats["gate"].requires_grad and not stats["gap"].requires_grad
    loss.sum().backward()
    torch.testing.assert_close(logprobs.grad, -stats["gate"])
    assert teacher_logprobs.grad is None


def test_beta_zero_gives_gate_one_half_everywhere():
    generator = torch.Generator().manual_seed(0)
    logprobs = -torch.rand(3, 5, generator=generator, dtype=torch.float64)
    teacher_logprobs = -3 * torch.rand(3, 5, generator=generator, dtype=torch.float64)
    _, stats = sdar_token_loss(logprobs, teacher_logprobs, beta=0.0)
    assert torch.equal(stats["gate"], torch.full((3, 5), 0.5, dtype=torch.float64))


def test_entropy_and_soft_or_gates_hand_cases():
    logprobs = tensor([[-1.0, -1.0]])
    teacher_logprobs = tensor([[-1.0, -1.2]])  # Δ = [0, −0.2]
    entropy = tensor([[0.0, 0.2]])  # already normalised to [0, 1]
    _, stats = sdar_token_loss(logprobs, teacher_logprobs, gate="entropy", entropy=entropy)
    torch.testing.assert_close(stats["gate"], tensor([[0.5, SIGMOID_OF_1]]))
    # soft-OR: 1 − (1 − σ(βh))(1 − σ(βΔ)) = [1 − 0.5·0.5, 1 − (1 − σ(1))(1 − σ(−1))]
    _, stats = sdar_token_loss(logprobs, teacher_logprobs, gate="soft_or", entropy=entropy)
    torch.testing.assert_close(stats["gate"], tensor([[0.75, 0.8033880667585181]]))


def test_entropy_gates_require_entropy_and_unknown_gate_is_named():
    for gate in ("entropy", "soft_or"):
        with pytest.raises(ValueError, match="normalised"):
            sdar_token_loss(tensor([[0.0]]), tensor([[0.0]]), gate=gate)
    with pytest.raises(ValueError, match="gap, entropy, soft_or"):
        sdar_token_loss(tensor([[0.0]]), tensor([[0.0]]), gate="hard")
    assert set(GATES) == {"gap", "entropy", "soft_or"}


def test_skill_sd_hand_case_with_gradient_through_rho():
    # ℓ = −1 − (−1.5) = 0.5; k3 = e^−0.5 − 1 + 0.5 = 0.10653066; ρ = e^(−1 − (−1.2)) = e^0.2 = 1.22140276
    logprobs = tensor([[-1.0]]).requires_grad_(True)
    loss, stats = skill_sd_token_loss(logprobs, tensor([[-1.2]]), tensor([[-1.5]]))
    torch.testing.assert_close(stats["k3"], tensor([[0.10653065971263342]]))
    torch.testing.assert_close(stats["importance_ratio"], tensor([[1.2214027581601699]]))
    torch.testing.assert_close(loss, tensor([[0.13011684160163295]]))
    loss.sum().backward()
    # d(ρ·k3) = ρ·k3 (through ρ) + ρ·(1 − e^−ℓ) (through k3) = ρ·ℓ = 1.22140276 · 0.5
    torch.testing.assert_close(logprobs.grad, tensor([[0.6107013790800849]]))


def test_skill_sd_clamps():
    # log-ratio to old = 15 -> ρ = e^10 without gradient; ℓ = 1 -> k3 = e^−1, ∂k3 = 1 − e^−1
    logprobs = tensor([[0.0]]).requires_grad_(True)
    loss, _ = skill_sd_token_loss(logprobs, tensor([[-15.0]]), tensor([[-1.0]]))
    torch.testing.assert_close(loss, tensor([[8103.083927575385]]))
    loss.sum().backward()
    torch.testing.assert_close(logprobs.grad, tensor([[13923.381867231334]]))
    # −ℓ = 30 clamped to 20: k3 = e^20 − 21, no gradient through k3 (ρ = 1 with old = logprobs)
    logprobs = tensor([[-31.0]]).requires_grad_(True)
    loss, stats = skill_sd_token_loss(logprobs, tensor([[-31.0]]), tensor([[-1.0]]))
    torch.testing.assert_close(stats["k3"], tensor([[485165174.4097903]]))
    loss.sum().backward()
    torch.testing.assert_close(logprobs.grad, tensor([[485165174.4097903]]))  # ρ·k3 via ρ only


def test_rlsd_token_advantages_hand_case():
    advantages = tensor([2.0, -1.0, 0.0])
    old_logprobs = tensor([[-1.0, -1.0, -1.0]] * 3)
    teacher_logprobs = old_logprobs + tensor([0.1, -0.5, 1.0])  # Δ' = [0.1, −0.5, 1.0] on every row
    shaped = rlsd_token_advantages(advantages, teacher_logprobs, old_logprobs, lam=0.5)
    # A=2:  w = clip(e^Δ') = [1.10517092, 0.8, 1.2] -> 2·(0.5 + 0.5·w)
    # A=−1: w = clip(e^−Δ') = [0.90483742, 1.2, 0.8] -> −(0.5 + 0.5·w); A=0 -> 0
    expected = tensor([[2.1051709180756477, 1.8, 2.2], [-0.9524187090179798, -1.1, -0.9], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(shaped, expected)


def test_rlsd_with_lambda_zero_is_exactly_the_plain_advantage():
    advantages = tensor([0.3, -1.7])
    logprobs = -torch.rand(2, 4, dtype=torch.float64)
    shaped = rlsd_token_advantages(advantages, logprobs - 0.4, logprobs, lam=0.0)
    assert torch.equal(shaped, advantages[:, None].expand(2, 4))


def test_rlsd_lambda_schedule_counts_updates_from_one_as_the_release_does():
    # The release's λ at its update n (counted from 1) is 0.5 · (1 − n/100); our 0-based step is its n − 1.
    assert rlsd_lambda(0) == 0.495  # the first update: 0.5 · (1 − 1/100)
    assert rlsd_lambda(98) == pytest.approx(0.005, abs=1e-15)  # update 99: 0.5 · (1 − 99/100)
    assert rlsd_lambda(99) == 0.0  # update 100 (logged as step 100): 0.5 · (1 − 100/100)
    assert [rlsd_lambda(step) for step in (24, 49, 150)] == [0.375, 0.25, 0.0]  # updates 25, 50, 151
    assert rlsd_lambda(4, start=1.0, decay_steps=10) == 0.5  # update 5 of 10
    with pytest.raises(ValueError, match="decay_steps"):
        rlsd_lambda(0, decay_steps=0)
    with pytest.raises(ValueError, match="0-based"):
        rlsd_lambda(-1)


def test_gap_by_turn():
    gap = tensor([[1.0, 3.0, 99.0], [-2.0, 99.0, 99.0], [4.0, 0.0, 99.0]])
    mask = torch.tensor([[True, True, False], [True, False, False], [True, True, False]])
    means, counts = gap_by_turn(gap, mask, torch.tensor([0, 1, 0]), num_turns=3)
    # turn 0: (1 + 3 + 4 + 0) / 4 = 2; turn 1: −2; turn 2: no tokens
    torch.testing.assert_close(means, tensor([2.0, -2.0, 0.0]))
    torch.testing.assert_close(counts, tensor([4.0, 1.0, 0.0]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_gate_bins_are_tenths_closed_below_and_the_last_holds_one(dtype):
    gates = torch.tensor([0.0, 0.05, 0.1, 0.28, 0.3, 0.55, 0.7, 0.88, 0.9, 0.95, 1.0], dtype=dtype)
    assert gate_bin(gates).tolist() == [0, 0, 1, 2, 3, 5, 7, 8, 9, 9, 9]


def test_a_gate_baseline_without_a_gated_term_is_refused():
    from sdar.algorithms import settings_for_method
    from sdar.errors import ConfigError

    assert settings_for_method("sdar", gate_baseline=0.5).gate_baseline == 0.5
    for method in ("grpo", "skill_sd"):  # no distillation term; Skill-SD's k3 term has no gate
        with pytest.raises(ConfigError, match="gate_baseline=0.5 has no gated distillation term"):
            settings_for_method(method, gate_baseline=0.5)
