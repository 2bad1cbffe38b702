"""The composed micro-batch objective: hand case, λ = 0 equals GRPO, gradients, micro-batching, methods."""

import pytest
import torch

from sdar.algorithms import (
    ObjectiveSettings,
    count_tokens_and_rows,
    policy_objective,
    settings_for_method,
)

SIGMOID_OF_1 = 0.7310585786300049


def make_batch(seed=0, rows=4, tokens=6):
    """Random float64 tensors of one micro-batch; the mask has unequal row lengths and one empty row."""
    generator = torch.Generator().manual_seed(seed)

    def rand(scale=1.0):
        return -scale * torch.rand(rows, tokens, generator=generator, dtype=torch.float64)

    logprobs = rand(2.0)
    lengths = torch.tensor([6, 2, 0, 4, 5, 1, 3, 6])[:rows]
    return {
        "logprobs": logprobs.clone().requires_grad_(True),
        "old_logprobs": logprobs + 0.3 * torch.randn(rows, tokens, generator=generator, dtype=torch.float64),
        "ref_logprobs": rand(2.0),
        "teacher_logprobs": rand(2.0),
        "entropy": torch.rand(rows, tokens, generator=generator, dtype=torch.float64).requires_grad_(True),
        "advantages": torch.randn(rows, generator=generator, dtype=torch.float64),
        "response_mask": torch.arange(tokens)[None, :] < lengths[:, None],
    }


def run(batch, settings, **kwargs):
    return policy_objective(
        batch["logprobs"],
        batch["old_logprobs"],
        batch["ref_logprobs"],
        batch["teacher_logprobs"],
        batch["entropy"],
        batch["advantages"],
        batch["response_mask"],
        settings=settings,
        **kwargs,
    )


def gradient(loss, batch):
    (grad,) = torch.autograd.grad(loss, batch["logprobs"], retain_graph=True)
    return grad


def test_objective_hand_case():
    # ratio 1, A = 1 -> policy −1; ref = logprobs -> k3 = 0; H = mean(0.5, 1.5) = 1;
    # Δ = [0, 0.2] -> gate [0.5, σ(1)] -> L_sdar = (0 + 0.2·σ(1)) / 2 = 0.0731058579
    batch = {
        "logprobs": torch.tensor([[-1.0, -1.0]], dtype=torch.float64, requires_grad=True),
        "old_logprobs": torch.tensor([[-1.0, -1.0]], dtype=torch.float64),
        "ref_logprobs": torch.tensor([[-1.0, -1.0]], dtype=torch.float64),
        "teacher_logprobs": torch.tensor([[-1.0, -0.8]], dtype=torch.float64),
        "entropy": torch.tensor([[0.5, 1.5]], dtype=torch.float64),
        "advantages": torch.tensor([1.0], dtype=torch.float64),
        "response_mask": torch.tensor([[True, True]]),
    }
    loss, stats = run(batch, settings_for_method("sdar"))
    # L = −1 − 0.001·1 + 0.01·0 + 0.01·0.0731058579 = −1.000268941421
    assert loss.item() == pytest.approx(-1.000268941421, abs=1e-12)
    assert stats["loss/policy"].item() == pytest.approx(-1.0)
    assert stats["loss/entropy"].item() == pytest.approx(1.0)
    assert stats["loss/kl"].item() == pytest.approx(0.0)
    assert stats["loss/distill"].item() == pytest.approx(0.0731058579, abs=1e-10)
    assert stats["distill/gate_mean"].item() == pytest.approx((0.5 + SIGMOID_OF_1) / 2)
    assert stats["distill/gate_off_half_ratio"].item() == 0.5  # σ(1) is 0.23 from ½, the other gate is ½
    assert stats["distill/gap_mean"].item() == pytest.approx(0.1)
    assert stats["distill/gap_std"].item() == pytest.approx(0.1)
    assert stats["distill/positive_gap_ratio"].item() == pytest.approx(0.5)
    assert stats["policy/clip_fraction"].item() == 0.0 and stats["policy/ratio_mean"].item() == 1.0


