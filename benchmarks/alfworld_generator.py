"""Benchmark of the ALFWorld game generator: generation rate, expert and random success, engine speed.

    python benchmarks/alfworld_generator.py [--games-per-type 10] [--seed 0] [--max-steps 50]

Generates `6 x games-per-type` games (balanced over the task types) into a fresh cache folder, then on the
real engine, single process: re-plans every game from scratch with the planner and replays the plan (expert
success, must be 100%), plays each game with a seeded uniformly random admissible policy for at most
`max-steps` steps (random success), and times engine steps.
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sdar.envs.alfworld.engine import TASK_TYPES, AlfworldGame  # noqa: E402
from sdar.envs.alfworld.generator import GeneratorSettings, game_root, generate_games  # noqa: E402


def expert_run(path: Path) -> tuple[bool, int]:
    game = AlfworldGame(path)
    try:
        state = game.reset()
        plan = game.plan()
        for command in plan:
            state = game.step(command)
        return state.won, len(plan)
    finally:
        game.close()


def random_run(path: Path, seed: int, max_steps: int) -> tuple[bool, int, float]:
    """(won, steps taken, seconds spent in step calls) of one seeded random admissible episode."""
    game = AlfworldGame(path)
    rng = random.Random(seed)
    try:
        state = game.reset()
        seconds, steps = 0.0, 0
        while steps < max_steps and not state.won:
            command = rng.choice(state.admissible_commands)
            start = time.perf_counter()
            state = game.step(command)
            seconds += time.perf_counter() - start
            steps += 1
        return state.won, steps, seconds
    finally:
        game.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games-per-type", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=50)
    args = parser.parse_args()
    settings = GeneratorSettings()
    num_games = args.games_per_type * len(TASK_TYPES)

    with tempfile.TemporaryDirectory(prefix="sdar-gen-bench-") as cache:
        start = time.perf_counter()
        paths = generate_games(num_games, seed=args.seed, settings=settings, cache_dir=cache)
        generate_seconds = time.perf_counter() - start
        start = time.perf_counter()
        assert generate_games(num_games, seed=args.seed, settings=settings, cache_dir=cache) == paths
        cached_seconds = time.perf_counter() - start
        root = game_root(settings, cache)
        rejected = len(list((root / ".rejected").glob("*"))) if (root / ".rejected").is_dir() else 0

        types = [json.loads((p.parent / "traj_data.json").read_text())["task_type"] for p in paths]
        expert = collections.Counter()
        plan_lengths = []
        start = time.perf_counter()
        for path, task_type in zip(paths, types, strict=True):
            won, length = expert_run(path)
            expert[task_type] += won
            plan_lengths.append(length)
        expert_seconds = time.perf_counter() - start

        random_wins = collections.Counter()
        steps, step_seconds = 0, 0.0
        start = time.perf_counter()
        for index, (path, task_type) in enumerate(zip(paths, types, strict=True)):
            won, taken, seconds = random_run(path, seed=index, max_steps=args.max_steps)
            random_wins[task_type] += won
            steps, step_seconds = steps + taken, step_seconds + seconds
        random_seconds = time.perf_counter() - start

        first = AlfworldGame(paths[0])
        observation = first.reset().observation
        first.close()

    per_type = collections.Counter(types)
    print(f"settings: {settings}")
    print(f"games: {num_games} (seed {args.seed}); resampled attempts: {rejected}")
    print(
        f"generation: {num_games / generate_seconds:.2f} games/s "
        f"({generate_seconds:.1f} s, validation included)"
    )
    print(f"cached regeneration: {cached_seconds * 1000:.0f} ms for all {num_games}")
    print(
        f"expert (planner re-run + replay): {sum(expert.values())}/{num_games} won "
        f"({100 * sum(expert.values()) / num_games:.0f}%), {expert_seconds / num_games:.2f} s/game; "
        f"plan length median {statistics.median(plan_lengths)}, "
        f"min {min(plan_lengths)}, max {max(plan_lengths)}"
    )
    print(
        f"random admissible play (max {args.max_steps} steps, seeded): "
        f"{sum(random_wins.values())}/{num_games} won ({100 * sum(random_wins.values()) / num_games:.1f}%)"
    )
    print(f"engine: {steps / step_seconds:.1f} steps/s in step() ({1000 * step_seconds / steps:.1f} ms/step)")
    print(f"engine incl. load+reset: {steps / random_seconds:.1f} steps/s over {steps} steps")
    print("per task type: expert won / random won / games")
    for task_type in TASK_TYPES:
        print(
            f"  {task_type:32s} {expert[task_type]:3d} {random_wins[task_type]:3d} {per_type[task_type]:3d}"
        )
    print(f"first observation of game 0:\n{observation}")
    if sum(expert.values()) != num_games:
        raise SystemExit("expert success is below 100%")


if __name__ == "__main__":
    main()
