"""`EnvPool`: N env instances (one per episode slot) run by W worker processes, behind a batched API.

The rollout keeps one slot per running episode and calls `reset_many([(slot, task_id), ...])` and
`step_many([(slot, action), ...])`; results come back in the order asked. Slot s lives in worker s % W, so a
batch over consecutive slots spreads evenly and different workers step their slots at the same time. Inside
a worker its slots run one after another, each on its own env built by `env_factory()` on first use.

Failures stay local to an episode:
- an exception inside an env call → that slot gets a failed StepResult (done, not won, `info["error"]`), its
  env is closed and rebuilt on next use; the worker and every other slot go on;
- a call that returns nothing within `timeout_s` (a hung engine) or a worker that dies (segfault, OOM kill)
  → the worker is killed and restarted; that call and the calls of that worker not yet answered get failed
  results; the other slots of that worker lost their env state too, so their next step fails as well
  (`info["error"]` says why) until they are reset. Slots on other workers are untouched.

`num_workers=0` runs the envs in this process: no isolation and no timeout (an exception, or a SystemExit, is
still caught; a KeyboardInterrupt, the user's Ctrl-C, stops the run after a one-line message), for debugging
and for envs that are too cheap to be worth a process. `num_workers >= 1` uses processes started with `spawn`
(or `forkserver`): never `fork`, which would copy a parent that may hold torch threads. `env_factory` must
be picklable (a module-level class or function, or a functools.partial of one). The pool is a context
manager, closes itself at interpreter exit, and reaps every worker it started.

`SlotPool` holds the batched API and the bookkeeping above; `sdar.envs.ray_pool.RayEnvPool` runs the same
slots on Ray actors instead of processes, with the same guarantees. `sdar.envs.executors.make_env_pool`
builds the one `env.executor` names (docs/env-workers.md).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from multiprocessing.connection import wait

from sdar.env_records import StepResult, Task
from sdar.envs.base import TextEnv

logger = logging.getLogger(__name__)

_CLOSE = "close"
_STEP_WITH_EXPERT = "step_with_expert"
_RESET_WITH_EXPERT = "reset_with_expert"
_RESETS = ("reset", _RESET_WITH_EXPERT)
_NEEDS_NO_EPISODE = (*_RESETS, "task_ids")


def failed_step(reason: str) -> StepResult:
    """The StepResult of an episode ended by an env failure."""
    return StepResult(observation="", done=True, won=False, info={"error": reason})


def _with_expert(env: TextEnv, result: StepResult) -> StepResult:
    if result.done:
        return result
    try:
        expert = env.expert_action()
    except Exception as error:
        return replace(result, info={**result.info, "expert_error": f"{type(error).__name__}: {error}"})
    return replace(result, info={**result.info, "expert_action": expert})


def _run_call(env: TextEnv, method: str, args: tuple):
    if method == _STEP_WITH_EXPERT:
        return _with_expert(env, env.step(*args))
    if method == _RESET_WITH_EXPERT:
        task, result = env.reset(*args)
        return task, _with_expert(env, result)
    return getattr(env, method)(*args)


class SlotEnvs:
    """The envs of one worker (or of the in-process pool), one per slot, rebuilt after a failure."""

    def __init__(self, env_factory: Callable[[], TextEnv]):
        self.env_factory = env_factory
        self.envs: dict[int, TextEnv] = {}
        self.broken: dict[int, str] = {}  # slot -> the failure that discarded its env mid-episode

    def call(self, slot: int, method: str, args: tuple) -> tuple[bool, object]:
        """(True, value) or (False, reason); never raises."""
        if method in _RESETS:
            self.broken.pop(slot, None)
        elif slot in self.broken and method not in _NEEDS_NO_EPISODE:
            return False, f"episode state lost: {self.broken[slot]}"
        try:
            if slot not in self.envs:
                self.envs[slot] = self.env_factory()
            return True, _run_call(self.envs[slot], method, args)
        except (Exception, SystemExit) as error:  # sys.exit() in env code ends its episode, not the run
            reason = f"{method} raised {type(error).__name__}: {error}"[:4000]
            self.discard(slot)
            if method != "task_ids":
                self.broken[slot] = reason
            return False, reason

    def discard(self, slot: int) -> None:
        env = self.envs.pop(slot, None)
        if env is not None:
            try:
                env.close()
            except Exception:
                logger.debug("closing the env of slot %d failed", slot, exc_info=True)

    def close(self) -> None:
        for slot in list(self.envs):
            self.discard(slot)


def _exit_with_parent(parent_pid: int) -> None:
    """A worker stuck in an engine cannot read the pipe's EOF: leave when the parent is gone."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent_pid:
            os._exit(0)