def test_stats_are_detached_scalars():
    _, stats = run(make_batch(), settings_for_method("sdar"))
    for name, value in stats.items():
        assert isinstance(value, torch.Tensor) and value.dim() == 0 and not value.requires_grad, name


def test_distill_coef_zero_equals_grpo_loss_and_gradient():
    batch = make_batch()
    grpo_loss, grpo_stats = run({**batch, "teacher_logprobs": None}, settings_for_method("grpo"))
    sdar_loss, _ = run(batch, settings_for_method("sdar", distill_coef=0.0))
    assert torch.equal(sdar_loss, grpo_loss)
    assert torch.equal(gradient(sdar_loss, batch), gradient(grpo_loss, batch))
    assert "loss/distill" not in grpo_stats and "distill/gap_mean" not in grpo_stats


def test_grpo_logs_the_gap_but_no_distill_loss_when_a_teacher_is_given():
    _, stats = run(make_batch(), settings_for_method("grpo"))
    assert "distill/gap_mean" in stats and "loss/distill" not in stats and "distill/gate_mean" not in stats


def test_sdar_gradient_is_minus_gate_over_valid_tokens():
    batch = make_batch()
    mask = batch["response_mask"]
    only_sdar = settings_for_method("sdar", policy_coef=0.0, kl_coef=0.0, entropy_coef=0.0, distill_coef=1.0)
    loss, _ = run(batch, only_sdar)
    gate = torch.sigmoid(5.0 * (batch["teacher_logprobs"] - batch["logprobs"].detach()))
    expected = torch.where(mask, -gate / mask.sum(), torch.zeros_like(gate))
    torch.testing.assert_close(gradient(loss, batch), expected)
    # and inside the full objective it adds exactly −λ·g/N to the GRPO gradient
    sdar_loss, _ = run(batch, settings_for_method("sdar"))
    grpo_loss, _ = run(batch, settings_for_method("grpo"))
    torch.testing.assert_close(gradient(sdar_loss, batch) - gradient(grpo_loss, batch), 0.01 * expected)


def test_grpo_opsd_gate_mean_is_exactly_one_half():
    _, stats = run(make_batch(), settings_for_method("grpo_opsd"))
    assert stats["distill/gate_mean"].item() == 0.5 and stats["distill/gate_off_half_ratio"].item() == 0.0


@pytest.mark.parametrize(
    ("method", "gate", "reads_the_teacher"),
    [
        ("grpo_opsd", "gap", False),
        ("sdar", "entropy", False),
        ("sdar", "gap", True),
        ("sdar", "soft_or", True),
    ],
)
def test_only_a_gate_that_reads_the_gap_lets_the_teacher_into_the_gradient(method, gate, reads_the_teacher):
    """The term's gradient is −λ·g_t·∇log π_θ / N: the teacher's log-probs enter it only through g_t. With
    g ≡ ½ (GRPO+OPSD) or the entropy gate, a wrong teacher and a right one give the same update; only the
    logged loss differs."""
    batch = make_batch()
    other_teacher = {**batch, "teacher_logprobs": batch["teacher_logprobs"] - 1.5}  # rejects every token more
    settings = settings_for_method(method, gate=gate, distill_coef=1.0)
    loss, stats = run(batch, settings, vocab_size=4)
    other_loss, other_stats = run(other_teacher, settings, vocab_size=4)
    assert stats["loss/distill"].item() != other_stats["loss/distill"].item()
    same = torch.equal(gradient(loss, batch), gradient(other_loss, batch))
    assert same is not reads_the_teacher


