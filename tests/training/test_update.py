"""Micro-batches drop the columns that are padding in all their rows (`Batch.compact`) without changing
any log-prob: a row scored in a wide batch equals the row scored alone. `trainer.skip_zero_gradient`: a
mini-batch without gradient leaves AdamW's weights and moments as they were. `update_without_gradient` does
to the weights, moments and schedule what `policy_update` does on a batch without gradient. The update's
passes leave out the rows without gradient and make the update the passes over every row make. A one-pass
update that takes π_old from its own forward makes the update a separate old pass makes."""

import pytest
import torch

import sdar.training.update as update_module
from sdar.algorithms.objective import settings_from_config
from sdar.config import TrainerConfig, load_config
from sdar.models import load_model
from sdar.records import Batch, pack_sequences, pad_response
from sdar.training.update import (
    Learner,
    has_active_dropout,
    one_on_policy_pass,
    policy_update,
    score_batch,
    update_without_gradient,
)


def batch_of(prompts, responses, pad_token_id=0) -> Batch:
    input_ids, attention_mask, response_mask, start = pack_sequences(prompts, responses, pad_token_id)
    count = len(prompts)
    zeros = torch.zeros(count, dtype=torch.long)
    return Batch(input_ids, attention_mask, response_mask, start, torch.zeros(count), zeros, zeros, zeros)


def test_compact_drops_only_columns_that_are_padding_in_every_row():
    batch = batch_of([[5, 6, 7, 8, 9, 10], [5, 6], [7, 8, 9]], [[1, 2, 3, 4], [1], [2, 3]])
    batch.old_logprobs = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    short = batch.select([1, 2]).compact()  # prompts <= 3 tokens, responses <= 2 tokens
    assert short.input_ids.tolist() == [[0, 5, 6, 1, 0], [7, 8, 9, 2, 3]]
    assert short.response_start == 3 and short.response_mask.shape == (2, 2)
    assert short.old_logprobs.tolist() == [[4.0, 5.0], [8.0, 9.0]]
    assert batch.compact().input_ids.shape == batch.input_ids.shape  # nothing to drop
    assert pad_response(short.old_logprobs, 4).tolist() == [[4.0, 5.0, 0.0, 0.0], [8.0, 9.0, 0.0, 0.0]]


def test_scoring_in_compacted_micro_batches_equals_scoring_each_row_alone():
    torch.manual_seed(0)
    model, _ = load_model(load_config("smoke").model)
    generator = torch.Generator().manual_seed(3)
    lengths = [(40, 12), (6, 3), (9, 2), (31, 9), (5, 1), (12, 7)]
    prompts = [torch.randint(1, 200, (p,), generator=generator).tolist() for p, _ in lengths]
    responses = [torch.randint(1, 200, (r,), generator=generator).tolist() for _, r in lengths]
    together, _ = score_batch(model, batch_of(prompts, responses), micro_batch_rows=2)
    for row, (prompt, response) in enumerate(zip(prompts, responses, strict=True)):
        alone, _ = score_batch(model, batch_of([prompt], [response]), micro_batch_rows=1)
        width = len(response)
        torch.testing.assert_close(together[row, :width], alone[0, :width], atol=1e-5, rtol=0)
        assert torch.all(together[row, width:] == 0)


def grpo_model_and_batch(*, rows: int, prompt_tokens: int, response_tokens: int, seed: int):
    """The smoke preset's tiny model under GRPO without entropy or KL terms, and a batch of random rows with
    the model's own log-probs as π_old."""
    config = load_config(
        "smoke", ["algorithm.method=grpo", "algorithm.entropy_coef=0", "algorithm.kl_coef=0"]
    )
    torch.manual_seed(0)
    model, _ = load_model(config.model)
    generator = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(1, 200, (prompt_tokens,), generator=generator).tolist() for _ in range(rows)]
    responses = [torch.randint(1, 200, (response_tokens,), generator=generator).tolist() for _ in range(rows)]
    batch = batch_of(prompts, responses)
    batch.old_logprobs, _ = score_batch(model, batch, micro_batch_rows=rows)
    return config, model, batch