def _worker_main(connection, env_factory: Callable[[], TextEnv], parent_pid: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    envs = SlotEnvs(env_factory)
    try:
        while True:
            try:
                message = connection.recv()
            except (EOFError, OSError):
                break
            if message == _CLOSE:
                break
            call_id, batch = message
            for index, slot, method, args in batch:
                ok, value = envs.call(slot, method, args)
                try:
                    connection.send((call_id, index, ok, value))
                except (EOFError, OSError):
                    return
                except Exception as error:  # the value did not pickle
                    reason = f"{method} returned an unpicklable value: {error}"
                    connection.send((call_id, index, False, reason))
    finally:
        envs.close()


class _Worker:
    def __init__(self, context, env_factory: Callable[[], TextEnv]):
        self.connection, child = context.Pipe()
        self.process = context.Process(
            target=_worker_main, args=(child, env_factory, os.getpid()), daemon=True, name="sdar-env-worker"
        )
        self.process.start()
        child.close()

    def stop(self, graceful: bool = True) -> None:
        if graceful and self.process.is_alive():
            with contextlib.suppress(OSError, ValueError):
                self.connection.send(_CLOSE)
            self.process.join(timeout=5.0)
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5.0)
        self.connection.close()


def _shutdown(workers: list[_Worker | None]) -> None:
    for worker in workers:
        if worker is not None:
            try:
                worker.stop()
            except Exception:
                logger.debug("stopping an env worker failed", exc_info=True)
    workers.clear()


