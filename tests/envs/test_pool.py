"""EnvPool: ordering, parallel == sequential, failure isolation (raise, hang, crash), shutdown."""

from __future__ import annotations

import functools
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sdar.envs.policies import ExpertPolicy, run_episode
from sdar.envs.pool import EnvPool

from .fakes import CounterEnv


def scripted_run(pool: EnvPool, seed: int = 0) -> list:
    """Resets, then 6 rounds of steps on a random subset of slots in random order; every result observed."""
    rng = random.Random(seed)
    seen = [pool.reset_many([(slot, f"task{slot}") for slot in range(pool.num_slots)])]
    for _ in range(6):
        slots = rng.sample(range(pool.num_slots), k=rng.randint(1, pool.num_slots))
        requests = [(slot, rng.choice("ab")) for slot in slots]
        results = pool.step_many(requests)
        assert [r.observation.split(":")[0] for r in results] == [f"task{slot}" for slot in slots]  # in order
        seen.append([(r.observation, r.reward, r.done) for r in results])
    return seen


def strip_pids(rounds):
    first, *rest = rounds
    return [[(task, step.observation) for task, step in first], *rest]


@pytest.mark.parametrize("start_method", ["spawn", "forkserver"])
def test_parallel_results_equal_sequential_and_come_in_order(start_method):
    with EnvPool(CounterEnv, num_slots=5, num_workers=0) as local:
        expected = strip_pids(scripted_run(local))
    with EnvPool(CounterEnv, num_slots=5, num_workers=2, start_method=start_method) as pool:
        assert strip_pids(scripted_run(pool)) == expected
        pids = {r.info["pid"] for r in pool.step_many([(slot, "a") for slot in range(5)])}
        assert len(pids) == 2  # slots are spread over both workers


def test_workers_step_at_the_same_time():
    factory = functools.partial(CounterEnv, delay_s=0.3)
    with EnvPool(factory, num_slots=2, num_workers=2) as pool:
        pool.reset_many([(0, "x"), (1, "y")])
        pool.step_many([(0, "a"), (1, "a")])  # warm up: workers have imported everything
        started = time.monotonic()
        pool.step_many([(0, "a"), (1, "a")])
        assert time.monotonic() - started < 0.55  # two 0.3 s steps overlapped


@pytest.mark.parametrize("workers", [0, 2])
def test_exception_fails_only_that_slot_and_the_env_is_rebuilt(workers):
    with EnvPool(CounterEnv, num_slots=3, num_workers=workers) as pool:
        pool.reset_many([(0, "x"), (1, "y"), (2, "z")])
        bad, good, other = pool.step_many([(1, "raise"), (0, "a"), (2, "b")])
        assert (bad.done, bad.won) == (True, False) and "step failed on purpose" in bad.info["error"]
        assert good.observation == "x:1:a" and other.observation == "z:1:b"
        again = pool.step_many([(1, "a")])[0]
        assert again.done and "episode state lost" in again.info["error"]
        task, restarted = pool.reset_many([(1, "y2")])[0]
        assert task.task_id == "y2" and restarted.observation == "y2:0"
        assert pool.step_many([(0, "a")])[0].observation == "x:2:a"  # untouched slot kept its state
        task, failed = pool.reset_many([(2, "raise")])[0]
        assert task.task_id == "raise" and failed.done and "cannot reset" in failed.info["error"]
        assert pool.restarts == 0


def test_hung_worker_is_killed_restarted_and_other_workers_go_on():
    with EnvPool(CounterEnv, num_slots=4, num_workers=2, timeout_s=60) as pool:
        pool.reset_many([(slot, f"t{slot}") for slot in range(4)])
        old = pool._workers[1].process
        results = pool.step_many([(1, "hang"), (0, "a"), (2, "a"), (3, "a")], timeout_s=1.0)
        assert "timed out" in results[0].info["error"] and results[0].done
        assert "worker 1" in results[0].info["error"]
        assert [r.observation for r in results[1:3]] == ["t0:1:a", "t2:1:a"]  # worker 0: fine
        assert results[3].done and "error" in results[3].info  # same worker, after the hang: not answered
        assert not old.is_alive() and pool.restarts == 1
        lost = pool.step_many([(3, "a")])[0]
        assert "episode state lost" in lost.info["error"]
        assert pool.step_many([(0, "a")])[0].observation == "t0:2:a"
        pool.reset_many([(1, "again"), (3, "again3")])
        assert [r.observation for r in pool.step_many([(1, "b"), (3, "b")])] == ["again:1:b", "again3:1:b"]


