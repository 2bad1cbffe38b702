"""What env.executor costs: one cheap env's resets and steps in-process, in W processes, on W Ray actors.

    python benchmarks/env_executor.py --slots 16 --workers 2 --episodes 20 --steps 5

The env is examples/lockbox (a step is a few microseconds of Python), so the figures are the executor's own
overhead per call, what it adds to every env call of a rollout. Each mode plays `--episodes` rounds: reset all
`--slots` slots on new tasks (one `reset_many`), then `--steps` rounds of `step_many` over all slots with a
seeded random-admissible policy; every mode executes identical calls and the results are checked equal.
Reported per mode: the pool's start (for Ray also `ray.init`, a local instance with `--workers` CPUs), and
the median over `--repeats` plays of the time per call and per batch. Other jobs share the cores: run it idle.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

from sdar.config import load_config
from sdar.envs import env_factory
from sdar.envs.pool import EnvPool

LOCKBOX = Path(__file__).resolve().parents[1] / "examples" / "lockbox" / "config.yaml"


def play(pool, slots: int, episodes: int, steps: int, seed: int) -> tuple[list, float, int]:
    """(every observation, seconds, env calls) for the fixed schedule of resets and steps."""
    rng = random.Random(seed)
    seen, calls, started = [], 0, time.perf_counter()
    for episode in range(episodes):
        results = [
            result
            for _, result in pool.reset_many([(s, f"train-{episode * slots + s}") for s in range(slots)])
        ]
        calls += slots
        for _ in range(steps):
            requests = [(s, rng.choice(r.admissible_actions or ("look",))) for s, r in enumerate(results)]
            results = pool.step_many(requests)
            calls += slots
            seen.append([(r.observation, r.reward, r.done) for r in results])
    return seen, time.perf_counter() - started, calls


def measure(mode: str, factory, args) -> dict:
    started = time.perf_counter()
    init_s = 0.0
    if mode == "ray":
        import ray

        from sdar.envs.ray_pool import RayEnvPool

        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
        init_s = time.perf_counter() - started
        pool = RayEnvPool(factory, args.slots, args.workers, timeout_s=120)
    else:
        pool = EnvPool(factory, args.slots, 0 if mode == "in-process" else args.workers, timeout_s=120)
    with pool:
        pool.reset_many([(s, "valid-0") for s in range(args.slots)])  # every worker started and warm
        start_s = time.perf_counter() - started
        runs = [play(pool, args.slots, args.episodes, args.steps, args.seed) for _ in range(args.repeats)]
    seen, _, calls = runs[0]
    assert all(run[0] == seen for run in runs), f"{mode} played other episodes on a repeat"
    elapsed = statistics.median(run[1] for run in runs)
    if mode == "ray":
        ray.shutdown()
    batches = args.episodes * (args.steps + 1)
    return {
        "mode": mode,
        "start_s": start_s,
        "ray_init_s": init_s,
        "calls": calls,
        "seconds": elapsed,
        "us_per_call": elapsed / calls * 1e6,
        "ms_per_batch": elapsed / batches * 1e3,
        "seen": seen,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5, help="plays per mode; the median is reported")
    parser.add_argument("--modes", default="in-process,processes,ray")
    args = parser.parse_args()
    factory = env_factory(load_config(str(LOCKBOX)).env)  # imports the plugin; spawned workers and actors too
    results = [measure(mode, factory, args) for mode in args.modes.split(",")]
    for result in results[1:]:
        assert result["seen"] == results[0]["seen"], f"{result['mode']} played other episodes"
    print(
        f"{args.slots} slots, {args.workers} workers, {args.episodes} x (1 reset + {args.steps} steps) of "
        f"every slot: {results[0]['calls']} env calls in {args.episodes * (args.steps + 1)} batches"
    )
    print(f"{'mode':<11} {'start s':>8} {'(ray.init)':>10} {'run s':>7} {'µs/call':>8} {'ms/batch':>9}")
    for r in results:
        init = f"{r['ray_init_s']:.2f}" if r["mode"] == "ray" else ""
        print(
            f"{r['mode']:<11} {r['start_s']:>8.2f} {init:>10} {r['seconds']:>7.2f} "
            f"{r['us_per_call']:>8.0f} {r['ms_per_batch']:>9.2f}"
        )


if __name__ == "__main__":
    main()
