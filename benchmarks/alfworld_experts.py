"""ALFWorld through the sdar adapter: the planner expert and a seeded random-admissible policy, per task type.

    ALFWORLD_DATA=../shared/data/alfworld python benchmarks/alfworld_experts.py --split valid_seen

Prints solved/total per task type for each policy and checks the totals against the per-type game counts of
../shared/data/SOURCES.md §1 (valid_seen: pick 35, look 13, clean 27, heat 16, cool 25, pick_two 24). The
expert's plans are cached on disk (--plan-cache), so a second run skips the planner.
"""

from __future__ import annotations

import argparse
import collections
import functools
import sys
import time

from sdar.envs.alfworld.engine import TASK_TYPES
from sdar.envs.alfworld.env import AlfworldEnv
from sdar.envs.policies import ExpertPolicy, RandomAdmissiblePolicy, run_episodes
from sdar.envs.pool import EnvPool

SHORT = dict(zip(TASK_TYPES, ("pick", "look", "clean", "heat", "cool", "pick_two"), strict=True))
EXPECTED = {  # SOURCES.md §1, games per type
    "valid_seen": {"pick": 35, "look": 13, "clean": 27, "heat": 16, "cool": 25, "pick_two": 24},
    "train": {"pick": 46, "look": 19, "clean": 37, "heat": 25, "cool": 28, "pick_two": 45},
}


def report(name: str, outcomes, seconds: float) -> dict[str, tuple[int, int]]:
    table: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    for outcome in outcomes:
        row = table[SHORT.get(outcome.task.task_type, outcome.task.task_type or "?")]
        row[0] += outcome.won
        row[1] += 1
    errors = [o for o in outcomes if o.error]
    won = sum(o.won for o in outcomes)
    steps = sorted(o.steps for o in outcomes if o.won)
    median = steps[len(steps) // 2] if steps else 0
    print(
        f"\n{name}: {won}/{len(outcomes)} won ({100 * won / max(1, len(outcomes)):.1f} %), "
        f"median steps of wins {median}, {len(errors)} env errors, {seconds:.0f} s"
    )
    for short in SHORT.values():
        solved, total = table.get(short, (0, 0))
        print(f"  {short:9s} {solved:4d}/{total:<4d}")
    for outcome in errors[:5]:
        print(f"  error on {outcome.task.task_id}: {outcome.error}")
    return {short: tuple(row) for short, row in table.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="default: $ALFWORLD_DATA")
    parser.add_argument("--split", default="valid_seen")
    parser.add_argument("--limit", type=int, default=0, help="first N games only (0 = all)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-turns", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--policies", default="expert,random")
    parser.add_argument("--plan-cache", default=None, help="default: $SDAR_CACHE/alfworld_plans")
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="per env call (the planner can be slow)"
    )
    args = parser.parse_args(argv)

    factory = functools.partial(AlfworldEnv, args.data_dir, plan_cache_dir=args.plan_cache)
    ok = True
    with EnvPool(
        factory, num_slots=2 * args.workers, num_workers=args.workers, timeout_s=args.timeout
    ) as pool:
        task_ids = pool.task_ids(args.split)
        task_ids = task_ids[: args.limit] if args.limit else task_ids
        print(f"{args.split}: {len(task_ids)} games, {args.workers} workers, max {args.max_turns} turns")
        for name in args.policies.split(","):
            policy = ExpertPolicy() if name == "expert" else RandomAdmissiblePolicy(args.seed)
            label = "planner expert" if name == "expert" else f"random admissible (seed {args.seed})"
            started = time.perf_counter()
            outcomes = run_episodes(pool, policy, task_ids, max_turns=args.max_turns)
            table = report(label, outcomes, time.perf_counter() - started)
            expected = EXPECTED.get(args.split) if not args.limit else None
            if expected:
                counts = {short: total for short, (_, total) in table.items()}
                match = counts == expected
                ok &= match
                print(f"  per-type game counts {'match' if match else 'DIFFER from'} SOURCES.md: {expected}")
            if name == "expert":
                ok &= all(o.won for o in outcomes)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
