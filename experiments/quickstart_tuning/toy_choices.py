"""What the toy env's policy chose on a panel: games won, first searches at the usual place of the chest's
colour (what the teacher's skill says), and what the second action was (take the key, search, open the
chest). One line per eval folder holding the panel's episodes (RUN/eval/<label>/episodes.jsonl).

    python experiments/quickstart_tuning/toy_choices.py experiments/quickstart_tuning/results/t2/eval/*
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sdar.envs.toy.env import USUAL_PLACE


def choices(folder: Path) -> dict[str, int]:
    counts = dict.fromkeys(("games", "won", "usual_first", "take", "search", "open"), 0)
    for line in (folder / "episodes.jsonl").read_text().splitlines():
        episode = json.loads(line)
        colour = episode["task_type"]  # the toy env's task type is the chest's colour
        actions = episode["actions"]
        counts["games"] += 1
        counts["won"] += bool(episode["won"])
        counts["usual_first"] += actions[0] == f"search {USUAL_PLACE[colour]}"
        second = actions[1].split(" ", 1)[0] if len(actions) > 1 else ""
        if second in ("take", "search", "open"):
            counts[second] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="eval folders holding episodes.jsonl")
    for folder in parser.parse_args().folders:
        if not (folder / "episodes.jsonl").is_file():
            print(f"{folder}: no episodes.jsonl")
            continue
        c = choices(folder)
        print(
            f"{folder}: won {c['won']}/{c['games']}, first search at the usual place {c['usual_first']}/"
            f"{c['games']}; second action: take {c['take']}, search {c['search']}, open {c['open']}"
        )


if __name__ == "__main__":
    main()