class SlotPool:
    """The batched API both executors share (this module's processes, `RayEnvPool`'s Ray actors).

    Slot s lives in worker s % W; answers come back in the order asked; a slot whose worker was lost fails
    until it is reset. A subclass runs each worker's calls (`_run`), replaces a lost worker
    (`_replace_worker`) and stops them all (`_shutdown`).
    """

    def __init__(self, num_slots: int, num_workers: int, timeout_s: float):
        if num_slots < 1 or num_workers < 0 or timeout_s <= 0:
            raise ValueError(
                f"need num_slots >= 1, num_workers >= 0, timeout_s > 0; got "
                f"{num_slots}, {num_workers}, {timeout_s}"
            )
        self.num_slots = num_slots
        self.num_workers = min(num_workers, num_slots)
        self.timeout_s = timeout_s
        self.restarts = 0
        self._lost: dict[int, str] = {}  # slot -> why its episode state is gone
        self._closed = False

    # ---- batched API -------------------------------------------------------------------------------------
    def reset_many(
        self,
        requests: Sequence[tuple[int, str]],
        *,
        with_expert: bool = False,
        timeout_s: float | None = None,
    ) -> list[tuple[Task, StepResult]]:
        """Reset each (slot, task_id); with_expert adds the first expert action as info["expert_action"]."""
        method = _RESET_WITH_EXPERT if with_expert else "reset"
        calls = [(slot, method, (task_id,)) for slot, task_id in requests]
        for slot, _ in requests:
            self._lost.pop(slot, None)
        outcomes = self._call_many(calls, timeout_s)
        results = []
        for (_, task_id), (ok, value) in zip(requests, outcomes, strict=True):
            results.append(value if ok else (Task(task_id, "", "", {}), failed_step(value)))
        return results

    def step_many(
        self,
        requests: Sequence[tuple[int, str]],
        *,
        with_expert: bool = False,
        timeout_s: float | None = None,
    ) -> list[StepResult]:
        """Step each (slot, action); with_expert adds the expert's next action to unfinished results."""
        method = _STEP_WITH_EXPERT if with_expert else "step"
        outcomes = self._call_many([(slot, method, (action,)) for slot, action in requests], timeout_s)
        return [value if ok else failed_step(value) for ok, value in outcomes]

    def expert_many(self, slots: Sequence[int], *, timeout_s: float | None = None) -> list[str | None]:
        """The expert's next action for each slot (None where there is none or the call failed)."""
        outcomes = self._call_many([(slot, "expert_action", ()) for slot in slots], timeout_s)
        return [value if ok else None for ok, value in outcomes]

    def task_ids(self, split: str) -> list[str]:
        """Task ids of a split, listed by slot 0's env."""
        ok, value = self._call_many([(0, "task_ids", (split,))], None)[0]
        if not ok:
            raise RuntimeError(f"listing split {split!r} failed: {value}")
        return value

    def env(self, slot: int) -> SlotEnv:
        """A TextEnv view of one slot (one call per method; use the *_many methods in hot loops)."""
        self._check_slot(slot)
        return SlotEnv(self, slot)

    def close(self) -> None:
        """Stop every worker and close its envs. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._shutdown()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ---- machinery ---------------------------------------------------------------------------------------
    def _check_slot(self, slot: int) -> None:
        if not 0 <= slot < self.num_slots:
            raise IndexError(f"slot {slot} out of range 0..{self.num_slots - 1}")

    def _call_many(self, calls: Sequence[tuple[int, str, tuple]], timeout_s: float | None) -> list[tuple]:
        """One (ok, value-or-reason) per call, in order."""
        if self._closed:
            raise RuntimeError(f"this {type(self).__name__} is closed")
        for slot, _, _ in calls:
            self._check_slot(slot)
        outcomes: list[tuple | None] = [None] * len(calls)
        batches: dict[int, list] = {}  # worker -> [(index, slot, method, args)], in the order asked
        for index, (slot, method, args) in enumerate(calls):
            if slot in self._lost and method not in _NEEDS_NO_EPISODE:
                outcomes[index] = (False, self._lost[slot])
                continue
            worker = slot % self.num_workers if self.num_workers else 0
            batches.setdefault(worker, []).append((index, slot, method, args))
        self._run(batches, outcomes, calls, self.timeout_s if timeout_s is None else timeout_s)
        return outcomes

    def _run(self, batches: dict[int, list], outcomes: list, calls, timeout_s: float) -> None:
        """Fill outcomes[index] for every (index, slot, method, args) of every worker's batch."""
        raise NotImplementedError

    def _fail_worker(
        self, worker: int, pending: dict[int, Iterable[int]], outcomes: list, reason: str
    ) -> None:
        """Fail the worker's unanswered calls, mark its slots' episodes lost, start a fresh worker."""
        logger.warning("%s; restarting it", reason)
        for index in pending.pop(worker, ()):
            outcomes[index] = (False, reason)
        for slot in range(worker, self.num_slots, self.num_workers):
            self._lost[slot] = f"episode state lost: {reason}"
        self._replace_worker(worker)
        self.restarts += 1

    def _replace_worker(self, worker: int) -> None:
        raise NotImplementedError

    def _shutdown(self) -> None:
        raise NotImplementedError