def test_opsd_has_no_policy_term():
    batch = make_batch()
    loss, stats = run(batch, settings_for_method("opsd"))
    assert "loss/policy" not in stats and "policy/clip_fraction" not in stats
    flipped, _ = run({**batch, "advantages": -5 * batch["advantages"]}, settings_for_method("opsd"))
    assert torch.equal(loss, flipped)
    # OPSD = SDAR minus its policy term
    sdar_loss, sdar_stats = run(batch, settings_for_method("sdar"))
    torch.testing.assert_close(loss, sdar_loss - sdar_stats["loss/policy"])


@pytest.mark.parametrize("aggregation", ["token-mean", "seq-mean-token-mean", "constant"])
def test_micro_batched_objective_equals_full_batch(aggregation):
    batch = make_batch(rows=8)
    settings = settings_for_method("sdar", aggregation=aggregation, aggregation_constant=6.0)
    num_tokens, num_rows = count_tokens_and_rows(batch["response_mask"])
    full, _ = run(batch, settings)
    micro_total = 0.0
    for rows in (slice(0, 3), slice(3, 8)):
        part = {key: None if value is None else value[rows] for key, value in batch.items()}
        micro, _ = policy_objective(
            *(
                part[key]
                for key in ("logprobs", "old_logprobs", "ref_logprobs", "teacher_logprobs", "entropy")
            ),
            part["advantages"],
            part["response_mask"],
            settings=settings,
            num_tokens=num_tokens,
            num_rows=num_rows,
        )
        micro_total = micro_total + micro
    torch.testing.assert_close(micro_total, full)
    torch.testing.assert_close(gradient(micro_total, batch), gradient(full, batch))


def test_rlsd_after_decay_equals_grpo_and_differs_before():
    batch = make_batch()
    grpo_loss, _ = run(batch, settings_for_method("grpo"))
    decayed, stats = run(batch, settings_for_method("rlsd"), step=100)
    assert stats["rlsd/lambda"].item() == 0.0
    assert torch.equal(decayed, grpo_loss)
    assert torch.equal(gradient(decayed, batch), gradient(grpo_loss, batch))
    early, _ = run(batch, settings_for_method("rlsd"), step=0)
    assert not torch.allclose(early, grpo_loss)


def test_skill_sd_adds_its_term():
    batch = make_batch()
    loss, stats = run(batch, settings_for_method("skill_sd"))
    grpo_loss, _ = run(batch, settings_for_method("grpo"))
    torch.testing.assert_close(loss, grpo_loss + 0.001 * stats["loss/distill"])
    assert "distill/gate_mean" not in stats


def test_teacher_terms_require_teacher_logprobs():
    batch = {**make_batch(), "teacher_logprobs": None}
    for method in ("sdar", "grpo_opsd", "opsd", "skill_sd", "rlsd"):
        with pytest.raises(ValueError, match="teacher_logprobs"):
            run(batch, settings_for_method(method))
    run(batch, settings_for_method("skill_grpo"))


def test_optional_kl_and_entropy_inputs_are_skipped_when_missing():
    batch = {**make_batch(), "ref_logprobs": None, "entropy": None}
    _, stats = run(batch, settings_for_method("sdar"))
    assert "loss/kl" not in stats and "loss/entropy" not in stats and "loss/policy" in stats


def test_entropy_gate_needs_vocab_size():
    batch = make_batch()
    settings = settings_for_method("sdar", gate="soft_or")
    with pytest.raises(ValueError, match="entropy"):
        run(batch, settings)
    _, stats = run(batch, settings, vocab_size=4)
    assert 0.0 < stats["distill/gate_mean"].item() < 1.0


def test_settings_validation():
    with pytest.raises(ValueError, match="gate"):
        ObjectiveSettings(gate="hard")
    with pytest.raises(ValueError, match="aggregation_constant"):
        ObjectiveSettings(aggregation="constant")
    with pytest.raises(ValueError, match="dual_clip"):
        ObjectiveSettings(dual_clip=1.0)
    with pytest.raises(KeyError):
        settings_for_method("ppo")


