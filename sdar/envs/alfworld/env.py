"""`AlfworldEnv`: the TextEnv over ALFWorld game folders (official `json_2.1.1/<split>` data or generated).

- Tasks. `task_ids(split)` lists the game folders of a split that alfworld's own `collect_game_files` keeps
  (one of the 6 task types, no `movable`/`Sliced` in the path, a `game.tw-pddl` with `solvable: true`), sorted
  by relative path, so panels are fixed. Official ids read `valid_seen/<type-folder>/<trial>`. Games given
  as explicit folders (generated games) keep the given order and are identified by their absolute paths.
  A split with no games is an error: the engine would otherwise hang forever on reset (machine-notes).
- Episodes. reset() loads the game (the last loaded game is kept, so the G episodes of a group skip the ~1 s
  load) and returns the first observation with its admissible commands; step() gives reward 10 and done on a
  win (docs/method.md §1: ALFWorld gives 10 on success, else 0). The env records the steps it took but does
  not cut episodes: the rollout enforces T_max.
- Robustness. Actions are cleaned before the engine sees them (`clean_action`): control/invisible characters
  dropped, whitespace collapsed, lower-cased (the grammar is lower-case and the release lower-cases replies)
  and cut to `max_action_chars`; anything unknown gets the engine's own "Nothing happens.". An engine
  exception ends the episode as failed (done, not won, `info["error"]`) and the engine is rebuilt on the next
  reset. Hangs cannot be stopped in-process: run envs in `sdar.envs.pool.EnvPool`, which times out and
  restarts a hung worker.
- Expert. `expert_action()` is the next action of the PDDL planner (fast-downward). The plan is computed once,
  on the first request after reset, and followed while the agent follows it; when the agent deviates (or the
  plan runs out before a win) it is re-planned from the current state. Plans are cached in memory and on disk,
  keyed by the game file's content hash plus the command history, because planning takes seconds to minutes
  on a few games. Computing lazily means rollouts that never ask for the expert never pay for the planner.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from sdar.env_records import StepResult, Task
from sdar.envs.alfworld.engine import TASK_TYPES, AlfworldGame, EngineState, read_task_type, split_goal

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid_seen", "valid_unseen")
DATA_VARIABLE = "ALFWORLD_DATA"
SHARED_DATA_HINT = "../shared/data/alfworld"
GAME_FILE = "game.tw-pddl"
TRAJ_FILE = "traj_data.json"
WIN_REWARD = 10.0
MAX_ACTION_CHARS = 200  # the longest ALFWorld command is ~60 characters
_WHITESPACE = re.compile(r"\s+")


class GameEngine(Protocol):
    """What AlfworldEnv needs from an engine (`AlfworldGame`, or a fake in tests)."""

    def reset(self) -> EngineState: ...
    def step(self, command: str) -> EngineState: ...
    def plan(self) -> list[str]: ...
    def close(self) -> None: ...


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """`data_dir`, else $ALFWORLD_DATA; the folder that holds `json_2.1.1/`."""
    chosen = str(data_dir) if data_dir else os.environ.get(DATA_VARIABLE, "")
    if not chosen:
        raise FileNotFoundError(
            f"no ALFWorld data folder: pass data_dir (env.data_dir) or set {DATA_VARIABLE}, e.g. "
            f"export {DATA_VARIABLE}={SHARED_DATA_HINT} (the folder holding json_2.1.1/)"
        )
    path = Path(os.path.expandvars(chosen)).expanduser()
    if not (path / "json_2.1.1").is_dir():
        raise FileNotFoundError(
            f"ALFWorld data folder {path} has no json_2.1.1/ (from data_dir or {DATA_VARIABLE}); "
            f"point it at the folder holding json_2.1.1/, e.g. {SHARED_DATA_HINT}"
        )
    return path


def is_collectable(game_dir: Path) -> bool:
    """alfworld's `collect_game_files` filter for one folder holding a traj_data.json."""
    if "movable" in str(game_dir) or "Sliced" in str(game_dir):
        return False
    try:
        if json.loads((game_dir / TRAJ_FILE).read_text()).get("task_type") not in TASK_TYPES:
            return False
        game_file = game_dir / GAME_FILE
        return game_file.is_file() and json.loads(game_file.read_text()).get("solvable") is True
    except (OSError, ValueError):
        return False


def collect_game_dirs(root: Path) -> list[Path]:
    """The collectable game folders under `root`, sorted by their path relative to `root`. Linked folders
    (data spread over disks) are followed; a folder reached twice (a link cycle) is walked once."""
    found, walked = [], set()
    for folder, subfolders, files in os.walk(root, followlinks=True):
        walked.add(os.path.realpath(folder))
        subfolders[:] = [name for name in subfolders if os.path.realpath(Path(folder, name)) not in walked]
        if TRAJ_FILE in files:
            found.append(Path(folder))
    return sorted((d for d in found if is_collectable(d)), key=lambda d: d.relative_to(root).as_posix())


