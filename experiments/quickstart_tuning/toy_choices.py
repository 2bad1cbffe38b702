"""What the toy env's policy chose on a panel: games won, first searches at the usual place of the chest's
colour (what the teacher's skill says), and, after a first search that found nothing, a second search rather
than another action. One line per eval folder (RUN/eval/<label>/episodes.jsonl).

    python experiments/quickstart_tuning/toy_choices.py experiments/quickstart_tuning/results/t2/eval/*
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sdar.envs.toy.env import USUAL_PLACE


def choices(folder: Path) -> dict[str, int]:
    counts = dict.fromkeys(("games", "won", "usual_first", "missed_first", "searched_again"), 0)
    for line in (folder / "episodes.jsonl").read_text().splitlines():
        episode = json.loads(line)
        colour = episode["task_type"]  # the toy env's task type is the chest's colour
        actions = episode["actions"]
        counts["games"] += 1
        counts["won"] += bool(episode["won"])
        counts["usual_first"] += actions[0] == f"search {USUAL_PLACE[colour]}"
        if len(actions) > 1 and not actions[1].startswith("take "):
            counts["missed_first"] += 1
            counts["searched_again"] += actions[1].startswith("search ")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="eval folders holding episodes.jsonl")
    for folder in parser.parse_args().folders:
        c = choices(folder)
        print(
            f"{folder}: won {c['won']}/{c['games']}, first search at the usual place {c['usual_first']}/"
            f"{c['games']}, searched again after a miss {c['searched_again']}/{c['missed_first']}"
        )


if __name__ == "__main__":
    main()
