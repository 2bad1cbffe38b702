"""The toy env's skill library: general skills plus one per chest colour, saying where its key usually is
(sdar.envs.toy.env.USUAL_PLACE): what the teacher knows and the student's prompt does not."""

from __future__ import annotations

from pathlib import Path

from sdar.env_records import Task
from sdar.envs.toy.env import COLOURS
from sdar.skills.library import SkillLibrary, UnknownTaskTypeError, register_skill_library


def route_toy(task: Task) -> list[str]:
    """The skill of the chest's colour; a task of another colour raises (never general skills only)."""
    if task.task_type not in COLOURS:
        raise UnknownTaskTypeError(f"no toy skill for colour {task.task_type!r}; known: {', '.join(COLOURS)}")
    return [task.task_type]


TOY_LIBRARY = register_skill_library(SkillLibrary("toy", Path(__file__).parent, route=route_toy))
