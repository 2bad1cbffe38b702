"""Lockbox: a complete sdar plugin, your own text environment plus its skill library.

The agent must open a coloured chest. Its key is hidden in one of the room's places; keys of each colour are
usually kept in one kind of place (red under the rug, ...), which the teacher's skills say and the student's
prompt does not: the privileged information SDAR distils.

    sdar eval examples/lockbox/config.yaml eval.policy=expert    # the expert solves every task
    sdar train examples/lockbox/config.yaml                       # SDAR with the tiny test model

The config names this file under `plugins:`; importing it registers the env and its skills (sdar/plugins.py).
"""

from __future__ import annotations

import random
from pathlib import Path

from sdar.envs import EnvSpec, StepResult, Task, register_env, template_prompt
from sdar.envs.replies import parse_action_reply
from sdar.skills.library import SkillLibrary, UnknownTaskTypeError, register_skill_library

HERE = Path(__file__).resolve().parent
USUAL_PLACE = {"red": "rug", "blue": "vase", "green": "drawer", "gold": "wardrobe"}  # what the skills say
PLACES = ("bed", "desk", "drawer", "rug", "shelf", "vase", "wardrobe", "basket")


class LockboxEnv:
    """The TextEnv protocol (sdar/envs/base.py): task_ids, reset, step, expert_action, close."""

    def __init__(self, data_dir=None, places: int = 5, prior: float = 0.8, tasks_per_split: int = 32):
        # sdar calls the factory with env.data_dir (unused here: no data) and env.options as keywords
        self.num_places, self.prior, self.tasks_per_split = places, prior, tasks_per_split

    def task_ids(self, split: str) -> list[str]:
        return [f"{split}-{index}" for index in range(self.tasks_per_split)]

    def reset(self, task_id: str) -> tuple[Task, StepResult]:
        rng = random.Random(task_id)  # a task id always draws the same room
        index = int(task_id.rpartition("-")[2])
        self.color = sorted(USUAL_PLACE)[index % len(USUAL_PLACE)]  # every colour equally often in a panel
        usual = USUAL_PLACE[self.color]
        others = rng.sample([place for place in PLACES if place != usual], self.num_places - 1)
        self.places = sorted([usual, *others])
        self.key_place = usual if rng.random() < self.prior else rng.choice(others)
        self.found = self.held = False
        goal = f"open the {self.color} chest"
        seen = ", ".join(f"a {place}" for place in self.places)
        first = f"You are in a bedroom. You see {seen}, and a {self.color} chest."
        return Task(task_id, self.color, goal), self._result(f"{first}\nYour task is to: {goal}.")

    def step(self, action: str) -> StepResult:
        key, chest = f"{self.color} key", f"{self.color} chest"
        if action.startswith("search ") and action[len("search ") :] in self.places:
            place = action[len("search ") :]
            if place == self.key_place and not self.held:
                self.found = True
                return self._result(f"You find a {key} in the {place}.")
            return self._result(f"You find nothing in the {place}.")
        if action == f"take {key}" and self.found and not self.held:
            self.held = True
            return self._result(f"You take the {key}.")
        if action == f"open {chest}":
            if self.held:
                return StepResult(f"The {chest} opens.", reward=1.0, done=True, won=True)
            return self._result(f"The {chest} is locked.")
        return self._result("Nothing happens.")

    def expert_action(self) -> str:
        if self.held:
            return f"open {self.color} chest"
        return f"take {self.color} key" if self.found else f"search {self.key_place}"

    def close(self) -> None:
        pass

    def _result(self, observation: str) -> StepResult:
        actions = [f"search {place}" for place in self.places]
        if self.found and not self.held:
            actions.append(f"take {self.color} key")
        return StepResult(observation, admissible_actions=(*actions, f"open {self.color} chest"))


def route(task: Task) -> list[str]:
    """The skill file of the task's colour. A task it cannot route fails loudly, never general skills only."""
    if task.task_type not in USUAL_PLACE:
        known = ", ".join(sorted(USUAL_PLACE))
        raise UnknownTaskTypeError(f"no lockbox skill for colour {task.task_type!r}; known: {known}")
    return [task.task_type]


register_env(
    EnvSpec(
        name="lockbox",
        factory=LockboxEnv,
        description="find the key, open the chest (examples/lockbox)",
        build_prompt=template_prompt(HERE / "templates"),  # first_turn.txt, with_history.txt
        parse_reply=parse_action_reply,  # <think>...</think><action>...</action>
        stop_strings=("</action>",),
        task_types=tuple(sorted(USUAL_PLACE)),
    )
)
register_skill_library(SkillLibrary("lockbox", HERE / "skills", route))
