"""Fixed evaluation panels (docs/method.md §7): the env's tasks of one split, in the env's own fixed order.

A panel is the first `num_tasks` tasks (0 = all) of `env.task_ids(split)`, or with `spread` that many tasks
evenly spaced over the split's order (a subset that keeps every task type when the order groups them). Its
fingerprint is the first 16 hex digits of sha256 over the newline-joined PORTABLE task ids, so two results
with the same fingerprint were measured on the same tasks, whatever machine produced them. A portable id
drops the machine-specific part of a path id: an absolute path keeps its last three components (for
generated ALFWorld games `<generator settings key>/<task folder>/<trial>`; for official games given as
folders `<split>/<task>/<trial>`, the shape of the official env's relative ids); any other id (relative
path, goal index, question id) is kept as is.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import PurePosixPath

from sdar.errors import ConfigError

# Paper Table 1 column names of the ALFWorld task types (docs/method.md §7); other envs show their own type
# names.
TASK_TYPE_LABELS = {
    "pick_and_place_simple": "Pick",
    "look_at_obj_in_light": "Look",
    "pick_clean_then_place_in_recep": "Clean",
    "pick_heat_then_place_in_recep": "Heat",
    "pick_cool_then_place_in_recep": "Cool",
    "pick_two_obj_and_place": "Pick2",
}


def portable_task_id(task_id: str) -> str:
    """The machine-independent part of a task id (see the module docstring)."""
    path = PurePosixPath(task_id)
    if path.is_absolute():
        return "/".join(path.parts[-3:])
    return task_id


def panel_fingerprint(task_ids) -> str:
    """16 hex digits of sha256 over the newline-joined portable ids, in panel order."""
    joined = "\n".join(portable_task_id(task_id) for task_id in task_ids)
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Panel:
    env: str
    split: str
    task_ids: tuple[str, ...]
    available: int  # tasks in the whole split
    spread: bool = False  # the tasks are evenly spaced over the split, not its first ones

    @property
    def name(self) -> str:
        """e.g. `alfworld/valid_seen` (whole split), `alfworld-gen/valid[:6]` (its first 6 tasks) or
        `alfworld/valid_seen[36 spread]` (36 tasks evenly spaced over it)."""
        size = len(self.task_ids)
        if size == self.available:
            return f"{self.env}/{self.split}"
        return f"{self.env}/{self.split}" + (f"[{size} spread]" if self.spread else f"[:{size}]")

    @property
    def fingerprint(self) -> str:
        return panel_fingerprint(self.task_ids)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "env": self.env,
            "split": self.split,
            "size": len(self.task_ids),
            "split_size": self.available,
            "fingerprint": self.fingerprint,
        }


def build_panel(list_tasks, env_name: str, split: str, num_tasks: int = 0, spread: bool = False) -> Panel:
    """`list_tasks(split)` (an env's or a pool's `task_ids`) -> the panel; a bad split is a ConfigError."""
    try:
        task_ids = list(list_tasks(split))
    except (KeyError, ValueError, RuntimeError) as error:
        reason = error.args[0] if error.args else error
        raise ConfigError(
            f"eval.split={split!r}: env {env_name!r} cannot list that split: {reason}; "
            f"set eval.split to one of the env's splits"
        ) from None
    if not task_ids:
        raise ConfigError(f"eval.split={split!r}: env {env_name!r} has no tasks in that split")
    if not num_tasks or num_tasks >= len(task_ids):
        chosen = task_ids
    elif spread:  # task i of n sits at floor(i * available / n): first task kept, the rest evenly spaced
        chosen = [task_ids[i * len(task_ids) // num_tasks] for i in range(num_tasks)]
    else:
        chosen = task_ids[:num_tasks]
    return Panel(env_name, split, tuple(chosen), len(task_ids), spread=spread)
