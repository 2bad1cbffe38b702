"""One ALFWorld game file on the real engine (TextWorld's PDDL backend with alfworld's name demangling).

This is the lowest layer: load a `game.tw-pddl`, reset, step a command, ask the planner for the rest of a
solution. Official games (classic `put X in/on Y` grammar) and our generated games both run through it.
Heavy imports (textworld, alfworld) happen on first use, with an error that names the extra to install.
"""

from __future__ import annotations

import copy
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

TASK_TYPES = (
    "pick_and_place_simple",
    "look_at_obj_in_light",
    "pick_clean_then_place_in_recep",
    "pick_heat_then_place_in_recep",
    "pick_cool_then_place_in_recep",
    "pick_two_obj_and_place",
)

_WELCOME = re.compile(r"^\s*-= Welcome to TextWorld, ALFRED! =-\s*")
_GOAL = re.compile(r"Your task is to:\s*(.+?)\s*$", re.DOTALL)


def _import_engine():
    try:
        import textworld
        from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredInfos
        from textworld.envs.pddl import textgen
    except ImportError as error:
        raise ImportError(
            f"the ALFWorld engine is not installed ({error}); install it with: pip install 'sdar[alfworld]'"
        ) from None
    _memoise_template_parsing(textgen)
    return textworld, AlfredDemangler, AlfredInfos


def _memoise_template_parsing(textgen) -> None:
    """Cache TextWorld's grammar-template parses (it re-parses the same templates with TatSu on every step).

    The parse of a template string is a pure function of its arguments; callers get a deep copy, so nothing
    they do can alter the cache. This roughly doubles engine steps per second (benchmarks/README.md).
    """
    if getattr(textgen, "_sdar_memoised", False):
        return
    parse = textgen._parse_and_convert
    cache: dict = {}

    def memoised(*args, **kwargs):
        key = (args, tuple(sorted(kwargs.items())))
        try:
            hit = cache.get(key)
        except TypeError:  # an unhashable argument: parse as TextWorld would
            return parse(*args, **kwargs)
        if hit is None:
            hit = cache[key] = parse(*args, **kwargs)
        return copy.deepcopy(hit)

    textgen._parse_and_convert = memoised
    textgen._sdar_memoised = True


@dataclass(frozen=True)
class EngineState:
    """What one reset/step of the engine returned, already demangled and cleaned."""

    observation: str
    admissible_commands: tuple[str, ...]
    won: bool


def read_task_type(game_dir: str | Path) -> str:
    """The ALFWorld task type of a game folder, from its traj_data.json."""
    traj = json.loads((Path(game_dir) / "traj_data.json").read_text())
    task_type = traj.get("task_type")
    if task_type not in TASK_TYPES:
        raise ValueError(
            f"{game_dir}: unknown task_type {task_type!r}; expected one of {', '.join(TASK_TYPES)}"
        )
    return task_type


def split_goal(observation: str) -> str:
    """The goal sentence of a first observation ('Your task is to: put a mug in cabinet.')."""
    match = _GOAL.search(observation)
    return match.group(1).strip() if match else ""


class AlfworldGame:
    """A single loaded game. Not thread-safe; one per worker."""

    def __init__(self, game_file: str | Path):
        textworld, demangler, infos_wrapper = _import_engine()
        self.game_file = str(game_file)
        if not Path(self.game_file).is_file():
            raise FileNotFoundError(f"no ALFWorld game file at {self.game_file}")
        request = textworld.EnvInfos(won=True, admissible_commands=True, extras=["gamefile"])
        with warnings.catch_warnings():
            # textworld 1.7's PddlEnv.load reads the game with `json.load(open(path))` and leaves the file to
            # the garbage collector: a ResourceWarning per loaded game, about a file already read and freed.
            warnings.filterwarnings("ignore", r"unclosed file .*game\.tw-pddl", ResourceWarning)
            self._env = textworld.start(self.game_file, request, wrappers=[demangler(), infos_wrapper])
        self._pddl_env = self._env
        while hasattr(self._pddl_env, "_wrapped_env"):
            self._pddl_env = self._pddl_env._wrapped_env

    def _state(self, game_state) -> EngineState:
        observation = _WELCOME.sub("", game_state.feedback or "").strip()
        return EngineState(observation, tuple(game_state.admissible_commands or ()), bool(game_state.won))

    def reset(self) -> EngineState:
        return self._state(self._env.reset())

    def step(self, command: str) -> EngineState:
        game_state, _, _ = self._env.step(command)
        return self._state(game_state)

    def plan(self) -> list[str]:
        """The planner's remaining solution from the current state (fast-downward; slow on a few games)."""
        return list(self._pddl_env._pddl_state.replan(self._pddl_env._entity_infos) or [])

    def close(self) -> None:
        self._env.close()
