"""Skill libraries: markdown skill files per env, rule-based routing, and the teacher's skill text (§4).

A library is data plus one routing function, registered under the env name:
- `directory` holds one `<skill>.md` per skill: a short heading, then numbered "principle. When: ..." items.
- `always` names the skills every task gets (the general skills).
- `route(task)` returns the category skill names for a task. It RAISES on a task it cannot route: a silent
  general-only fallback is how the authors' release shipped its ALFWorld teacher broken (the task type never
  reached the router, so every teacher saw the general skills only).
- `generated(task)`, optional, computes one more skill from the task itself (e.g. `alfworld-places`: where
  this game's object usually is); it comes after the file skills.

`teacher_context(env_name, task)` is the exact skill text the teacher sees: the `always` skills, then the
routed skills, each file's text stripped, joined by one blank line. Where that text goes in the teacher prompt
(the release's raw "[Privileged Skill Information]" prefix, or a section inside the chat template) is the
teacher's placement choice, not the library's.

Adding an env (WebShop by goal keywords, Search-QA by dataset / question form) = a folder of .md files plus
`register_skill_library(SkillLibrary(name, folder, route))`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sdar.envs.base import Task

SKILL_DIR = Path(__file__).parent


class UnknownTaskTypeError(ValueError):
    """A task the router has no rule for; the message names the valid choices."""


@dataclass(frozen=True)
class SkillLibrary:
    env_name: str
    directory: Path
    route: Callable[[Task], list[str]]  # the category skills of a task; raises UnknownTaskTypeError
    always: tuple[str, ...] = ("general",)
    generated: Callable[[Task], str] | None = None  # a skill computed from the task, after the file skills

    def skill_names(self) -> list[str]:
        """Every skill file in the library, sorted."""
        return sorted(path.stem for path in Path(self.directory).glob("*.md"))

    def load(self, name: str) -> str:
        return _read_skill(Path(self.directory) / f"{name}.md")

    def skills_for(self, task: Task) -> list[str]:
        """The `always` skills then the routed ones, without duplicates, in order."""
        return list(dict.fromkeys([*self.always, *self.route(task)]))

    def context(self, task: Task) -> str:
        texts = [self.load(name) for name in self.skills_for(task)]
        if self.generated is not None:
            texts.append(self.generated(task))
        return "\n\n".join(texts)


@functools.lru_cache(maxsize=256)
def _read_skill(path: Path) -> str:
    if not path.is_file():
        library = path.parent
        known = ", ".join(sorted(p.stem for p in library.glob("*.md"))) or "(none)"
        raise FileNotFoundError(f"skill file {path} does not exist; skills in {library}: {known}")
    return path.read_text(encoding="utf-8").strip()


SKILL_LIBRARIES: dict[str, SkillLibrary] = {}


def register_skill_library(library: SkillLibrary) -> SkillLibrary:
    if library.env_name in SKILL_LIBRARIES:
        raise ValueError(f"a skill library for env {library.env_name!r} is registered twice")
    SKILL_LIBRARIES[library.env_name] = library
    return library


def get_skill_library(env_name: str) -> SkillLibrary:
    if env_name not in SKILL_LIBRARIES:
        known = ", ".join(sorted(SKILL_LIBRARIES)) or "(none)"
        raise KeyError(f"no skill library for env {env_name!r}; libraries: {known}")
    return SKILL_LIBRARIES[env_name]


def library_name(env_spec, chosen: str = "") -> str:
    """The skill library a run uses: `chosen` (teacher.skill_library), else the env's own, else its name."""
    return chosen or env_spec.skill_library or env_spec.name


def teacher_context(env_name: str, task: Task) -> str:
    """The exact skill text the teacher sees for `task`: general skills + the routed category skill(s)."""
    return get_skill_library(env_name).context(task)


# --- ALFWorld: routed by the game's task type (the first field of its folder name) --------------------------

ALFWORLD_ROUTES: dict[str, tuple[str, ...]] = {
    "pick_and_place_simple": ("pick",),
    "pick_two_obj_and_place": ("pick", "pick_two"),  # shares the pick skill, plus the two-object note
    "look_at_obj_in_light": ("look",),
    "pick_heat_then_place_in_recep": ("heat",),
    "pick_cool_then_place_in_recep": ("cool",),
    "pick_clean_then_place_in_recep": ("clean",),
}


def route_alfworld(task_type: str) -> list[str]:
    """Category skill names for an ALFWorld task type; raises UnknownTaskTypeError for anything else."""
    if task_type not in ALFWORLD_ROUTES:
        raise UnknownTaskTypeError(
            f"no ALFWorld skill route for task type {task_type!r}; "
            f"known task types: {', '.join(ALFWORLD_ROUTES)}"
        )
    return list(ALFWORLD_ROUTES[task_type])


register_skill_library(
    SkillLibrary("alfworld", SKILL_DIR / "alfworld", route=lambda task: route_alfworld(task.task_type))
)

# Libraries that live in their own package register themselves on import (kept last: they import this module).
import sdar.skills.search_qa  # noqa: E402, F401
import sdar.skills.usual_places  # noqa: E402, F401
import sdar.skills.webshop  # noqa: E402, F401
