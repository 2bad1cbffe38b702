"""`teacher.contexts`: the privileged contexts of several teachers as typed records (docs/method.md §9).

The same network scores the student's tokens once per context; each token learns from the context of largest
gap (sdar.algorithms.distill.route_by_largest_gap). A context is what the one teacher of the `teacher`
section is parametrised by: the skill library it reads, a folder of that library's texts, the weights it
scores with; and, new, whether it reads skills at all. No torch here: sdar.config checks the section with it.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from sdar.config_files import from_dict
from sdar.errors import ConfigError

# A context's name is part of its metric keys (distill/teacher_<name>/share).
NAME = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class TeacherContext:
    """One teacher: `skill_library` ("" = the env's own) routed over `skills_dir`'s texts ("" = the library's
    own files), scored with `weights` (teacher.weights' choices); `skills: false` = no privileged text at all,
    the student's own prompt (e.g. with weights base: the initial model as a teacher)."""

    name: str
    skill_library: str = ""
    skills_dir: str = ""
    weights: str = "live"
    skills: bool = True


def teacher_contexts(section: Any) -> tuple[TeacherContext, ...]:
    """The teacher section's contexts in their order, a field a context leaves out taken from the section
    (skill_library, skills_dir, weights); () when it names none. Raises ConfigError naming a bad one."""
    inherited = {name: getattr(section, name) for name in ("skill_library", "skills_dir", "weights")}
    weight_kinds = next(f.metadata["choices"] for f in dataclasses.fields(section) if f.name == "weights")
    contexts = []
    for name, fields in section.contexts.items():
        where = f"teacher.contexts.{name}"
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise ConfigError(f"{where}: a context's name is letters, digits, '_', '.' or '-' (got {name!r})")
        if fields is not None and not isinstance(fields, dict):
            raise ConfigError(
                f"{where}={fields!r} must be a mapping (skill_library, skills_dir, weights, skills)"
            )
        if "name" in (fields or {}):
            raise ConfigError(f"{where}: the context's name is its key; leave out name:")
        context = from_dict(TeacherContext, {**inherited, **(fields or {}), "name": name}, where)
        if context.weights not in weight_kinds:
            raise ConfigError(
                f"{where}.weights={context.weights!r} is not valid; choose one of: {', '.join(weight_kinds)}"
            )
        contexts.append(context)
    return tuple(contexts)


def section_contexts(section: Any) -> tuple[TeacherContext, ...]:
    """The teachers a run scores: the section's contexts, or without any its one teacher (named "teacher")."""
    contexts = teacher_contexts(section)
    if contexts:
        return contexts
    return (TeacherContext("teacher", section.skill_library, section.skills_dir, section.weights),)


def teacher_weight_kinds(section: Any) -> tuple[str, ...]:
    """The distinct weights (teacher.weights' choices) the run's teachers score with, in their order."""
    return tuple(dict.fromkeys(context.weights for context in section_contexts(section)))