def clean_action(action: object, max_chars: int = MAX_ACTION_CHARS) -> str:
    """The command the engine sees: no control/invisible characters, single spaces, lower case, capped."""
    if isinstance(action, bytes):
        action = action.decode("utf-8", errors="replace")
    text = "" if action is None else str(action)
    text = text[: max_chars * 4]  # bound the work on a runaway reply before the per-character pass
    text = "".join(" " if ch.isspace() or unicodedata.category(ch)[0] == "C" else ch for ch in text)
    return _WHITESPACE.sub(" ", text).strip().lower()[:max_chars].strip()


def admits(action: str, admissible_actions: Sequence[str]) -> bool:
    """Is `action` one of the admissible commands, as the engine gets it (`clean_action`: e.g. lower case)?"""
    return clean_action(action) in admissible_actions


def _default_cache_dir() -> Path:
    return Path(os.environ.get("SDAR_CACHE", "") or "~/.cache/sdar").expanduser() / "alfworld_plans"


class PlanCache:
    """Planner solutions keyed by (game file content hash, command history); memory + optional disk."""

    def __init__(self, directory: str | Path | None):
        self.directory = Path(directory).expanduser() if directory else None
        self._memory: dict[tuple[str, tuple[str, ...]], list[str]] = {}

    def _path(self, game_hash: str, history: tuple[str, ...]) -> Path:
        key = hashlib.sha256("\n".join(history).encode()).hexdigest()[:32]
        return self.directory / game_hash[:32] / f"{key}.json"

    def get(self, game_hash: str, history: Sequence[str]) -> list[str] | None:
        history = tuple(history)
        if (game_hash, history) in self._memory:
            return list(self._memory[game_hash, history])
        if self.directory is None:
            return None
        try:
            entry = json.loads(self._path(game_hash, history).read_text())
        except (OSError, ValueError):
            return None
        if entry.get("history") != list(history) or not isinstance(entry.get("plan"), list):
            return None
        self._memory[game_hash, history] = list(entry["plan"])
        return list(entry["plan"])

    def put(self, game_hash: str, history: Sequence[str], plan: Sequence[str]) -> None:
        """Store the plan for `history` and, for free, its suffixes for each prefix of the plan."""
        history, plan = tuple(history), list(plan)
        for done in range(len(plan) + 1):
            self._memory[game_hash, history + tuple(plan[:done])] = plan[done:]
        if self.directory is None:
            return
        path = self._path(game_hash, history)
        try:  # atomic: concurrent workers may write the same entry
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as handle:
                json.dump({"history": list(history), "plan": plan}, handle)
            os.replace(handle.name, path)
        except OSError as error:
            logger.warning("could not write the plan cache entry %s: %s", path, error)


def _failed(reason: str, admissible: tuple[str, ...] | None = None) -> StepResult:
    return StepResult(
        observation="", done=True, won=False, admissible_actions=admissible, info={"error": reason}
    )


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:2000]


