"""The trainer with several teachers (`teacher.contexts`) and an adaptive distillation weight: the update's λ,
one context equal to the one teacher, and two steps with two contexts on the toy env (tiny model, no data)."""

import json
import math
import sys

import pytest
import torch

import sdar.training.update as update_module
from sdar.algorithms import settings_for_method, step_distill_weight
from sdar.config import TrainerConfig, load_config
from sdar.errors import ConfigError
from sdar.models import load_model
from sdar.models.trained import STATE
from sdar.records import Batch, pack_sequences
from sdar.training.trainer import Trainer
from sdar.training.update import Learner, one_on_policy_pass, policy_update, score_batch

FAST = ["trainer.eval_at_ends=false", "rollout.max_new_tokens=16", "env.max_turns=4", "trainer.save_every=2"]
TWO_CONTEXTS = [
    "teacher.contexts.toy={}",
    "teacher.contexts.plain.weights=base",
    "teacher.contexts.plain.skills=false",
]


@pytest.fixture(autouse=True)
def without_the_alfworld_extra(monkeypatch):
    """The toy env needs no alfworld: importing it fails, as on an install without the extra."""
    for name in ("alfworld", "textworld"):
        monkeypatch.setitem(sys.modules, name, None)


def tiny_update_inputs():
    """The tiny model, its optimizer, and a batch of 4 rows with π_old, a teacher and advantages."""
    torch.manual_seed(0)
    model, _ = load_model(load_config("toy").model)
    generator = torch.Generator().manual_seed(7)
    prompts = [torch.randint(1, 200, (6,), generator=generator).tolist() for _ in range(4)]
    responses = [torch.randint(1, 200, (length,), generator=generator).tolist() for length in (3, 2, 3, 1)]
    input_ids, attention_mask, response_mask, start = pack_sequences(prompts, responses, 0)
    rows = torch.zeros(4, dtype=torch.long)
    batch = Batch(input_ids, attention_mask, response_mask, start, torch.zeros(4), rows, rows, rows)
    batch.old_logprobs, _ = score_batch(model, batch, micro_batch_rows=4)
    batch.teacher_logprobs = batch.old_logprobs + torch.tensor([[0.4], [-0.3], [0.1], [0.0]]) * response_mask
    batch.advantages = torch.tensor([1.0, -1.0, 0.5, -0.5])
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return Learner(model, optimizer, scheduler), batch


def update_seeing_objectives(monkeypatch, objective, **kwargs):
    """policy_update of the tiny batch, and the objective settings each micro-batch was computed under."""
    learner, batch = tiny_update_inputs()
    seen = []
    original = update_module.policy_objective

    def recording(*args, settings, **keywords):
        seen.append(settings)
        return original(*args, settings=settings, **keywords)

    monkeypatch.setattr(update_module, "policy_objective", recording)
    trainer = TrainerConfig(mini_batch_rows=4, micro_batch_rows=2, ppo_epochs=1)
    result = policy_update(
        learner, batch, objective=objective, trainer=trainer, step=0, generator=torch.Generator(), **kwargs
    )
    return result, seen, batch


def test_a_constant_weight_leaves_the_objective_as_it_is(monkeypatch):
    objective = settings_for_method("sdar")
    result, seen, _ = update_seeing_objectives(monkeypatch, objective)
    assert seen and all(settings is objective for settings in seen)  # the very settings: bit for bit
    assert result["distill/lambda"] == 0.01


def test_an_adaptive_weight_is_set_once_before_the_update_from_every_row(monkeypatch):
    objective = settings_for_method("sdar", distill_weight="adaptive", distill_weight_target=0.02)
    _, batch = tiny_update_inputs()
    expected = step_distill_weight(
        objective, batch.advantages, batch.old_logprobs, batch.teacher_logprobs, batch.response_mask
    )
    assert expected not in (0.01, 1.0) and 0 < expected < 1.0  # neither the fallback nor the cap
    result, seen, _ = update_seeing_objectives(monkeypatch, objective)
    assert len(seen) == 2 and all(settings.distill_coef == expected for settings in seen)
    assert result["distill/lambda"] == expected


def test_an_adaptive_weight_needs_pi_old_before_the_update(monkeypatch):
    objective = settings_for_method("sdar", distill_weight="adaptive")
    learner, batch = tiny_update_inputs()
    assert one_on_policy_pass(learner.model, batch, mini_batch_rows=4, epochs=1)
    assert not one_on_policy_pass(learner.model, batch, mini_batch_rows=4, epochs=1, objective=objective)
    with pytest.raises(ValueError, match="old_from_forward"):
        update_seeing_objectives(monkeypatch, objective, old_from_forward=True)


def train(tmp_path, *overrides, name="run"):
    trainer = Trainer(load_config("toy", [*FAST, *overrides]), tmp_path / name)
    try:
        return trainer.train(), tmp_path / name
    finally:
        trainer.close()


def test_two_steps_with_two_teachers_log_each_ones_share_and_gap(tmp_path):
    history, run_dir = train(tmp_path, *TWO_CONTEXTS, "algorithm.distill_weight=adaptive")
    assert [metrics["step"] for metrics in history] == [1, 2]
    for metrics in history:
        assert all(math.isfinite(value) for key, value in metrics.items() if key.startswith("loss/"))
        shares = [metrics[f"distill/teacher_{name}/share"] for name in ("toy", "plain")]
        assert all(0.0 <= share <= 1.0 for share in shares) and sum(shares) == pytest.approx(1.0)
        assert all(math.isfinite(metrics[f"distill/teacher_{name}/gap_mean"]) for name in ("toy", "plain"))
        assert metrics["distill/lambda"] > 0 and metrics["update/old_from_forward"] == 0
        assert sum(metrics[f"distill/gate_bin_{index}"] for index in range(10)) == pytest.approx(1.0)
    # the first step's `plain` teacher is the student itself (the initial weights, the student's prompt)
    assert history[0]["distill/teacher_plain/gap_mean"] == pytest.approx(0.0, abs=1e-5)
    sample = json.loads((run_dir / "samples.jsonl").read_text().splitlines()[0])
    assert sample["skills"].startswith("[toy]\n") and "[plain]\n(no privileged text" in sample["skills"]
    state = torch.load(run_dir / "checkpoints" / "step_000002" / STATE, weights_only=False)
    assert sorted(state["trainer"]["session"]["teachers"]) == ["base", "live"]


def test_one_context_trains_exactly_as_the_one_teacher(tmp_path):
    steps = ["trainer.steps=1"]
    plain, _ = train(tmp_path, *steps, name="one_teacher")
    routed, _ = train(tmp_path, *steps, "teacher.contexts.only={}", name="one_context")
    assert routed[0]["distill/teacher_only/share"] == 1.0
    shared = [key for key in plain[0] if key.startswith(("loss/", "distill/", "grad/", "policy/"))]
    assert len(shared) > 10
    assert {key: plain[0][key] for key in shared} == {key: routed[0][key] for key in shared}


def test_a_method_without_a_routing_term_is_refused_several_teachers(tmp_path):
    with pytest.raises(ConfigError, match="algorithm.method='rlsd'.*grpo_opsd, opsd"):
        train(tmp_path, *TWO_CONTEXTS, "algorithm.method=rlsd")
