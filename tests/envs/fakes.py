"""Test doubles for the env layer: a scripted ALFWorld-like engine and a tiny generic TextEnv.

They live in a module (not in a test file) so that pool workers, started with `spawn`, can import them.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from sdar.env_records import StepResult, Task
from sdar.envs.alfworld.engine import EngineState

FAKE_PLAN = ["go to shelf 1", "take mug 1 from shelf 1", "put mug 1 in/on table 1"]


def write_fake_game(
    root: Path,
    relative: str,
    *,
    task_type="pick_and_place_simple",
    solvable=True,
    plan=None,
    with_game=True,
    fail_on_reset=False,
    planner_fails=False,
) -> Path:
    """A game folder in the official layout whose game.tw-pddl carries a script for FakeEngine."""
    folder = root / relative
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "traj_data.json").write_text(json.dumps({"task_type": task_type}))
    if with_game:
        script = {
            "plan": plan or FAKE_PLAN,
            "goal": f"put a mug in table ({relative})",
            "fail_on_reset": fail_on_reset,
            "planner_fails": planner_fails,
        }
        (folder / "game.tw-pddl").write_text(json.dumps({"solvable": solvable, "fake": script}))
    return folder


class FakeEngine:
    """A scripted game: following `plan` in order wins; `drop mug` undoes progress; magic words misbehave.

    `explode` raises, `hang` sleeps for an hour, `segfault` kills the process. Counters are per process.
    """

    loads = 0
    plans = 0

    def __init__(self, game_file: str):
        type(self).loads += 1
        self.script = json.loads(Path(game_file).read_text())["fake"]
        self.plan_steps = list(self.script["plan"])
        self.progress = 0
        self.commands: list[str] = []
        self.closed = False

    def _state(self, text: str) -> EngineState:
        won = self.progress == len(self.plan_steps)
        admissible = ["look", "inventory", "drop mug", *self.plan_steps[self.progress : self.progress + 1]]
        return EngineState(text, tuple(admissible), won)

    def reset(self) -> EngineState:
        if self.script.get("fail_on_reset"):
            raise RuntimeError("this game cannot be loaded")
        self.progress = 0
        self.commands = []
        return self._state(f"You are in the middle of a room.\n\nYour task is to: {self.script['goal']}")

    def step(self, command: str) -> EngineState:
        self.commands.append(command)
        if command == "explode":
            raise RuntimeError("engine exploded")
        if command == "hang":
            time.sleep(3600)
        if command == "segfault":
            os._exit(139)
        if self.progress < len(self.plan_steps) and command == self.plan_steps[self.progress]:
            self.progress += 1
            return self._state(f"You did: {command}.")
        if command == "drop mug" and self.progress:
            self.progress = 0
            return self._state("You put everything back.")
        if command in ("look", "inventory"):
            return self._state("You see the room.")
        return self._state("Nothing happens.")

    def plan(self) -> list[str]:
        type(self).plans += 1
        if self.script.get("planner_fails"):
            raise RuntimeError("planner crashed")
        return self.plan_steps[self.progress :]

    def close(self) -> None:
        self.closed = True


class CounterEnv:
    """A generic TextEnv: observation `task:step:action`; `win` wins; `raise`/`hang`/`crash` misbehave."""

    def __init__(self, delay_s: float = 0.0):
        self.delay_s = delay_s
        self.task_id = None
        self.count = 0

    def task_ids(self, split: str) -> list[str]:
        return [f"{split}-{i}" for i in range(5)]

    def reset(self, task_id: str) -> tuple[Task, StepResult]:
        if task_id == "raise":
            raise ValueError("cannot reset this task")
        self.task_id, self.count = task_id, 0
        return Task(task_id, "counter", f"count for {task_id}"), StepResult(
            f"{task_id}:0", admissible_actions=("a", "b", "win"), info={"pid": os.getpid()}
        )

    def step(self, action: str) -> StepResult:
        if self.task_id is None:
            raise RuntimeError("reset first")
        time.sleep(self.delay_s)
        if action == "raise":
            raise RuntimeError("step failed on purpose")
        if action == "hang":
            time.sleep(3600)
        if action == "crash":
            os._exit(3)
        self.count += 1
        won = action == "win"
        return StepResult(
            f"{self.task_id}:{self.count}:{action}",
            reward=1.0 if won else 0.0,
            done=won,
            won=won,
            admissible_actions=("a", "b", "win"),
            info={"pid": os.getpid()},
        )

    def expert_action(self) -> str | None:
        return "win" if self.task_id is not None else None

    def close(self) -> None:
        self.task_id = None