class EnvPool(SlotPool):
    """`num_slots` envs from `env_factory`, run by `num_workers` processes (0 = in this process)."""

    def __init__(
        self,
        env_factory: Callable[[], TextEnv],
        num_slots: int,
        num_workers: int = 1,
        timeout_s: float = 60.0,
        start_method: str = "spawn",
    ):
        super().__init__(num_slots, num_workers, timeout_s)
        if start_method not in ("spawn", "forkserver"):
            raise ValueError(f"start_method must be 'spawn' or 'forkserver', got {start_method!r}")
        self.env_factory = env_factory
        self._call_id = (
            0  # tags each batch, so answers of an interrupted call are never taken for a later one
        )
        self._local = SlotEnvs(env_factory) if self.num_workers == 0 else None
        self._context = multiprocessing.get_context(start_method)
        self._workers: list[_Worker | None] = [
            _Worker(self._context, env_factory) for _ in range(self.num_workers)
        ]
        self._finalizer = weakref.finalize(self, _shutdown, self._workers)

    def _run(self, batches: dict[int, list], outcomes: list, calls, timeout_s: float) -> None:
        if self._local is not None:
            for index, slot, method, args in batches.get(0, ()):
                try:
                    outcomes[index] = self._local.call(slot, method, args)
                except KeyboardInterrupt:  # Ctrl-C while the env ran: stop, saying where
                    self._local.discard(slot)  # its state is that of a call cut short
                    self._local.broken[slot] = f"{method} was interrupted (KeyboardInterrupt)"
                    logger.error(
                        "stopped by KeyboardInterrupt (Ctrl-C) during %s of env slot %d, which runs in this "
                        "process (env.workers=0)",
                        method,
                        slot,
                    )
                    raise
            return
        pending = {worker: {index for index, *_ in batch} for worker, batch in batches.items()}
        self._call_id += 1
        for worker, batch in batches.items():
            try:
                self._workers[worker].connection.send((self._call_id, batch))
            except (OSError, ValueError) as error:
                self._fail_worker(worker, pending, outcomes, f"env worker {worker} unreachable: {error}")
        self._collect(pending, outcomes, calls, timeout_s)

    def _collect(self, pending: dict[int, set[int]], outcomes: list, calls, timeout_s: float) -> None:
        """Gather answers; a worker silent for `timeout_s` since its last answer is killed and restarted."""
        last_answer = {worker: time.monotonic() for worker in pending}
        while pending:
            by_connection = {self._workers[w].connection: w for w in pending}
            deadline = min(last_answer[w] for w in pending) + timeout_s
            ready = wait(list(by_connection), timeout=max(0.0, deadline - time.monotonic()))
            for connection in ready:
                worker = by_connection[connection]
                try:
                    call_id, index, ok, value = connection.recv()
                except (EOFError, OSError) as error:
                    self._workers[worker].process.join(timeout=1.0)
                    code = self._workers[worker].process.exitcode
                    reason = f"env worker {worker} died (exit code {code}): {type(error).__name__}"
                    self._fail_worker(worker, pending, outcomes, reason)
                    continue
                if call_id != self._call_id:
                    continue  # a late answer to an interrupted earlier call
                outcomes[index] = (ok, value)
                pending[worker].discard(index)
                last_answer[worker] = time.monotonic()
                if not pending[worker]:
                    del pending[worker]
            now = time.monotonic()
            for worker in [w for w in pending if now - last_answer[w] >= timeout_s]:
                slot, method, _ = calls[min(pending[worker])]
                reason = f"env worker {worker} timed out after {timeout_s:.3g} s on {method} of slot {slot}"
                self._fail_worker(worker, pending, outcomes, reason)

    def _replace_worker(self, worker: int) -> None:
        self._workers[worker].stop(graceful=False)
        self._workers[worker] = _Worker(self._context, self.env_factory)

    def _shutdown(self) -> None:
        """Stop and reap every worker; close in-process envs."""
        if self._local is not None:
            self._local.close()
        self._finalizer()


class SlotEnv:
    """One pool slot seen as a TextEnv (close() is a no-op: the pool owns the env)."""

    def __init__(self, pool: SlotPool, slot: int):
        self.pool, self.slot = pool, slot

    def task_ids(self, split: str) -> list[str]:
        return self.pool.task_ids(split)

    def reset(self, task_id: str) -> tuple[Task, StepResult]:
        return self.pool.reset_many([(self.slot, task_id)])[0]

    def step(self, action: str) -> StepResult:
        return self.pool.step_many([(self.slot, action)])[0]

    def expert_action(self) -> str | None:
        return self.pool.expert_many([self.slot])[0]

    def close(self) -> None:
        pass
