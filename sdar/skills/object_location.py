"""`alfworld-location` and `alfworld-location-half`: one line naming the receptacle the task's object is in.

"The tomato 1 is in/on countertop 1. Go there first." The place comes from the generated game's expert plan
(its first `take OBJECT from RECEPTACLE`), so the line is exact where `alfworld-places` only ranks the usual
receptacle types. The two libraries measure how a method treats an unreliable teacher:

- `alfworld-location`: the line is right in every game;
- `alfworld-location-half`: right in about half of the games and wrong in the others, chosen per game by a
  hash of its directory name (the same games on every machine). A wrong line names another receptacle of the
  same room that the expert visits and where the object is not (the goal receptacle, the sink, the fridge, the
  lamp's place...), so it reads exactly like a right one. A game whose expert visits no other receptacle (a
  look task with the lamp beside the object) keeps the right line.

Only generated games (`alfworld-gen`) record an expert plan; another game fails naming the env to use.
Select one with `teacher.skill_library: alfworld-location` (or `-half`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from pathlib import Path
from typing import NamedTuple

from sdar.env_records import Task
from sdar.errors import ConfigError
from sdar.skills.library import SKILL_DIR, SkillLibrary, register_skill_library

_TAKE = re.compile(r"^take (?P<object>.+?) from (?P<receptacle>.+)$")
_GO = re.compile(r"^go to (?P<receptacle>.+)$")


class ObjectLocation(NamedTuple):
    object: str  # e.g. "tomato 1", the first object the expert takes
    receptacle: str  # where it is, e.g. "countertop 1"
    elsewhere: str  # another receptacle the expert visits, where no object it takes is ("" = none)


def location_from_plan(plan: list[str]) -> ObjectLocation:
    """The expert's first taken object, its receptacle, and the first visited one holding nothing it takes."""
    takes = [match for action in plan if (match := _TAKE.match(action))]
    if not takes:
        raise ValueError(f"the expert plan takes no object: {plan}")
    sources = {take["receptacle"] for take in takes}
    visited = [match["receptacle"] for action in plan if (match := _GO.match(action))]
    others = [receptacle for receptacle in visited if receptacle not in sources]
    return ObjectLocation(takes[0]["object"], takes[0]["receptacle"], others[0] if others else "")


@functools.lru_cache(maxsize=4096)
def game_location(game_dir: str) -> ObjectLocation:
    traj = json.loads((Path(game_dir) / "traj_data.json").read_text())
    plan = traj.get("sdar_generator", {}).get("expert_plan")
    if not plan:
        raise ConfigError(
            f"{game_dir} records no expert plan: the alfworld-location skill libraries need generated games "
            "(env.name: alfworld-gen)"
        )
    return location_from_plan(plan)


def location_is_right(game_dir: str) -> bool:
    """Whether `alfworld-location-half` tells the truth in this game: the parity of a hash of its name."""
    return hashlib.sha256(Path(game_dir).name.encode()).digest()[0] % 2 == 0


def location_line(object_name: str, receptacle: str) -> str:
    return f"The {object_name} is in/on {receptacle}. Go there first."


def location_skill(task: Task, *, always_right: bool) -> str:
    game_dir = (task.metadata or {}).get("game_dir")
    if game_dir is None:  # the prompt-budget probe: a line as long as a long real one
        return location_line("butterknife 10", "countertop 10")
    where = game_location(str(game_dir))
    # A game whose expert visits no other receptacle (a lamp beside the object) has no wrong place to name.
    right = always_right or location_is_right(str(game_dir)) or not where.elsewhere
    return location_line(where.object, where.receptacle if right else where.elsewhere)


for _name, _always_right in (("alfworld-location", True), ("alfworld-location-half", False)):
    register_skill_library(
        SkillLibrary(
            _name,
            SKILL_DIR / "alfworld",
            route=lambda task: [],  # no file skills: the generated line is the whole context
            always=(),
            generated=functools.partial(location_skill, always_right=_always_right),
            routed_skills=(),
        )
    )
