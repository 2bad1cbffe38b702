"""The WebShop skill library (docs/method.md §4): general shopping skills plus one skill per goal category.

Routing is by keywords on the goal text (sdar.envs.webshop.categories): apparel, footwear, home_decor,
electronics, accessories, beauty_health, and other when no keyword matches; every matching category's skill is
included, in that fixed order. A task whose `task_type` is not one of the seven categories raises (no silent
general-only fallback).
"""

from __future__ import annotations

from pathlib import Path

from sdar.env_records import Task
from sdar.envs.webshop.categories import CATEGORIES, goal_categories
from sdar.skills.library import SkillLibrary, UnknownTaskTypeError, register_skill_library


def route_webshop(task: Task) -> list[str]:
    """Category skills of a WebShop task: every category whose keywords its goal contains (else "other")."""
    if task.task_type not in CATEGORIES:
        raise UnknownTaskTypeError(
            f"no WebShop skill route for task type {task.task_type!r}; "
            f"known categories: {', '.join(CATEGORIES)}"
        )
    return list(dict.fromkeys([task.task_type, *goal_categories(task.goal)]))


WEBSHOP_LIBRARY = register_skill_library(SkillLibrary("webshop", Path(__file__).parent, route=route_webshop))
