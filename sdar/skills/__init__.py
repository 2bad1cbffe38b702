"""Skill libraries (markdown per env) and rule-based routing to the teacher's privileged context."""

from sdar.skills.library import (
    ALFWORLD_ROUTES,
    SKILL_LIBRARIES,
    SkillLibrary,
    UnknownTaskTypeError,
    get_skill_library,
    library_name,
    register_skill_library,
    route_alfworld,
    teacher_context,
)

__all__ = [
    "ALFWORLD_ROUTES",
    "SKILL_LIBRARIES",
    "SkillLibrary",
    "UnknownTaskTypeError",
    "get_skill_library",
    "library_name",
    "register_skill_library",
    "route_alfworld",
    "teacher_context",
]
