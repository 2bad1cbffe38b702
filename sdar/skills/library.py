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

`teacher.skills_dir` swaps a library's texts for a folder of the user's own (the release's skills, say):
`library_name(spec, chosen, skills_dir)` registers the library's routing over that folder under
"<library>@<folder>", after checking that the folder holds a non-empty `<skill>.md` for every skill the
library reads (`SkillLibrary.file_skills`). docs/skills.md describes the files and how ours differ.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sdar.env_records import Task
from sdar.errors import ConfigError

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
    # The file skills `always` and `route` can name; None = every .md file of `directory`.
    routed_skills: tuple[str, ...] | None = None

    def skill_names(self) -> list[str]:
        """Every skill file in the library, sorted."""
        return sorted(path.stem for path in Path(self.directory).glob("*.md"))

    def file_skills(self) -> list[str]:
        """The skills this library can read from its folder: `always`, then the routed ones."""
        routed = self.skill_names() if self.routed_skills is None else self.routed_skills
        return list(dict.fromkeys([*self.always, *routed]))

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


def library_name(env_spec, chosen: str = "", skills_dir: str | Path = "") -> str:
    """The skill library a run uses: `chosen` (teacher.skill_library), else the env's own, else its name;
    with `skills_dir` (teacher.skills_dir), that library's routing over the folder's files (`folder_library`).
    """
    name = chosen or env_spec.skill_library or env_spec.name
    if not skills_dir:
        return name
    return folder_library(name, Path(skills_dir), env_spec.task_types).env_name


def folder_library(name: str, folder: Path, task_types: Sequence[str] = ()) -> SkillLibrary:
    """Library `name`'s routing over the skill files of `folder`, registered as "<name>@<folder>".

    Raises ConfigError for a folder that does not exist, a skill the library reads without its
    `<skill>.md` (naming the task types routed to it, from `task_types`), or an empty skill file.
    """
    base = get_skill_library(name)
    folder = folder.expanduser().resolve()
    if not folder.is_dir():
        raise ConfigError(
            f"teacher.skills_dir={str(folder)!r} is not a folder; point it at a folder holding one "
            f"<skill>.md per skill of the {name!r} library ({', '.join(base.file_skills())})"
        )
    for skill in base.file_skills():
        path, ours = folder / f"{skill}.md", Path(base.directory) / f"{skill}.md"
        if not path.is_file():
            raise ConfigError(
                f"teacher.skills_dir: {path} is missing, and {_readers(base, skill, task_types)} read(s) "
                f"skill {skill!r} of the {name!r} library; add that file (ours: {ours})"
            )
        if not path.read_text(encoding="utf-8").strip():
            raise ConfigError(
                f"teacher.skills_dir: {path} is empty; write skill {skill!r} into it (ours: {ours})"
            )
    registered = f"{name}@{folder}"
    if registered not in SKILL_LIBRARIES:
        register_skill_library(dataclasses.replace(base, env_name=registered, directory=folder))
    return SKILL_LIBRARIES[registered]


def _readers(library: SkillLibrary, skill: str, task_types: Sequence[str]) -> str:
    """Who reads `skill`: every task, the task types routed to it, or some tasks (a goal-dependent route)."""
    if skill in library.always:
        return "every task"
    routed = []
    for task_type in task_types:
        try:
            if skill in library.route(Task(task_id="skills-dir-check", task_type=task_type, goal="")):
                routed.append(task_type)
        except UnknownTaskTypeError:
            continue
    return f"task type(s) {', '.join(routed)}" if routed else "some tasks"


def skills_dir_fingerprint(skills_dir: str | Path) -> str:
    """16 hex characters naming the .md files of a skills folder (their names and texts), for cache keys."""
    digest = hashlib.sha256()
    for path in sorted(Path(skills_dir).expanduser().glob("*.md")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


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