@pytest.mark.parametrize("coefficients", [{}, {"kl_coef": 0.0, "entropy_coef": 0.0}])
def test_has_gradient_is_false_exactly_where_the_objective_has_no_gradient(coefficients):
    """All advantages 0: no gradient for the methods whose only term left is the policy gradient."""
    from sdar.algorithms import METHODS, has_gradient

    without_gradient = []
    for name in METHODS:
        settings = settings_for_method(name, **coefficients)
        batch = make_batch()
        batch["advantages"] = torch.zeros_like(batch["advantages"])
        loss, _ = run(batch, settings)
        grads = torch.autograd.grad(loss, [batch["logprobs"], batch["entropy"]], allow_unused=True)
        zero = all(grad is None or not grad.any() for grad in grads)
        assert has_gradient(settings, batch["advantages"]) == (not zero), name
        if zero:
            without_gradient.append(name)
        assert has_gradient(settings, make_batch()["advantages"])  # advantages that are not all 0
    expected = [] if not coefficients else ["grpo", "rlsd", "skill_grpo"]
    assert sorted(without_gradient) == expected


@pytest.mark.parametrize("coefficients", [{}, {"kl_coef": 0.0, "entropy_coef": 0.0}])
def test_rows_with_gradient_leaves_out_only_rows_without_one(coefficients):
    """Some advantages 0: a row marked without gradient has none on any of its tokens, under every method;
    with the policy gradient as the only term exactly the rows with advantage 0 are marked."""
    from sdar.algorithms import METHODS, rows_with_gradient

    for name in METHODS:
        settings = settings_for_method(name, **coefficients)
        batch = make_batch(rows=8)
        batch["advantages"][[1, 4, 6]] = 0.0
        loss, _ = run(batch, settings)
        grads = torch.autograd.grad(loss, [batch["logprobs"], batch["entropy"]], allow_unused=True)
        rows = rows_with_gradient(settings, batch["advantages"])
        for grad in grads:
            if grad is not None:
                assert not grad[~rows].any(), name
        only_policy_gradient = coefficients and name in ("grpo", "rlsd", "skill_grpo")
        assert rows.tolist() == [not only_policy_gradient or row not in (1, 4, 6) for row in range(8)], name


def test_gate_histogram_gives_the_share_of_valid_tokens_in_each_tenth_of_the_gate():
    # β = 5: Δ = [−1, −0.2, 0] -> g = [σ(−5), σ(−1), ½] in bins 0, 2, 5; Δ = [0.2, 1] -> [σ(1), σ(5)] in 7, 9;
    # the masked token (Δ = 0.2) counts nowhere.
    logprobs = torch.zeros(2, 3, dtype=torch.float64)
    teacher = torch.tensor([[-1.0, -0.2, 0.0], [0.2, 1.0, 0.2]], dtype=torch.float64)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    batch = {
        "logprobs": logprobs.requires_grad_(True),
        "old_logprobs": logprobs.detach(),
        "ref_logprobs": None,
        "teacher_logprobs": teacher,
        "entropy": None,
        "advantages": torch.tensor([1.0, -1.0], dtype=torch.float64),
        "response_mask": mask,
    }
    _, stats = run(batch, settings_for_method("sdar"))
    shares = [stats[f"distill/gate_bin_{index}"].item() for index in range(10)]
    fifth = torch.tensor(0.2).item()  # 1/5 as the float32 the shares are counted in
    assert shares == [fifth, 0.0, fifth, 0.0, 0.0, fifth, 0.0, fifth, 0.0, fifth]
    _, stats = run(batch, settings_for_method("grpo_opsd"))  # every gate ½
    assert [stats[f"distill/gate_bin_{index}"].item() for index in range(10)] == [0.0] * 5 + [1.0] + [0.0] * 4
    _, stats = run(batch, settings_for_method("grpo"))
    assert not any(key.startswith("distill/gate_bin") for key in stats)