def updated_twice(skip_zero_gradient: bool, without_passes: bool = False) -> tuple[dict, dict, dict]:
    """A GRPO update with advantages, then one whose advantages are all zero (every group all won or all
    lost; no entropy or KL term), by `policy_update` or by `update_without_gradient`: the weights before and
    after the second, and its statistics with the optimizer's and the schedule's state after it."""
    config, model, batch = grpo_model_and_batch(rows=4, prompt_tokens=6, response_tokens=3, seed=5)
    batch.ref_logprobs = batch.teacher_logprobs = batch.old_logprobs
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=1e-2, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    settings = settings_from_config(config.algorithm)
    trainer = TrainerConfig(
        mini_batch_rows=4, micro_batch_rows=2, grad_clip=1.0, ppo_epochs=1, max_bad_updates=3,
        skip_zero_gradient=skip_zero_gradient,
    )  # fmt: skip

    def update(advantages: list[float]) -> dict:
        batch.advantages = torch.tensor(advantages)
        return policy_update(
            Learner(model, optimizer, scheduler), batch, objective=settings, trainer=trainer, step=0,
            generator=torch.Generator().manual_seed(0),
        )  # fmt: skip

    update([1.0, -1.0, 0.5, -0.5])
    before = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    if without_passes:
        batch.advantages = torch.zeros(4)
        stats = update_without_gradient(Learner(model, optimizer, scheduler), batch, trainer=trainer)
    else:
        stats = update([0.0, 0.0, 0.0, 0.0])
    after = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    stats["optimizer"], stats["scheduler"] = optimizer.state_dict(), scheduler.state_dict()
    return before, after, stats


def test_adamw_moves_the_weights_on_a_zero_gradient_unless_the_step_is_skipped():
    before, after, stats = updated_twice(skip_zero_gradient=False)
    assert stats["grad/norm"] == 0 and stats["update/optimizer_steps"] == 1
    assert "update/zero_gradient_skips" not in stats
    assert any(not torch.equal(before[name], after[name]) for name in before)  # momentum and weight decay
    before, after, stats = updated_twice(skip_zero_gradient=True)
    assert stats["update/optimizer_steps"] == 0 and stats["update/zero_gradient_skips"] == 1
    assert all(torch.equal(before[name], after[name]) for name in before)


def test_skipping_zero_gradients_leaves_every_update_with_a_gradient_as_it_was():
    plain, skipping = updated_twice(skip_zero_gradient=False), updated_twice(skip_zero_gradient=True)
    for name in plain[0]:
        assert torch.equal(plain[0][name], skipping[0][name])  # the first update, which had advantages


@pytest.mark.parametrize("skip_zero_gradient", [False, True])
def test_update_without_gradient_leaves_what_the_passes_would_have_left(skip_zero_gradient):
    _, passes_weights, passes = updated_twice(skip_zero_gradient)
    _, weights, without = updated_twice(skip_zero_gradient, without_passes=True)
    for name, value in passes_weights.items():
        assert torch.equal(weights[name], value)
    assert without["scheduler"] == passes["scheduler"]
    moments, passes_moments = without["optimizer"]["state"], passes["optimizer"]["state"]
    assert moments.keys() == passes_moments.keys()
    for index, state in moments.items():
        for key, value in state.items():
            assert torch.equal(value, passes_moments[index][key]), (index, key)
    for key in ("grad/norm", "update/optimizer_steps", "update/skipped_total", "objective/valid_tokens"):
        assert without[key] == passes[key], key
    assert without.get("update/zero_gradient_skips") == passes.get("update/zero_gradient_skips")


def grpo_update_with_zero_advantage_rows() -> tuple[dict, dict]:
    """A GRPO update (no entropy or KL term) of 6 rows, 3 of them with advantage 0, in 2 mini-batches: the
    weights after it, and its statistics."""
    config = load_config(
        "smoke", ["algorithm.method=grpo", "algorithm.entropy_coef=0", "algorithm.kl_coef=0"]
    )
    torch.manual_seed(0)
    model, _ = load_model(config.model)
    generator = torch.Generator().manual_seed(7)
    lengths = [(6, 3), (9, 5), (4, 2), (7, 4), (5, 6), (8, 1)]
    prompts = [torch.randint(1, 200, (p,), generator=generator).tolist() for p, _ in lengths]
    responses = [torch.randint(1, 200, (r,), generator=generator).tolist() for _, r in lengths]
    batch = batch_of(prompts, responses)
    batch.old_logprobs, _ = score_batch(model, batch, micro_batch_rows=6)
    batch.old_logprobs -= 0.05  # ratios away from 1, some clipped
    batch.advantages = torch.tensor([1.0, 0.0, -0.5, 0.0, 0.7, 0.0])
    # SGD: a step proportional to the gradient, so weights compare as closely as gradients do (AdamW would
    # magnify the rounding of elements with tiny gradients into steps as large as any).
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    stats = policy_update(
        Learner(model, optimizer, scheduler), batch, objective=settings_from_config(config.algorithm),
        trainer=TrainerConfig(mini_batch_rows=3, micro_batch_rows=2, grad_clip=1.0, ppo_epochs=2,
        max_bad_updates=3), step=0, generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}, stats