def test_crashed_worker_is_reported_and_restarted():
    with EnvPool(CounterEnv, num_slots=2, num_workers=2, timeout_s=30) as pool:
        pool.reset_many([(0, "x"), (1, "y")])
        crashed, fine = pool.step_many([(0, "crash"), (1, "a")])
        assert crashed.done and "died" in crashed.info["error"] and fine.observation == "y:1:a"
        assert pool.restarts == 1
        pool.reset_many([(0, "x")])
        assert pool.step_many([(0, "win")])[0].won


def test_close_reaps_workers_and_context_manager():
    pool = EnvPool(CounterEnv, num_slots=2, num_workers=2)
    pool.reset_many([(0, "x"), (1, "y")])
    processes = [worker.process for worker in pool._workers]
    pool.close()
    pool.close()  # idempotent
    assert all(not p.is_alive() and p.exitcode is not None for p in processes)
    with pytest.raises(RuntimeError, match="closed"):
        pool.step_many([(0, "a")])
    with EnvPool(CounterEnv, num_slots=1, num_workers=1) as other:
        process = other._workers[0].process
    assert not process.is_alive() and process.exitcode is not None


def test_slot_env_view_task_ids_expert_and_argument_checks():
    with EnvPool(CounterEnv, num_slots=2, num_workers=1) as pool:
        assert pool.task_ids("train") == [f"train-{i}" for i in range(5)]
        outcome = run_episode(pool.env(1), ExpertPolicy(pool.env(1)), "solo")
        assert outcome.won and outcome.steps == 1
        pool.reset_many([(0, "a")])
        assert pool.expert_many([0, 1]) == ["win", "win"]
        stepped = pool.step_many([(0, "a")], with_expert=True)[0]
        assert stepped.info["expert_action"] == "win"
        with pytest.raises(IndexError):
            pool.step_many([(2, "a")])
    with pytest.raises(ValueError):
        EnvPool(CounterEnv, num_slots=0)
    with pytest.raises(ValueError, match="start_method"):
        EnvPool(CounterEnv, num_slots=1, start_method="fork")


def test_answers_of_an_interrupted_call_are_not_taken_for_the_next(monkeypatch):
    with EnvPool(CounterEnv, num_slots=2, num_workers=1) as pool:
        pool.reset_many([(0, "x"), (1, "y")])
        real_collect = pool._collect

        def interrupted(*args):
            monkeypatch.setattr(pool, "_collect", real_collect)
            raise KeyboardInterrupt

        monkeypatch.setattr(pool, "_collect", interrupted)
        with pytest.raises(KeyboardInterrupt):
            pool.step_many([(0, "a"), (1, "a")])  # sent, never collected
        results = pool.step_many([(1, "b"), (0, "b")])
        assert [r.observation for r in results] == ["y:2:b", "x:2:b"]


def test_a_pool_left_open_is_reaped_at_interpreter_exit(tmp_path):
    script = (
        "import functools\n"
        "from sdar.envs.pool import EnvPool\n"
        "from sdar.envs.alfworld.env import AlfworldEnv\n"
        "pool = EnvPool(functools.partial(AlfworldEnv, game_dirs=[]), num_slots=2, num_workers=2)\n"
        "print(' '.join(str(worker.process.pid) for worker in pool._workers), flush=True)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    pids = [int(pid) for pid in done.stdout.split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
        time.sleep(0.1)
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)


def test_workers_leave_when_the_parent_is_killed():
    script = (
        "import functools, os, signal\n"
        "from sdar.envs.pool import EnvPool\n"
        "from sdar.envs.alfworld.env import AlfworldEnv\n"
        "pool = EnvPool(functools.partial(AlfworldEnv, game_dirs=[]), num_slots=2, num_workers=2)\n"
        "print(' '.join(str(worker.process.pid) for worker in pool._workers), flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    pids = [int(pid) for pid in done.stdout.split()]
    assert len(pids) == 2 and done.returncode == -9
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
        time.sleep(0.1)
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)
