"""Scripted evaluation: the expert's env calls get env.step_timeout_s, like every other env call."""

import functools
import time

from sdar.envs.pool import EnvPool
from sdar.evaluation.evaluate import play_scripted
from sdar.evaluation.panels import Panel

from .fakes import CounterEnv


def test_the_expert_waits_env_step_timeout_s_for_a_call():
    with EnvPool(functools.partial(CounterEnv, delay_s=6.0), num_slots=1, num_workers=1) as pool:
        pool.reset_many([(0, "warm-up")])  # the worker has started and imported everything
        panel = Panel(env="counter", split="test", task_ids=("test-0",), available=5)
        started = time.monotonic()
        [record] = play_scripted(pool, "expert", panel, seed=0, max_turns=3, timeout_s=1.0)
        waited = time.monotonic() - started
    assert not record.won and "timed out after 1 s on step_with_expert" in record.error
    assert waited < 5.0  # the 6 s step was not waited for