def test_leaving_out_rows_without_gradient_makes_the_update_over_every_row(monkeypatch):
    weights, stats = grpo_update_with_zero_advantage_rows()
    with monkeypatch.context() as patch:  # every row through the passes, as before the shortcut
        all_rows = lambda settings, advantages: torch.ones_like(advantages, dtype=torch.bool)  # noqa: E731
        patch.setattr(update_module, "rows_with_gradient", all_rows)
        every_row_weights, every_row = grpo_update_with_zero_advantage_rows()
    assert stats["update/rows_without_gradient"] == 3 and every_row["update/rows_without_gradient"] == 0
    assert stats["update/optimizer_steps"] == every_row["update/optimizer_steps"] == 4
    assert stats["objective/valid_tokens"] == every_row["objective/valid_tokens"] == 2 * 21
    # The same normalisers; micro-batches of other rows differ in padding, hence in float rounding.
    assert stats["grad/norm"] == pytest.approx(every_row["grad/norm"], rel=1e-4)
    for name, value in every_row_weights.items():
        torch.testing.assert_close(weights[name], value, atol=1e-6, rtol=0)


def one_pass_update(overrides: list[str], old_from_forward: bool, mini_batch_rows: int = 6):
    """One update of 6 rows of unequal lengths on the tiny model, in micro-batches of 2, with π_old from a
    separate scoring pass or from the update's own forward: (weights after it, its statistics, the batch)."""
    config = load_config("smoke", overrides)
    torch.manual_seed(0)
    model, _ = load_model(config.model)
    generator = torch.Generator().manual_seed(11)
    lengths = [(6, 3), (9, 5), (4, 2), (7, 4), (5, 6), (8, 1)]
    prompts = [torch.randint(1, 200, (p,), generator=generator).tolist() for p, _ in lengths]
    responses = [torch.randint(1, 200, (r,), generator=generator).tolist() for _, r in lengths]
    batch = batch_of(prompts, responses)
    scored, _ = score_batch(model, batch, micro_batch_rows=4)
    noise = torch.randn(scored.shape, generator=generator) * batch.response_mask
    batch.ref_logprobs = scored + 0.1 * noise
    batch.teacher_logprobs = scored + 0.3 * noise.roll(1, dims=0)
    batch.sampling_logprobs = scored - 0.8 * noise.abs()  # TIS weights of up to e^0.8 > C = 2: some truncated
    batch.advantages = torch.tensor([1.0, -0.5, 0.7, 0.0, -1.2, 0.4])
    if not old_from_forward:
        batch.old_logprobs = scored
    # SGD: a step proportional to the gradient, so the weights compare as closely as the gradients do.
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    stats = policy_update(
        Learner(model, optimizer, scheduler), batch, objective=settings_from_config(config.algorithm),
        trainer=TrainerConfig(mini_batch_rows=mini_batch_rows, micro_batch_rows=2, grad_clip=1.0,
        ppo_epochs=1, max_bad_updates=3), step=3, generator=torch.Generator().manual_seed(0),
        old_from_forward=old_from_forward,
    )  # fmt: skip
    weights = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    return weights, stats, batch


