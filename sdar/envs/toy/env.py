"""ToyEnv: find the key of the chest's colour, then open the chest; three turns when you know where to look.

A room holds `places` of PLACES and a chest of one colour. The chest's key lies in its colour's usual place
(USUAL_PLACE) with probability `prior`, else in one of the room's other places. The teacher's skills
(sdar/skills/toy) say where each colour's key is usually kept and the student's prompt does not: the
privileged information SDAR distils, as ALFWorld's skills say where objects usually are.

Tasks are "<split>-<index>" (splits: SPLITS, `tasks_per_split` each). A task id always draws the same room,
and the colours take turns by index, so a panel's first 4k tasks hold each colour k times. The expert knows
where the key is: search there, take the key, open the chest. With `expert_detours` p it first searches
another place of the room in a share p of the tasks (drawn from the task id apart from the room), so that
its demonstrations also show what to do after a search that finds nothing.
"""

from __future__ import annotations

import random

from sdar.env_records import StepResult, Task
from sdar.errors import ConfigError

USUAL_PLACE = {"blue": "vase", "gold": "wardrobe", "green": "drawer", "red": "rug"}  # what the skills say
COLOURS = tuple(sorted(USUAL_PLACE))
PLACES = ("basket", "bed", "desk", "drawer", "rug", "shelf", "vase", "wardrobe")
SPLITS = ("train", "valid", "test")
EPISODE_OVER = "The episode is over."


class ToyEnv:
    """The TextEnv protocol (sdar.envs.base) over one room at a time."""

    def __init__(
        self, places: int = 5, prior: float = 0.8, tasks_per_split: int = 32, expert_detours: float = 0.0
    ):
        if not 2 <= places <= len(PLACES):
            raise ConfigError(f"env.options.places={places}: choose 2 to {len(PLACES)} places per room")
        if not 0.0 <= prior <= 1.0:
            raise ConfigError(f"env.options.prior={prior}: a probability, 0 to 1")
        if tasks_per_split < 1:
            raise ConfigError(f"env.options.tasks_per_split={tasks_per_split}: at least 1")
        if not 0.0 <= expert_detours <= 1.0:
            raise ConfigError(f"env.options.expert_detours={expert_detours}: a probability, 0 to 1")
        self.num_places, self.prior, self.tasks_per_split = places, prior, tasks_per_split
        self.expert_detours = expert_detours
        self.colour = self.key_place = self.detour = ""
        self.places: list[str] = []
        self.searched: set[str] = set()
        self.found = self.held = self.done = False

    def task_ids(self, split: str) -> list[str]:
        if split not in SPLITS:
            raise ValueError(f"the toy env has no split {split!r}; valid splits: {', '.join(SPLITS)}")
        return [f"{split}-{index}" for index in range(self.tasks_per_split)]

    def reset(self, task_id: str) -> tuple[Task, StepResult]:
        rng = random.Random(task_id)  # a task id always draws the same room
        self.colour = COLOURS[int(task_id.rpartition("-")[2]) % len(COLOURS)]
        usual = USUAL_PLACE[self.colour]
        others = rng.sample([place for place in PLACES if place != usual], self.num_places - 1)
        self.places = sorted([usual, *others])
        self.key_place = usual if rng.random() < self.prior else rng.choice(others)
        detours = random.Random(f"{task_id}/detour")  # apart from the room's draws: rooms stay as they were
        elsewhere = [place for place in self.places if place != self.key_place]
        self.detour = detours.choice(elsewhere) if detours.random() < self.expert_detours else ""
        self.searched = set()
        self.found = self.held = self.done = False
        goal = f"open the {self.colour} chest"
        seen = ", ".join(f"a {place}" for place in self.places)
        first = f"You are in a bedroom. You see {seen}, and a {self.colour} chest."
        return Task(task_id, self.colour, goal), self._result(f"{first}\nYour task is to: {goal}.")

    def step(self, action: str) -> StepResult:
        if self.done or not self.colour:
            return StepResult(EPISODE_OVER, done=True)
        key, chest = f"{self.colour} key", f"{self.colour} chest"
        place = action.removeprefix("search ")
        if action.startswith("search ") and place in self.places:
            self.searched.add(place)
            if place == self.key_place and not self.held:
                self.found = True
                return self._result(f"You find a {key} in the {place}.")
            return self._result(f"You find nothing in the {place}.")
        if action == f"take {key}" and self.found and not self.held:
            self.held = True
            return self._result(f"You take the {key}.")
        if action == f"open {chest}":
            if self.held:
                self.done = True
                return StepResult(f"The {chest} opens.", reward=1.0, done=True, won=True)
            return self._result(f"The {chest} is locked.")
        return self._result("Nothing happens.")

    def expert_action(self) -> str | None:
        if self.done or not self.colour:
            return None
        if self.held:
            return f"open {self.colour} chest"
        if self.found:
            return f"take {self.colour} key"
        if self.detour and self.detour not in self.searched:
            return f"search {self.detour}"
        return f"search {self.key_place}"

    def close(self) -> None:
        pass

    def _result(self, observation: str) -> StepResult:
        actions = [f"search {place}" for place in self.places]
        if self.found and not self.held:
            actions.append(f"take {self.colour} key")
        return StepResult(observation, admissible_actions=(*actions, f"open {self.colour} chest"))
