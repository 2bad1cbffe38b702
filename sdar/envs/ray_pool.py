"""`RayEnvPool`: EnvPool's slots on Ray actors, so the env instances spread over the CPUs of a Ray cluster.

The API and the guarantees are `sdar.envs.pool.SlotPool`'s, as `EnvPool` gives them: slot s lives on actor
s % W, its env built by `env_factory()` on first use and rebuilt after a failure (`SlotEnvs`, the same code
the worker processes run); results come back in the order asked. W = `num_workers` actors, each reserving
`CPUS_PER_ACTOR` CPU of the cluster; every env call is one actor task, and an actor runs its tasks one at a
time in the order they were submitted, so a slot's calls never overtake each other.

Failures stay local to an episode, as in EnvPool:
- an exception inside an env call → that slot gets a failed StepResult (`failed_step`), its env is rebuilt on
  next use; the actor and every other slot go on;
- a call not answered within `timeout_s` of the actor's previous answer, or an actor that dies (its process
  killed, its machine lost) → the actor is killed (`ray.kill`) and replaced by a fresh one; that call and the
  actor's unanswered calls fail; its other slots lost their env state, so their next step fails as well
  (`info["error"]` says why) until they are reset. Slots on other actors are untouched.

Ray: if this process is connected already, the pool uses that connection; otherwise `ray.init(address)`:
"" joins the cluster RAY_ADDRESS names or the last `ray start` on this machine recorded, else starts a local
instance; "auto" or "host:port" joins a cluster started with `ray start --head`. Joining gives up after about
10 s (Ray's own connect knobs, `JOIN_KNOBS`; without them Ray retries for many minutes) with a `RayPoolError`
that names the address. Ray is imported here only, when a pool is built. A pool that started Ray shuts it
down only if the pool itself fails to start; otherwise Ray stops at interpreter exit.

Every machine of the cluster must have sdar and the env's data installed at the same paths. The actors
prepend this process's sys.path entries that exist on their machine, so a plugin env (`plugins: [x.py]`)
is importable there as in a spawned worker process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import sys
import time
import weakref
from collections import deque
from collections.abc import Callable

from sdar.envs.base import TextEnv
from sdar.envs.pool import SlotEnvs, SlotPool
from sdar.errors import ActionableError

logger = logging.getLogger(__name__)

INSTALL_HINT = "env.executor=ray needs Ray, which this environment lacks: pip install 'sdar[ray]'"
CPUS_PER_ACTOR = 1.0  # env steps are single-threaded Python (ALFWorld's engine, BM25 search)
# Ray's connect knobs while joining a cluster, unless already set in the environment: one attempt instead of
# 20 (RAY_gcs_server_port_wait_time_s), 2 s to open the connection and 5 s for the head's first answer
# instead of 5 s and 30 s. Measured: 127.0.0.1:1 fails after 10 s with these, after > 200 s without.
JOIN_KNOBS = {
    "RAY_gcs_server_port_wait_time_s": "1",
    "RAY_gcs_rpc_server_connect_timeout_s": "2",
    "RAY_py_gcs_connect_timeout_s": "5",
}
CLOSE_GRACE_S = 5.0  # close() lets the actors close their envs this long before killing them


class RayPoolError(ActionableError):
    """Ray is missing, its cluster cannot be joined, or the env actors cannot start; the message says why."""


def import_ray():
    try:
        import ray
    except ImportError as error:
        raise RayPoolError(f"{INSTALL_HINT} (import failed: {error})") from None
    return ray


def _one_line(error: BaseException, limit: int = 600) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:limit]}"


@contextlib.contextmanager
def _join_knobs():
    """JOIN_KNOBS in os.environ while Ray connects (the user's own values win); removed again after."""
    added = {key: value for key, value in JOIN_KNOBS.items() if key not in os.environ}
    os.environ.update(added)
    try:
        ray = import_ray()
        _reload_ray_config(ray)
        yield ray
    finally:
        for key in added:
            os.environ.pop(key, None)


def _reload_ray_config(ray) -> None:
    """Make Ray's C++ config read the knobs: it reads the environment when `ray` is first imported (vLLM
    imports it early), and again on `Config.initialize`, which Ray itself calls to the same end."""
    try:
        from ray._raylet import Config
    except ImportError:
        logger.debug(
            "ray %s has no _raylet.Config: the connect knobs apply from import only", ray.__version__
        )
        return
    Config.initialize("")


def connect_ray(address: str):
    """The `ray` module, connected: the current connection, else ray.init(address) ('' = local instance)."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    target = _join_target(address)
    try:
        if target is not None:
            with _join_knobs():
                ray.init(address=address or None)
        else:
            ray.init()
    except Exception as error:
        with contextlib.suppress(Exception):
            ray.shutdown()  # whatever ray.init started before it failed
        raise _connect_error(error, target) from None
    return ray


def _join_target(address: str) -> tuple[str, str] | None:
    """(what ray.init(address or None) will join, what else to do) in words; None: it starts a local instance.

    Ray joins, in this order: the address given, RAY_ADDRESS, the address the last `ray start` on this machine
    recorded (left behind when that cluster is killed: joining it then fails like any unreachable address)."""
    if address:
        return f"env.ray_address={address!r}", "or set env.ray_address='' to start Ray on this machine"
    if os.environ.get("RAY_ADDRESS"):
        return (
            f"RAY_ADDRESS={os.environ['RAY_ADDRESS']!r}",
            "or unset RAY_ADDRESS to start Ray on this machine",
        )
    try:
        from ray._private.utils import get_ray_address_file, read_ray_address

        recorded, where = read_ray_address(), get_ray_address_file(None)
    except (ImportError, AttributeError, OSError):
        return None
    if not recorded:
        return None
    return (
        f"{recorded}, the address the last `ray start` on this machine left in {where}",
        "or, if that cluster is gone, `ray stop` or delete that file so that Ray starts anew here",
    )


def _root_cause(error: BaseException) -> str:
    """The last line of the innermost cause: ray.init's own message hides it (e.g. a refused auth token)."""
    while error.__cause__ is not None:
        error = error.__cause__
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return " ".join((lines[-1] if lines else type(error).__name__).split())[:400]


def _connect_error(error: Exception, target: tuple[str, str] | None) -> RayPoolError:
    cause = _root_cause(error)
    if target is None:
        return RayPoolError(
            f"could not start a local Ray instance ({_one_line(error, 300)}; {cause}); check `ray status` "
            "and the logs under /tmp/ray, or join a running cluster with env.ray_address"
        )
    where, otherwise = target
    if "AuthenticationError" in cause or "InvalidAuthToken" in cause:
        return RayPoolError(
            f"the Ray cluster at {where} wants its auth token ({cause.split('. ')[0]}); Ray sends it to an "
            "explicit address only under RAY_AUTH_MODE=token: export RAY_AUTH_MODE=token, with the head's "
            "token (`ray get-auth-token` there) in ~/.ray/auth_token or RAY_AUTH_TOKEN"
        )
    return RayPoolError(
        f"could not join the Ray cluster at {where} ({_one_line(error, 300)}; {cause}); check that "
        "`ray start --head` runs there with the same Ray and Python versions and that its port (6379 by "
        f"default) is reachable from this machine, {otherwise}"
    )


class _EnvActor:
    """One env worker on a Ray node: the envs of its slots (`SlotEnvs`), one call at a time."""

    def __init__(self, env_factory_pickle: bytes, search_path: list[str]):
        for entry in reversed(search_path):
            if entry not in sys.path and os.path.isdir(entry):
                sys.path.insert(0, entry)
        self.envs = SlotEnvs(pickle.loads(env_factory_pickle))

    def call(self, slot: int, method: str, args: tuple) -> tuple[bool, object]:
        return self.envs.call(slot, method, args)

    def pid(self) -> int:
        return os.getpid()

    def close(self) -> None:
        self.envs.close()


def _stop_actors(ray, actors: list, grace_s: float) -> None:
    """Let each actor close its envs for up to grace_s, then kill it. Safe after Ray shut down."""
    live = [actor for actor in actors if actor is not None]
    actors.clear()
    if not live or not ray.is_initialized():
        return
    try:
        closing = [actor.close.remote() for actor in live]
        ray.wait(closing, num_returns=len(closing), timeout=grace_s)
    except Exception:
        logger.debug("closing the env actors failed", exc_info=True)
    for actor in live:
        with contextlib.suppress(Exception):
            ray.kill(actor, no_restart=True)


class RayEnvPool(SlotPool):
    """`num_slots` envs from `env_factory`, run by `num_workers` Ray actors (Ray at `address`, see above)."""

    def __init__(
        self,
        env_factory: Callable[[], TextEnv],
        num_slots: int,
        num_workers: int = 1,
        timeout_s: float = 60.0,
        *,
        address: str = "",
    ):
        super().__init__(num_slots, num_workers, timeout_s)
        if self.num_workers < 1:
            raise ValueError("RayEnvPool needs num_workers >= 1 (Ray actors); got 0")
        self.env_factory = env_factory
        try:
            self._factory_pickle = pickle.dumps(env_factory)
        except Exception as error:
            raise ValueError(
                f"env_factory must be picklable (a module-level class or function, or a functools.partial "
                f"of one): {_one_line(error)}"
            ) from None
        started_ray = not import_ray().is_initialized()
        self._ray = ray = connect_ray(address)
        self._actors: list = []
        self._finalizer = weakref.finalize(self, _stop_actors, ray, self._actors, CLOSE_GRACE_S)
        try:
            self._check_cpus()
            self._actor_class = ray.remote(num_cpus=CPUS_PER_ACTOR, max_restarts=0)(_EnvActor)
            self._search_path = [entry for entry in sys.path if entry and os.path.isdir(entry)]
            self._actors.extend(self._new_actor() for _ in range(self.num_workers))
            self._wait_until_started()
        except BaseException:
            self._closed = True
            self._finalizer()
            if started_ray:
                ray.shutdown()  # the connection this pool made, and a local instance it started, go too
            raise

    def _check_cpus(self) -> None:
        """Actors the cluster has no CPUs for would wait forever and time out every call: refuse up front."""
        cpus = self._ray.cluster_resources().get("CPU", 0.0)
        if cpus < self.num_workers * CPUS_PER_ACTOR:
            raise RayPoolError(
                f"{self.num_workers} env actors need {self.num_workers * CPUS_PER_ACTOR:g} CPUs but the Ray "
                f"cluster has {cpus:g}: lower env.workers or add machines (`ray start --address=HEAD:6379`)"
            )

    def _new_actor(self):
        return self._actor_class.remote(self._factory_pickle, self._search_path)

    def _wait_until_started(self) -> None:
        """Every actor placed and its factory unpickled within timeout_s, or a RayPoolError saying why not."""
        ray = self._ray
        pings = [actor.pid.remote() for actor in self._actors]
        ready, waiting = ray.wait(pings, num_returns=len(pings), timeout=self.timeout_s)
        if waiting:
            raise RayPoolError(
                f"{len(waiting)} of {len(pings)} env actors did not start within env.step_timeout_s="
                f"{self.timeout_s:g} s; the Ray cluster has {ray.available_resources().get('CPU', 0.0):g} "
                f"free CPUs (`ray status` shows what holds them)"
            )
        try:
            ray.get(ready)
        except ray.exceptions.RayError as error:
            raise RayPoolError(
                f"an env actor could not start ({_one_line(error)}); every machine of the Ray cluster needs "
                "sdar and the env's packages and data installed as on this one"
            ) from None

    def _run(self, batches: dict[int, list], outcomes: list, calls, timeout_s: float) -> None:
        """Submit every call, take the answers as they come; an actor silent for timeout_s is replaced."""
        ray = self._ray
        queues = {
            worker: deque(
                (index, self._actors[worker].call.remote(slot, method, args))
                for index, slot, method, args in batch
            )
            for worker, batch in batches.items()
        }
        last_answer = {worker: time.monotonic() for worker in queues}
        while queues:
            # An actor answers in submission order: only the head of its queue can be the next answer.
            heads = {queue[0][1]: worker for worker, queue in queues.items()}
            deadline = min(last_answer[worker] for worker in queues) + timeout_s
            ready, _ = ray.wait(list(heads), num_returns=1, timeout=max(0.0, deadline - time.monotonic()))
            for ref in ready:
                worker = heads[ref]
                index = queues[worker][0][0]
                try:
                    outcomes[index] = ray.get(ref)
                except ray.exceptions.RayTaskError as error:  # SlotEnvs never raises: the value cannot travel
                    _, method, _ = calls[index]
                    cause = _one_line(getattr(error, "cause", None) or error)
                    outcomes[index] = (False, f"{method} returned a value Ray could not pass back: {cause}")
                except ray.exceptions.RayError as error:  # the actor's process or machine is gone
                    reason = f"env actor {worker} died ({_one_line(error, 300)})"
                    self._fail_actor(worker, queues, outcomes, reason)
                    continue
                queues[worker].popleft()
                last_answer[worker] = time.monotonic()
                if not queues[worker]:
                    del queues[worker]
            now = time.monotonic()
            for worker in [w for w in queues if now - last_answer[w] >= timeout_s]:
                slot, method, _ = calls[queues[worker][0][0]]
                reason = f"env actor {worker} timed out after {timeout_s:.3g} s on {method} of slot {slot}"
                self._fail_actor(worker, queues, outcomes, reason)

    def _fail_actor(self, worker: int, queues: dict[int, deque], outcomes: list, reason: str) -> None:
        pending = {worker: [index for index, _ in queues.pop(worker)]}
        self._fail_worker(worker, pending, outcomes, reason)

    def _replace_worker(self, worker: int) -> None:
        with contextlib.suppress(Exception):
            self._ray.kill(self._actors[worker], no_restart=True)
        self._actors[worker] = self._new_actor()

    def _shutdown(self) -> None:
        """Let every actor close its envs (up to CLOSE_GRACE_S), then kill it."""
        self._finalizer()