@pytest.mark.parametrize(
    "overrides",
    [
        ["algorithm.method=grpo"],  # KL and entropy terms on
        ["algorithm.method=sdar", "algorithm.gate=soft_or"],
        ["algorithm.method=skill_sd"],  # ρ = exp(logprobs − old) carries gradient
        ["algorithm.method=rlsd"],  # shaping reads teacher − old
        ["algorithm.method=grpo", "algorithm.rollout_correction=tis"],  # weights read old − sampler
    ],
)
def test_pi_old_from_the_update_forward_makes_the_update_a_separate_old_pass_makes(overrides):
    """Both paths give the same weights to 1e-6 (SGD, lr 0.1; the scoring and training forwards differ only
    in float rounding), the same statistics to 1e-5, and the update leaves the old pass's π_old behind."""
    weights, stats, batch = one_pass_update(overrides, old_from_forward=False)
    forward_weights, forward_stats, forward_batch = one_pass_update(overrides, old_from_forward=True)
    assert stats["grad/norm"] > 1e-3  # the weights moved: SGD, lr 0.1
    for name, value in weights.items():
        torch.testing.assert_close(forward_weights[name], value, atol=1e-6, rtol=0)
    assert forward_stats.keys() == stats.keys()
    for key, value in stats.items():
        assert forward_stats[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    assert forward_stats["policy/ratio_mean"] == 1.0  # the ratio against its own detached forward
    torch.testing.assert_close(forward_batch.old_logprobs, batch.old_logprobs, atol=1e-5, rtol=0)
    assert not forward_batch.old_logprobs[~batch.response_mask].any()


def test_the_update_forward_fills_only_the_rows_it_passes():
    """GRPO without KL or entropy: rows with advantage 0 get no pass; their π_old stays as it was."""
    overrides = ["algorithm.method=grpo", "algorithm.kl_coef=0", "algorithm.entropy_coef=0"]
    _, _, batch = one_pass_update(overrides, old_from_forward=False)
    _, stats, forward_batch = one_pass_update(overrides, old_from_forward=True)
    assert stats["update/rows_without_gradient"] == 1
    assert not forward_batch.old_logprobs[3].any()  # advantage 0: no pass
    rows = batch.advantages != 0
    torch.testing.assert_close(forward_batch.old_logprobs[rows], batch.old_logprobs[rows], atol=1e-5, rtol=0)


def test_pi_old_from_the_update_forward_is_refused_where_it_is_not_pi_old():
    with pytest.raises(ValueError, match="one on-policy pass"):
        one_pass_update(["algorithm.method=grpo"], old_from_forward=True, mini_batch_rows=3)


def test_one_on_policy_pass_needs_one_epoch_one_mini_batch_and_no_dropout():
    model, _ = load_model(load_config("smoke").model)
    batch = batch_of([[5, 6]] * 4, [[1, 2]] * 4)
    assert one_on_policy_pass(model, batch, mini_batch_rows=4, epochs=1)
    assert not one_on_policy_pass(model, batch, mini_batch_rows=3, epochs=1)  # 2 mini-batches
    assert not one_on_policy_pass(model, batch, mini_batch_rows=4, epochs=2)
    assert not has_active_dropout(model)
    model.config.attention_dropout = 0.1  # applied by rate inside the attention, without a module
    assert has_active_dropout(model) and not one_on_policy_pass(model, batch, mini_batch_rows=4, epochs=1)
    adapters = load_config("smoke", ["model.lora_rank=4", "model.lora_dropout=0.1"]).model
    assert has_active_dropout(load_model(adapters)[0])
    assert not has_active_dropout(load_model(load_config("smoke", ["model.lora_rank=4"]).model)[0])


def test_one_grpo_update_raises_the_rows_with_a_positive_advantage_and_lowers_the_others():
    """The whole update path (scoring, PPO surrogate, aggregation, AdamW) moves each row the way its
    advantage says: the check that no sign is lost between the advantages and the weights."""
    config, model, batch = grpo_model_and_batch(rows=6, prompt_tokens=8, response_tokens=5, seed=7)
    batch.advantages = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0, -1.0])
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=1e-3, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    trainer = TrainerConfig(mini_batch_rows=6, micro_batch_rows=3, grad_clip=1.0, ppo_epochs=1)
    policy_update(
        Learner(model, optimizer, scheduler), batch, objective=settings_from_config(config.algorithm),
        trainer=trainer, step=0, generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    after, _ = score_batch(model, batch, micro_batch_rows=6)
    change = ((after - batch.old_logprobs) * batch.response_mask).sum(-1)  # [6] summed over each response
    assert (change[batch.advantages > 0] > 0).all() and (change[batch.advantages < 0] < 0).all()
