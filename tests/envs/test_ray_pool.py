"""RayEnvPool: the same episodes as EnvPool, order, failure isolation (raise, hang, crash, kill), errors."""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from sdar.config import EnvConfig, load_config
from sdar.envs.executors import make_env_pool
from sdar.envs.policies import ExpertPolicy, RandomAdmissiblePolicy, run_episode, run_episodes
from sdar.envs.pool import EnvPool
from sdar.envs.ray_pool import RayEnvPool, RayPoolError
from sdar.errors import ConfigError

from .fakes import CounterEnv
from .test_pool import scripted_run, strip_pids

REPO = Path(__file__).resolve().parents[2]
HAS_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAS_RAY, reason="needs Ray: pip install 'sdar[ray]'")


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray instance (2 CPUs) for the module: starting Ray takes seconds."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()


def actor_pids(pool: RayEnvPool) -> list[int]:
    return pool._ray.get([actor.pid.remote() for actor in pool._actors])


def wait_gone(pids, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
        time.sleep(0.1)
    return not any(Path(f"/proc/{pid}").exists() for pid in pids)


@needs_ray
def test_same_results_as_the_process_pool_in_order_over_both_actors(ray_cluster):
    with EnvPool(CounterEnv, num_slots=5, num_workers=2) as processes:
        expected = strip_pids(scripted_run(processes))
    with RayEnvPool(CounterEnv, num_slots=5, num_workers=2) as pool:
        assert strip_pids(scripted_run(pool)) == expected
        pids = [r.info["pid"] for r in pool.step_many([(slot, "a") for slot in range(5)])]
        assert (
            len(set(pids)) == 2 and pids[0] == pids[2] == pids[4] != pids[1] == pids[3]
        )  # slot s: actor s % 2
        assert set(pids) == set(actor_pids(pool)) and os.getpid() not in pids


@needs_ray
def test_a_plugin_env_from_config_plays_the_same_episodes_under_both_executors(ray_cluster):
    config = load_config(str(REPO / "examples/lockbox/config.yaml"), ["env.workers=2"])
    ray_env = dataclasses.replace(config.env, executor="ray")
    ids = [f"valid-{i}" for i in range(6)]
    outcomes = {}
    for env in (config.env, ray_env):
        with make_env_pool(env, 3) as pool:
            assert isinstance(pool, RayEnvPool if env.executor == "ray" else EnvPool)
            expert = run_episodes(pool, ExpertPolicy(), ids)
            outcomes[env.executor] = (
                expert,
                run_episodes(pool, RandomAdmissiblePolicy(5), ids * 2, max_turns=6),
            )
    assert outcomes["ray"] == outcomes["processes"]
    expert, random_runs = outcomes["ray"]
    assert all(o.won for o in expert) and not all(o.won for o in random_runs)
    assert [o.task.task_id for o in random_runs] == ids * 2


@needs_ray
def test_sdar_eval_plays_the_same_panel_under_both_executors(ray_cluster, tmp_path):
    from sdar.evaluation.evaluate import evaluate

    base = load_config(str(REPO / "examples/lockbox/config.yaml"), ["eval.policy=random", "env.workers=2"])
    episodes = {}
    for executor in ("processes", "ray"):
        config = dataclasses.replace(base, env=dataclasses.replace(base.env, executor=executor))
        summary = evaluate(config, output_dir=tmp_path / executor)
        assert summary["episodes"] == 16 and summary["failed_episodes"] == 0
        episodes[executor] = (tmp_path / executor / "episodes.jsonl").read_text().splitlines()
    assert episodes["ray"] == episodes["processes"]
    assert len({json.loads(line)["actions"][0] for line in episodes["ray"]}) > 1  # seeded, not all alike


@needs_ray
def test_actors_step_at_the_same_time(ray_cluster):
    with RayEnvPool(functools.partial(CounterEnv, delay_s=0.3), num_slots=2, num_workers=2) as pool:
        pool.reset_many([(0, "x"), (1, "y")])
        pool.step_many([(0, "a"), (1, "a")])
        started = time.monotonic()
        pool.step_many([(0, "a"), (1, "a")])
        assert time.monotonic() - started < 0.55  # two 0.3 s steps overlapped


@needs_ray
def test_exception_fails_only_that_slot_and_the_env_is_rebuilt(ray_cluster):
    with RayEnvPool(CounterEnv, num_slots=3, num_workers=2) as pool:
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


@needs_ray
def test_hung_actor_is_killed_replaced_and_other_actors_go_on(ray_cluster):
    with RayEnvPool(CounterEnv, num_slots=4, num_workers=2, timeout_s=60) as pool:
        pool.reset_many([(slot, f"t{slot}") for slot in range(4)])
        old = actor_pids(pool)
        started = time.monotonic()
        results = pool.step_many([(1, "hang"), (0, "a"), (2, "a"), (3, "a")], timeout_s=1.0)
        assert time.monotonic() - started < 5
        assert "timed out" in results[0].info["error"] and "actor 1" in results[0].info["error"]
        assert [r.observation for r in results[1:3]] == ["t0:1:a", "t2:1:a"]  # actor 0: fine
        assert results[3].done and "timed out" in results[3].info["error"]  # same actor, queued behind
        assert pool.restarts == 1 and wait_gone([old[1]])
        assert "episode state lost" in pool.step_many([(3, "a")])[0].info["error"]
        assert pool.step_many([(0, "a")])[0].observation == "t0:2:a"
        pool.reset_many([(1, "again"), (3, "again3")])
        assert [r.observation for r in pool.step_many([(1, "b"), (3, "b")])] == ["again:1:b", "again3:1:b"]
        new = actor_pids(pool)
        assert new[0] == old[0] and new[1] != old[1]


@needs_ray
def test_crashed_or_killed_actor_fails_its_slots_and_is_replaced(ray_cluster):
    with RayEnvPool(CounterEnv, num_slots=2, num_workers=2, timeout_s=30) as pool:
        pool.reset_many([(0, "x"), (1, "y")])
        crashed, fine = pool.step_many([(0, "crash"), (1, "a")])  # the env calls os._exit
        assert crashed.done and "env actor 0 died" in crashed.info["error"] and fine.observation == "y:1:a"
        assert pool.restarts == 1
        victim = actor_pids(pool)[1]
        os.kill(victim, signal.SIGKILL)  # as the OOM killer would, between two calls
        (lost,) = pool.step_many([(1, "a")])
        assert lost.done and "env actor 1 died" in lost.info["error"] and pool.restarts == 2
        pool.reset_many([(0, "x"), (1, "y")])
        assert [r.won for r in pool.step_many([(0, "win"), (1, "win")])] == [True, True]
        assert victim not in actor_pids(pool)


@needs_ray
def test_close_kills_the_actors_and_context_manager(ray_cluster):
    pool = RayEnvPool(CounterEnv, num_slots=2, num_workers=2)
    pool.reset_many([(0, "x"), (1, "y")])
    pids = actor_pids(pool)
    pool.close()
    pool.close()  # idempotent
    assert wait_gone(pids)
    with pytest.raises(RuntimeError, match="closed"):
        pool.step_many([(0, "a")])
    with RayEnvPool(CounterEnv, num_slots=1, num_workers=1) as other:
        pids = actor_pids(other)
    assert wait_gone(pids)


@needs_ray
def test_slot_env_view_task_ids_expert_and_argument_checks(ray_cluster):
    with RayEnvPool(CounterEnv, num_slots=2, num_workers=1) as pool:
        assert pool.task_ids("train") == [f"train-{i}" for i in range(5)]
        outcome = run_episode(pool.env(1), ExpertPolicy(pool.env(1)), "solo")
        assert outcome.won and outcome.steps == 1
        pool.reset_many([(0, "a")])
        assert pool.expert_many([0, 1]) == ["win", "win"]
        assert pool.step_many([(0, "a")], with_expert=True)[0].info["expert_action"] == "win"
        with pytest.raises(IndexError):
            pool.step_many([(2, "a")])
    with pytest.raises(ValueError, match="num_workers >= 1"):
        RayEnvPool(CounterEnv, num_slots=1, num_workers=0)
    with pytest.raises(ValueError, match="picklable"):
        RayEnvPool(lambda: CounterEnv(), num_slots=1)
    with pytest.raises(RayPoolError, match="3 env actors need 3 CPUs but the Ray cluster has 2"):
        RayEnvPool(CounterEnv, num_slots=3, num_workers=3)
    with pytest.raises(ConfigError, match="env.workers >= 1"):
        make_env_pool(EnvConfig(name="lockbox", executor="ray", workers=0), 1)


def test_missing_ray_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(RayPoolError) as caught:
        RayEnvPool(CounterEnv, num_slots=1, num_workers=1)
    assert "pip install 'sdar[ray]'" in str(caught.value) and "\n" not in str(caught.value)


def test_importing_sdar_does_not_import_ray():
    code = "import sys, sdar, sdar.envs.executors, sdar.envs.ray_pool; print('ray' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


# Joins a cluster that is not there, in a fresh interpreter, and reports what it left behind.
JOIN_SCRIPT = """
import json, os, sys, time
if sys.argv[2] == "ray-imported-first":  # as vLLM does, before the pool reads Ray's connect knobs
    import ray
from sdar.envs.ray_pool import JOIN_KNOBS, RayEnvPool, RayPoolError
workers = int(sys.argv[3]) if len(sys.argv) > 3 else 1
started = time.monotonic()
try:
    RayEnvPool(str, num_slots=workers, num_workers=workers, address=sys.argv[1])
    error = None
except RayPoolError as caught:
    error = str(caught)
elapsed = time.monotonic() - started
import ray
def parent(pid):
    try:
        return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None
def children():
    return [int(pid) for pid in os.listdir("/proc") if pid.isdigit() and parent(pid) == os.getpid()]
deadline = time.monotonic() + 10
while children() and time.monotonic() < deadline:
    time.sleep(0.2)
print(json.dumps({"error": error, "elapsed": elapsed, "initialized": ray.is_initialized(),
                  "children": children(), "knobs": [k for k in JOIN_KNOBS if k in os.environ]}))
"""


def ray_service_pids() -> set[int]:
    names = {"gcs_server", "raylet"}
    pids = set()
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and Path(f"/proc/{entry}/comm").read_text().strip() in names:
                pids.add(int(entry))
        except OSError:
            continue
    return pids


@needs_ray
@pytest.mark.parametrize(
    "address, order, names",
    [
        ("127.0.0.1:1", "ray-imported-first", "env.ray_address='127.0.0.1:1'"),
        pytest.param(
            "127.0.0.1:1", "pool-imports-ray", "env.ray_address='127.0.0.1:1'", marks=pytest.mark.slow
        ),
        pytest.param(
            "10.255.255.1:6379",
            "pool-imports-ray",
            "env.ray_address='10.255.255.1:6379'",
            marks=pytest.mark.slow,
        ),
        # "" joins what the last `ray start` here recorded, if it recorded anything: here a cluster now gone
        pytest.param("", "pool-imports-ray", "ray_current_cluster", marks=pytest.mark.slow),
    ],
)
def test_an_unreachable_cluster_fails_within_seconds_and_leaves_nothing_running(
    address, order, names, tmp_path
):
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text("127.0.0.1:1")
    variables = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    if not address:
        variables["RAY_TMPDIR"] = str(tmp_path)  # where Ray looks for the recorded address
    before = ray_service_pids()
    done = subprocess.run(
        [sys.executable, "-c", JOIN_SCRIPT, address, order],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=variables,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    error = report["error"]
    assert error is not None and "\n" not in error
    assert names in error and "ray start --head" in error
    assert report["elapsed"] < 30  # Ray's own retries would take many minutes
    assert not report["initialized"] and report["children"] == [] and report["knobs"] == []
    assert not (ray_service_pids() - before)


# Plays lockbox on the Ray cluster at argv[1] with argv[2] actors through make_env_pool, as `sdar train` and
# `sdar eval` build their pool; reports the outcomes and each actor's parent process (its node's raylet).
PLAY_SCRIPT = """
import json, os, sys
from sdar.config import load_config
from sdar.envs.policies import ExpertPolicy, run_episodes
from sdar.envs.executors import make_env_pool
overrides = ["env.executor=ray", f"env.workers={sys.argv[2]}", f"env.ray_address={sys.argv[1]}"]
config = load_config("examples/lockbox/config.yaml", overrides)
with make_env_pool(config.env, int(sys.argv[2])) as pool:
    outcomes = run_episodes(pool, ExpertPolicy(), [f"valid-{i}" for i in range(6)])
    pids = pool._ray.get([actor.pid.remote() for actor in pool._actors])
    parents = [int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1]) for pid in pids]
print(json.dumps({"won": [o.won for o in outcomes], "parents": parents, "driver": os.getpid()}))
"""


def wait_until(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return False


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def stop_node(node: subprocess.Popen) -> None:
    node.terminate()  # `ray start --block` stops its node's processes when it ends
    try:
        node.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(node.pid, signal.SIGKILL)
        node.wait(timeout=10)


@needs_ray
@pytest.mark.slow
def test_joins_a_two_node_cluster_started_with_ray_start_by_its_address():
    """A head and a second node on this machine, as on two machines: the actors spread over both nodes."""
    # A short folder: Ray's socket paths under it have a length limit that pytest's tmp_path can exceed.
    temp_dir = tempfile.mkdtemp(prefix="sdar-ray-", dir="/tmp")
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    address = f"127.0.0.1:{port}"
    variables = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    variables.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32), RAY_TMPDIR=temp_dir)
    ray_cli = str(Path(sys.executable).with_name("ray"))
    start = functools.partial(
        subprocess.Popen,
        env=variables,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    run = functools.partial(subprocess.run, capture_output=True, text=True, timeout=180, cwd=REPO)
    nodes = [
        start(
            [ray_cli, "start", "--head", f"--port={port}", "--num-cpus=2", f"--temp-dir={temp_dir}"]
            + ["--include-dashboard=false", "--block"]
        )
    ]
    try:
        assert wait_until(lambda: port_open(port), 60), "the Ray head did not start"
        nodes.append(start([ray_cli, "start", f"--address={address}", "--num-cpus=1", "--block"]))
        status = functools.partial(run, [ray_cli, "status", f"--address={address}"], env=variables)
        assert wait_until(lambda: "/3.0 CPU" in status().stdout, 60), "the second node did not join"
        played = run([sys.executable, "-c", PLAY_SCRIPT, address, "3"], env=variables)
        assert played.returncode == 0, played.stderr[-3000:]
        report = json.loads(played.stdout.strip().splitlines()[-1])
        assert report["won"] == [True] * 6
        assert len(set(report["parents"])) == 2 and report["driver"] not in report["parents"]  # 2 raylets
        without_token_mode = {key: value for key, value in variables.items() if key != "RAY_AUTH_MODE"}
        refused = run(
            [sys.executable, "-c", JOIN_SCRIPT, address, "pool-imports-ray"], env=without_token_mode
        )
        error = json.loads(refused.stdout.strip().splitlines()[-1])["error"]
        assert f"env.ray_address={address!r}" in error and "export RAY_AUTH_MODE=token" in error
    finally:
        for node in reversed(nodes):
            stop_node(node)
        shutil.rmtree(temp_dir, ignore_errors=True)


@needs_ray
@pytest.mark.slow
def test_a_pool_that_cannot_start_stops_the_local_ray_it_started():
    # A short folder: Ray's socket paths under it have a length limit that pytest's tmp_path can exceed.
    temp_dir = tempfile.mkdtemp(prefix="sdar-ray-", dir="/tmp")
    variables = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    variables["RAY_TMPDIR"] = temp_dir  # no address recorded there: "" starts a local instance
    try:
        done = subprocess.run(
            [sys.executable, "-c", JOIN_SCRIPT, "", "pool-imports-ray", "1000"],
            capture_output=True,
            text=True,
            timeout=180,
            cwd=REPO,
            env=variables,
        )
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["error"].startswith("1000 env actors need 1000 CPUs but the Ray cluster has")
    assert not report["initialized"] and report["children"] == []
