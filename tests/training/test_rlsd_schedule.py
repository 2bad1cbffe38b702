"""RLSD's λ schedule in a real run: the trainer's first update takes the release's first value."""

import pytest

from sdar.config import load_config
from sdar.training.trainer import Trainer

pytest.importorskip("alfworld")


def test_the_run_decays_lambda_to_zero_at_its_decay_steps_th_update(tmp_path):
    # decay_steps = 2: the release's λ is 0.5 · (1 − n/2) at its update n = 1, 2, i.e. 0.25 then 0.
    overrides = [
        "algorithm.method=rlsd",
        "algorithm.rlsd_decay_steps=2",
        "trainer.steps=2",
        "rollout.tasks_per_step=1",
        "rollout.group_size=2",
        "env.max_turns=2",
        "rollout.max_new_tokens=16",
        "trainer.save_every=0",
        "trainer.eval_at_ends=false",
    ]
    trainer = Trainer(load_config("smoke", overrides), tmp_path / "run")
    try:
        history = trainer.train()
    finally:
        trainer.close()
    assert [(metrics["step"], metrics["rlsd/lambda"]) for metrics in history] == [(1, 0.25), (2, 0.0)]
