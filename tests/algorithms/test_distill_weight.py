"""The distillation weight λ of a step: constant, and adaptive (ρ · mean policy push / mean distillation push,
capped, the configured λ without policy-gradient signal), summed over processes like the other normalisers."""

import socket

import pytest
import torch
import torch.multiprocessing

from sdar.algorithms import (
    DISTILL_WEIGHTS,
    PushSums,
    adaptive_distill_weight,
    distill_push_sums,
    settings_for_method,
    step_distill_weight,
)
from sdar.errors import ConfigError

SIGMOID_OF_1 = 0.7310585786300049  # σ(5 · 0.2)
SIGMOID_OF_MINUS_1 = 0.2689414213699951


def two_rows():
    """2 rows of 2 response tokens, the second row's last one padding: A = [1, −0.5] and
    Δ' = [[0, 0.2], [−0.2, ·]], so the gap gates (β = 5) are [[½, σ(1)], [σ(−1), ·]]."""
    old = torch.tensor([[-1.0, -1.0], [-1.0, -3.0]], dtype=torch.float64)
    teacher = torch.tensor([[-1.0, -0.8], [-1.2, 7.0]], dtype=torch.float64)  # the padding's Δ' is huge
    mask = torch.tensor([[True, True], [True, False]])
    advantages = torch.tensor([1.0, -0.5], dtype=torch.float64)
    return advantages, old, teacher, mask


def adaptive(**overrides):
    return settings_for_method("sdar", distill_weight="adaptive", **overrides)


def test_push_sums_hand_case():
    advantages, old, teacher, mask = two_rows()
    # Σ policy_coef·|A_t| = 2·1 + 1·0.5 = 2.5; Σ g_t = ½ + σ(1) + σ(−1) = 1.5
    policy, distill = distill_push_sums(adaptive(), advantages, old, teacher, mask)
    assert policy == 2.5
    assert distill == pytest.approx(0.5 + SIGMOID_OF_1 + SIGMOID_OF_MINUS_1, abs=1e-15)
    # with a gate baseline b = ½ the distillation push is |g − ½|: 0 + (σ(1) − ½) + (½ − σ(−1))
    _, distill = distill_push_sums(adaptive(gate_baseline=0.5), advantages, old, teacher, mask)
    assert distill == pytest.approx(SIGMOID_OF_1 - SIGMOID_OF_MINUS_1, abs=1e-15)
    # the policy-gradient term's coefficient scales its push; token advantages [N, T] read as they are
    policy, _ = distill_push_sums(
        adaptive(policy_coef=2.0), advantages[:, None].expand(2, 2), old, teacher, mask
    )
    assert policy == 5.0


def test_adaptive_weight_hand_case_and_clamp():
    advantages, old, teacher, mask = two_rows()
    # λ = ρ · (2.5 / 3) / (1.5 / 3) = 0.03 · 5/3 = 0.05, under λ_max = 1
    weight = step_distill_weight(adaptive(distill_weight_target=0.03), advantages, old, teacher, mask)
    assert weight == pytest.approx(0.05, rel=1e-12)
    # ρ = 0.09 would give 0.15: the cap
    capped = step_distill_weight(
        adaptive(distill_weight_target=0.09, distill_weight_max=0.1), advantages, old, teacher, mask
    )
    assert capped == 0.1


def test_without_policy_gradient_signal_the_weight_is_the_configured_constant():
    advantages, old, teacher, mask = two_rows()
    settings = adaptive(distill_coef=0.02, distill_weight_target=0.5)
    assert step_distill_weight(settings, torch.zeros(2, dtype=torch.float64), old, teacher, mask) == 0.02
    no_policy_term = adaptive(policy_coef=0.0, distill_coef=0.02)  # OPSD: never any policy push
    assert step_distill_weight(no_policy_term, advantages, old, teacher, mask) == 0.02
    assert adaptive_distill_weight(PushSums(1.0, 0.0), target=0.01, maximum=0.3, fallback=0.02) == 0.3


def test_constant_weight_is_the_configured_coefficient_and_reads_nothing():
    settings = settings_for_method("sdar", distill_coef=0.037)
    assert (
        step_distill_weight(settings, torch.ones(2), None, None, torch.ones(2, 2, dtype=torch.bool)) == 0.037
    )
    assert not settings.reads_old_before_update and adaptive().reads_old_before_update
    assert not DISTILL_WEIGHTS["constant"].reads_pushes


def test_grpo_opsd_pushes_by_one_half_per_token():
    advantages, old, teacher, mask = two_rows()
    settings = settings_for_method("grpo_opsd", distill_weight="adaptive", distill_weight_target=0.03)
    # Σ g = 3 · ½: λ = 0.03 · 2.5 / 1.5
    assert step_distill_weight(settings, advantages, old, teacher, mask) == pytest.approx(0.05, rel=1e-12)


def test_an_adaptive_weight_is_on_whenever_it_can_be_nonzero():
    assert adaptive(distill_coef=0.0).distilling  # the target and the cap still give a λ
    assert adaptive(distill_coef=0.0).needs_teacher
    assert not adaptive(distill_coef=0.0, distill_weight_target=0.0).distilling
    assert not settings_for_method("sdar", distill_coef=0.0).distilling


def test_an_adaptive_weight_needs_a_gate_known_before_the_update():
    with pytest.raises(ConfigError, match="algorithm.distill_weight='adaptive'.*gap"):
        adaptive(gate="entropy")
    with pytest.raises(ConfigError, match="skill_sd"):
        settings_for_method("skill_sd", distill_weight="adaptive")
    assert settings_for_method(
        "skill_sd", distill_weight="adaptive", distill_coef=0.0, distill_weight_target=0.0
    )


def test_an_adaptive_weight_without_old_logprobs_is_refused():
    advantages, old, teacher, mask = two_rows()
    with pytest.raises(ValueError, match="π_old"):
        step_distill_weight(adaptive(), advantages, None, teacher, mask)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _one_of_two_processes(rank: int, port: int, results) -> None:
    from sdar.training.distributed import DataParallel

    torch.distributed.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2
    )
    try:
        advantages, old, teacher, mask = two_rows()
        rows = slice(rank, rank + 1)  # process r holds row r
        parallel = DataParallel(rank=rank, world_size=2)
        results[rank] = step_distill_weight(
            adaptive(distill_weight_target=0.03),
            advantages[rows],
            old[rows],
            teacher[rows],
            mask[rows],
            sum_over_processes=parallel.sum,
        )
    finally:
        torch.distributed.destroy_process_group()


def test_two_processes_holding_one_row_each_get_the_weight_of_one_process_holding_both():
    advantages, old, teacher, mask = two_rows()
    alone = step_distill_weight(adaptive(distill_weight_target=0.03), advantages, old, teacher, mask)
    results = torch.multiprocessing.get_context("spawn").Manager().dict()
    torch.multiprocessing.spawn(_one_of_two_processes, args=(_free_port(), results), nprocs=2)
    assert results[0] == results[1] == pytest.approx(alone, rel=1e-15)
    # a process that weighed its own row alone would not: row 1 gives 0.03 · 0.5 / σ(−1)
    settings = adaptive(distill_weight_target=0.03)
    own_row = step_distill_weight(settings, advantages[1:], old[1:], teacher[1:], mask[1:])
    assert own_row == pytest.approx(0.03 * 0.5 / SIGMOID_OF_MINUS_1) and own_row != pytest.approx(alone)
