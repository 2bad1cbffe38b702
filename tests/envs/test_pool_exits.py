"""EnvPool: sys.exit() in env code ends only its episode; a KeyboardInterrupt stops the run, saying where."""

from __future__ import annotations

import logging
import sys

import pytest

from sdar.envs.pool import EnvPool

from .fakes import CounterEnv


class QuittingEnv(CounterEnv):
    """CounterEnv whose `exit` action calls sys.exit and whose `interrupt` action raises KeyboardInterrupt."""

    def step(self, action: str):
        if action == "exit":
            sys.exit("the env quit")
        if action == "interrupt":
            raise KeyboardInterrupt
        return super().step(action)


@pytest.mark.parametrize("workers", [0, 1])
def test_sys_exit_in_env_code_fails_only_that_episode(workers):
    with EnvPool(QuittingEnv, num_slots=2, num_workers=workers) as pool:
        pool.reset_many([(0, "x"), (1, "y")])
        quit, other = pool.step_many([(0, "exit"), (1, "a")])
        assert (quit.done, quit.won) == (True, False)
        assert quit.info["error"] == "step raised SystemExit: the env quit"
        assert other.observation == "y:1:a"  # the slot beside it kept its state
        lost = pool.step_many([(0, "a")])[0]
        assert lost.info["error"] == "episode state lost: step raised SystemExit: the env quit"
        task, again = pool.reset_many([(0, "x2")])[0]
        assert again.observation == "x2:0" and pool.step_many([(0, "win")])[0].won
        assert pool.restarts == 0  # no worker died


def test_keyboard_interrupt_in_an_in_process_env_stops_with_one_line(caplog):
    with EnvPool(QuittingEnv, num_slots=2, num_workers=0) as pool:
        pool.reset_many([(0, "x"), (1, "y")])
        with caplog.at_level(logging.ERROR, logger="sdar.envs.pool"), pytest.raises(KeyboardInterrupt):
            pool.step_many([(0, "a"), (1, "interrupt")])
        [record] = [r for r in caplog.records if r.name == "sdar.envs.pool"]
        message = record.getMessage()
        assert "\n" not in message
        assert "KeyboardInterrupt" in message and "step of env slot 1" in message
        assert "env.workers=0" in message
        # the interrupted slot's env is gone (its call was cut short); the other slot kept its state
        assert pool.step_many([(1, "a")])[0].info["error"] == (
            "episode state lost: step was interrupted (KeyboardInterrupt)"
        )
        assert pool.step_many([(0, "b")])[0].observation == "x:2:b"
        task, again = pool.reset_many([(1, "y2")])[0]
        assert again.observation == "y2:0"
