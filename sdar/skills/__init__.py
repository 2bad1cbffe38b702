"""Skill libraries (markdown per env) and rule-based routing to the teacher's privileged context.

Importing the package registers every library it ships: ALFWorld's (library.py), then those in their own
modules, which register themselves on import and import library.py, never the reverse.
"""

# Imported for their registrations: object_location (alfworld-location, -half), search_qa, toy, usual_places
# (alfworld-places) and webshop.
from sdar.skills import object_location, search_qa, toy, usual_places, webshop  # noqa: F401
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
