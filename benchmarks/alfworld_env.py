"""ALFWorld env stepping throughput: one process vs an EnvPool with W workers (same episodes, same actions).

    ALFWORLD_DATA=../shared/data/alfworld python benchmarks/alfworld_env.py --slots 16 --rounds 40

Each mode resets the same `--slots` games (valid_seen, in listing order) and steps them for `--rounds` rounds
with a seeded random-admissible policy through `step_many`, so every mode executes identical commands (the
step results are checked equal). Reported: reset time (game loading, parallel across workers) and env steps
per second over the stepping rounds; for W workers also the "balance bound", the best speed-up the measured
per-call work allows when slot s runs on worker s % W and each batch waits for its busiest worker, and the
machine's own ceiling (2 processes vs 1 on a pure-Python loop). Other jobs share the cores: run it idle.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time

from sdar.envs.alfworld.env import AlfworldEnv
from sdar.envs.policies import RandomAdmissiblePolicy
from sdar.envs.pool import EnvPool


def _spin(iterations: int) -> float:
    started = time.perf_counter()
    total = 0
    for i in range(iterations):
        total += i * i % 7
    return time.perf_counter() - started


def machine_ceiling(iterations: int = 20_000_000) -> float:
    """How much faster 2 processes finish 2 equal pure-Python loops than 1 process: this machine's ceiling."""
    import multiprocessing

    one = _spin(iterations)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(_spin, [1000, 1000])  # start both processes first
        started = time.perf_counter()
        pool.map(_spin, [iterations, iterations])
        two = time.perf_counter() - started
    return 2 * one / two


def measure(
    factory, task_ids: list[str], warmup_ids: list[str], workers: int, rounds: int, seed: int
) -> dict:
    with EnvPool(factory, num_slots=len(task_ids), num_workers=workers, timeout_s=600) as pool:
        # start the workers and import the engine before timing, on other games (no cached load to reuse)
        pool.reset_many([(slot, warmup_ids[slot]) for slot in range(max(1, pool.num_workers))])
        reset_work, started = [], time.perf_counter()
        if workers == 0:
            first = []
            for request in enumerate(task_ids):
                call_started = time.perf_counter()
                first += pool.reset_many([request])
                reset_work.append((0, request[0], time.perf_counter() - call_started))
        else:
            first = pool.reset_many(list(enumerate(task_ids)))
        reset_s = time.perf_counter() - started
        policy = RandomAdmissiblePolicy(seed)
        tasks = [task for task, _ in first]
        latest = [result for _, result in first]
        trace, steps, work, trace_rounds = [], 0, [], []
        started = time.perf_counter()
        for _ in range(rounds):
            live = [slot for slot, result in enumerate(latest) if not result.done]
            if not live:
                break
            actions = [(slot, policy.act(tasks[slot], latest[slot], [])) for slot in live]
            if workers == 0:  # one call per slot, timed: the work each slot's step costs this round
                answers = []
                for request in actions:
                    call_started = time.perf_counter()
                    answers += pool.step_many([request])
                    work.append((len(trace_rounds), request[0], time.perf_counter() - call_started))
            else:
                answers = pool.step_many(actions)
            trace_rounds.append(None)
            for (slot, _), result in zip(actions, answers, strict=True):
                latest[slot] = result
                trace.append((slot, result.observation, result.won))
            steps += len(live)
        step_s = time.perf_counter() - started
    return {
        "reset_s": reset_s,
        "steps": steps,
        "step_s": step_s,
        "trace": trace,
        "work": work,
        "reset_work": reset_work,
    }


def lockstep_bound(work: list[tuple[int, int, float]], workers: int) -> float:
    """The best speed-up W workers can reach on this work (slot s on worker s % W): a round waits for its
    busiest worker."""
    rounds: dict[int, list[float]] = {}
    for round_index, slot, seconds in work:
        rounds.setdefault(round_index, [0.0] * workers)[slot % workers] += seconds
    return sum(seconds for *_, seconds in work) / sum(max(loads) for loads in rounds.values())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="default: $ALFWORLD_DATA")
    parser.add_argument("--split", default="valid_seen")
    parser.add_argument("--slots", type=int, default=16, help="episodes stepped together (one game each)")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--workers", default="0,1,2", help="modes to compare; 0 = in this process")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ceiling", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args(argv)

    factory = functools.partial(AlfworldEnv, args.data_dir, plan_cache_dir="")
    listed = AlfworldEnv(args.data_dir).task_ids(args.split)
    task_ids, warmup_ids = listed[: args.slots], listed[args.slots :][::-1]
    print(
        f"{len(task_ids)} episodes x {args.rounds} rounds, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.2f} before the run"
    )
    results, reference = {}, None
    for workers in (int(w) for w in args.workers.split(",")):
        result = measure(factory, task_ids, warmup_ids, workers, args.rounds, args.seed)
        reference = reference or result["trace"]
        same = result["trace"] == reference
        results[workers] = result
        label = "1 process (in-process)" if workers == 0 else f"{workers} worker process(es)"
        rate = result["steps"] / result["step_s"]
        print(
            f"{label:26s} reset {len(task_ids)} games {result['reset_s']:6.2f} s | "
            f"{result['steps']} steps in {result['step_s']:6.2f} s = {rate:6.1f} steps/s | "
            f"same results as the first mode: {same}"
        )
    if args.ceiling:
        print(f"machine ceiling: 2 processes run {machine_ceiling():.2f}x the work of 1 (pure-Python loop)")
    base = results.get(0) or results[min(results)]
    for workers, result in results.items():
        if result is not base:
            step_speedup = (result["steps"] / result["step_s"]) / (base["steps"] / base["step_s"])
            bounds = ("", "")
            if base["work"]:
                bounds = tuple(
                    f" (balance bound {lockstep_bound(base[key], workers):.2f}x)"
                    for key in ("work", "reset_work")
                )
            print(
                f"speed-up of {workers} worker(s) over the first mode: steps {step_speedup:.2f}x{bounds[0]}, "
                f"resets {base['reset_s'] / result['reset_s']:.2f}x{bounds[1]}"
            )
    print(f"load average {os.getloadavg()[0]:.2f} after the run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