class AlfworldEnv:
    """TextEnv over ALFWorld game folders; see the module docstring. Not thread-safe: one per worker/slot.

    Game source, one of: `data_dir` (official `json_2.1.1/<split>` layout; default $ALFWORLD_DATA),
    `game_dirs` (an explicit list, served for every split) or `split_dirs` (a callable split -> folders, e.g.
    the game generator). `engine_factory(game_file)` builds the engine (default: the real `AlfworldGame`).
    `plan_cache_dir`: None = $SDAR_CACHE/alfworld_plans (default ~/.cache/sdar), "" = memory only.
    """

    def __init__(
        self,
        data_dir: str | Path | None = None,
        *,
        game_dirs: Sequence[str | Path] | None = None,
        split_dirs: Callable[[str], Sequence[str | Path]] | Mapping[str, Sequence[str | Path]] | None = None,
        engine_factory: Callable[[str], GameEngine] = AlfworldGame,
        plan_cache_dir: str | Path | None = None,
        max_action_chars: int = MAX_ACTION_CHARS,
    ):
        if game_dirs is not None and split_dirs is not None:
            raise ValueError("give game_dirs or split_dirs, not both")
        self._data_dir = data_dir
        self._game_dirs = None if game_dirs is None else [Path(d) for d in game_dirs]
        self._split_dirs = split_dirs
        self._engine_factory = engine_factory
        self._plans = PlanCache(_default_cache_dir() if plan_cache_dir is None else plan_cache_dir)
        self.max_action_chars = max_action_chars
        self._listed: dict[str, list[str]] = {}
        self._engine: GameEngine | None = None
        self._engine_file: str | None = None
        self._game_hash = ""
        self.task: Task | None = None
        self.history: list[str] = []  # the cleaned commands stepped since reset
        self.done = True
        self.won = False
        self._plan: list[str] | None = None
        self._no_plan_at: int | None = None  # the step at which the planner last found nothing
        self.last_expert_error: str | None = None

    # ---- tasks -------------------------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return resolve_data_dir(self._data_dir)

    def task_ids(self, split: str) -> list[str]:
        if split not in self._listed:
            self._listed[split] = self._list(split)
        return list(self._listed[split])

    def _list(self, split: str) -> list[str]:
        if self._game_dirs is not None or self._split_dirs is not None:
            if self._game_dirs is not None:
                dirs = self._game_dirs
            elif callable(self._split_dirs):
                dirs = self._split_dirs(split) or []
            else:
                dirs = self._split_dirs.get(split, [])
            # the caller's order is kept (a generator's panel order is meaningful); duplicates dropped
            kept = list(dict.fromkeys(Path(d).resolve().as_posix() for d in dirs if is_collectable(Path(d))))
            if not kept:
                raise ValueError(
                    f"no playable ALFWorld games for split {split!r} among the given game folders"
                )
            return kept
        if split not in SPLITS:
            raise ValueError(f"unknown ALFWorld split {split!r}; choose one of {', '.join(SPLITS)}")
        root = self.data_dir / "json_2.1.1"
        games = collect_game_dirs(root / split)
        if not games:
            raise ValueError(
                f"no playable ALFWorld games in {root / split} (missing or empty; the shared data has train "
                f"and valid_seen only). A split with zero games would make the engine hang on reset."
            )
        return [game.relative_to(root).as_posix() for game in games]

    def game_dir(self, task_id: str) -> Path:
        """The folder of a task id (a `<split>/...` id under the data folder, or an absolute folder)."""
        path = Path(task_id)
        if not path.is_absolute():
            # `..` is refused by the path's text, not by resolving it: a split or game folder may be a link
            # to another disk, and its games are the data folder's as `task_ids` lists them.
            root = Path(os.path.abspath(self.data_dir / "json_2.1.1"))
            path = Path(os.path.normpath(root / task_id))
            if root not in path.parents:
                raise ValueError(f"task id {task_id!r} points outside {root}")
        if not (path / GAME_FILE).is_file():
            raise ValueError(f"unknown ALFWorld task {task_id!r}: no {GAME_FILE} in {path}")
        return path

    # ---- episodes ----------------------------------------------------------------------------------------
    def reset(self, task_id: str) -> tuple[Task, StepResult]:
        game_dir = self.game_dir(task_id)
        self.task = Task(task_id, read_task_type(game_dir), "", {"game_dir": game_dir.as_posix()})
        self.history, self._plan, self._no_plan_at, self.done, self.won = [], None, None, True, False
        game_file = (game_dir / GAME_FILE).as_posix()
        try:
            if self._engine is None or self._engine_file != game_file:
                self._drop_engine()
                self._engine = self._engine_factory(game_file)
                self._engine_file = game_file
                self._game_hash = hashlib.sha256((game_dir / GAME_FILE).read_bytes()).hexdigest()
            state = self._engine.reset()
        except Exception as error:
            self._drop_engine()
            return self.task, _failed(f"engine failed on reset: {_describe(error)}")
        self.task = Task(task_id, self.task.task_type, split_goal(state.observation), self.task.metadata)
        self.done = False
        return self.task, StepResult(state.observation, admissible_actions=state.admissible_commands)

    def step(self, action: str) -> StepResult:
        if self.task is None:
            raise RuntimeError("call reset(task_id) before step()")
        if self.done:
            return _failed("step() after the episode ended; call reset()")
        command = clean_action(action, self.max_action_chars)
        try:
            state = self._engine.step(command)
        except Exception as error:
            self._drop_engine()
            self.done = True
            return _failed(f"engine failed on step {len(self.history) + 1} ({command!r}): {_describe(error)}")
        self.history.append(command)
        if self._plan and self._plan[0] == command:
            self._plan = self._plan[1:]
        else:
            self._plan = None  # the agent left the plan (or none was made): re-plan on the next request
        self.done = self.won = state.won
        info = {} if command == action else {"command": command}
        return StepResult(
            state.observation,
            reward=WIN_REWARD if state.won else 0.0,
            done=state.won,
            won=state.won,
            admissible_actions=state.admissible_commands,
            info=info,
        )

    @property
    def num_steps(self) -> int:
        return len(self.history)

    # ---- expert ------------------------------------------------------------------------------------------
    def expert_action(self) -> str | None:
        """The planner's next command from the current state; None when no episode runs or planning failed."""
        if self.done or self._engine is None:
            return None
        if not self._plan and self._no_plan_at != len(self.history):
            self._plan = self._planned_rest()
            self._no_plan_at = None if self._plan else len(self.history)  # do not re-run a failed search
        return self._plan[0] if self._plan else None

    def _planned_rest(self) -> list[str] | None:
        cached = self._plans.get(self._game_hash, self.history)
        if cached:
            return cached
        try:
            plan = [str(command) for command in self._engine.plan()]
        except Exception as error:  # the episode goes on; only the expert is unavailable
            self.last_expert_error = f"planner failed: {_describe(error)}"
            logger.warning("%s (%s)", self.last_expert_error, self._engine_file)
            return None
        if plan:
            self._plans.put(self._game_hash, self.history, plan)
        return plan

    # ---- lifetime ----------------------------------------------------------------------------------------
    def _drop_engine(self) -> None:
        engine, self._engine, self._engine_file = self._engine, None, None
        if engine is not None:
            try:
                engine.close()
            except Exception as error:  # a broken engine may fail to close; it is discarded anyway
                logger.debug("closing a failed engine raised %s", error)

    def close(self) -> None:
        self._drop_engine()
        self.done = True
