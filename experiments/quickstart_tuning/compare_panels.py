"""Game by game, two panel evaluations of the same games: which wins were kept, lost or gained, and for every
lost win the two action sequences side by side.

    python experiments/quickstart_tuning/compare_panels.py results/q6/eval/step_0 results/q7/eval/final
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def episodes(folder: Path) -> dict[str, dict]:
    lines = (folder / "episodes.jsonl").read_text().splitlines()
    return {episode["task_id"]: episode for episode in map(json.loads, lines)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path, help="an eval folder holding episodes.jsonl")
    parser.add_argument("after", type=Path)
    args = parser.parse_args()
    before, after = episodes(args.before), episodes(args.after)
    if before.keys() != after.keys():
        raise SystemExit("the two evaluations played different games: compare evaluations of one panel")
    kept = sum(before[t]["won"] and after[t]["won"] for t in before)
    lost = [t for t in before if before[t]["won"] and not after[t]["won"]]
    gained = sum(after[t]["won"] and not before[t]["won"] for t in before)
    print(
        f"{len(before)} games: won before {kept + len(lost)}, after {kept + gained}; "
        f"kept {kept}, lost {len(lost)}, gained {gained}"
    )
    for task in lost:
        print(f"\n{Path(task).parent.name}")
        print(f"  before: {before[task]['actions']}\n  after:  {after[task]['actions']}")


if __name__ == "__main__":
    main()
