"""`alfworld-places`: a one-line skill that says where the task's object usually is, for ALFWorld games.

"A mug is usually found in/on: cabinet, coffeemachine, countertop, diningtable, sinkbasin (most likely
first). Go there first." The order is the one the game was generated with (`usual_places` in a generated
game's traj_data.json: the generator's priors, or the game's own order when its priors are shuffled), else
the commonsense table (`OBJECT_PRIORS`) for official games. It is far sharper than the `alfworld` library's
prose and a tenth of its length: the privileged information of the CPU-scale reproduction
(experiments/cpu_reproduction), where the teacher reads it and the student's prompt lacks it.

Select it with `teacher.skill_library: alfworld-places`.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import NamedTuple

from sdar.env_records import Task
from sdar.envs.alfworld.priors import LIGHT_SOURCES, OBJECT_PRIORS, usual_order
from sdar.skills.library import SKILL_DIR, SkillLibrary, register_skill_library


def usual_places_line(object_type: str, places: tuple[str, ...]) -> str:
    listed = ", ".join(place.lower() for place in places)
    return f"A {object_type.lower()} is usually found in/on: {listed} (most likely first). Go there first."


class GamePlaces(NamedTuple):
    target: str  # the object type the task is about, e.g. "Mug"
    places: tuple[str, ...]  # its usual receptacle types in this game, most likely first; () = unknown
    goal: str  # the goal receptacle type ("" for look tasks): the object never starts there


@functools.lru_cache(maxsize=4096)
def game_places(game_dir: str) -> GamePlaces:
    """What a game's traj_data.json says about its object's usual places."""
    traj = json.loads((Path(game_dir) / "traj_data.json").read_text())
    params = traj["pddl_params"]
    target, goal = params["object_target"], params.get("parent_target", "")
    recorded = traj.get("sdar_generator", {}).get("usual_places")
    if recorded:
        return GamePlaces(target, tuple(recorded), goal)
    return GamePlaces(target, usual_order(target) if target in OBJECT_PRIORS else (), goal)


def usual_places_skill(task: Task) -> str:
    """The skill line of one ALFWorld task. A task without a game (the prompt-budget probe) gets the longest
    line any object type has, so that the budget is an upper bound."""
    game_dir = (task.metadata or {}).get("game_dir")
    if game_dir is None:
        lines = [usual_places_line(o, usual_order(o)) for o in OBJECT_PRIORS if o not in LIGHT_SOURCES]
        return max(lines, key=len)
    target, places, _ = game_places(str(game_dir))
    if not places:
        return f"No usual place is known for a {target.lower()}: look everywhere."
    return usual_places_line(target, places)


ALFWORLD_PLACES_LIBRARY = register_skill_library(
    SkillLibrary(
        "alfworld-places",
        SKILL_DIR / "alfworld",
        route=lambda task: [],  # no file skills: the generated line is the whole context
        always=(),
        generated=usual_places_skill,
        routed_skills=(),  # reads no skill file, so it needs none in a teacher.skills_dir
    )
)
