"""ALFWorld game generator: seeded rooms and tasks for all six task types, no downloaded data needed.

Each game is a PDDL problem for the alfred domain (drawn by `layouts.sample_scene`, object placement from
`priors.OBJECT_PRIORS`), packed with the domain and the grammar (its goal line filled with the task text, as
the official games do) into `game.tw-pddl`, next to a minimal `traj_data.json` (task_type, pddl_params), in
the official folder layout `<task_type>-<Obj>-<Mrecep>-<Recep>-gen<seed>/trial_gen_<seed>/`. So the same
engine (`engine.AlfworldGame`) and adapter read official and generated games, and alfworld's experts solve
both.

Domain and grammar: always the CLASSIC logic, so generated games speak the same commands as the official
json_2.1.1 games (`put X in/on Y`, "You arrive at loc 12."). The alfworld==0.4.2 wheel ships newer
`alfworld/data/alfred.{pddl,twl2}` that differ from the classic `logic/alfred.{pddl,twl2}` in exactly four
ways: the put command reads `move {o} to {r}` (two templates), its feedback "You move the X to the Y.", the
arrival feedback names the receptacle instead of the location (`{r.name}` vs `{lend.name}`), and a `help`
action was added to both files. `classic_logic()` reads the classic files from the ALFWorld data folder
($ALFWORLD_DATA/logic, e.g. ../shared/data/alfworld) when they are there; otherwise (a fresh `pip install
sdar[alfworld]`) it takes the wheel's files and undoes those four changes. Either way the result must match
the SHA-256 of the classic files, or generation stops with an error, so a game is byte-identical on every
machine whatever the source. A data folder whose logic files are not the classic ones (for example one filled
by `alfworld-download`, which brings the `move` grammar) is ignored with a warning.

Reproducibility and caching: game `index` of `seed` has the game seed `seed * SEED_STRIDE + index` and is
fully determined by (game seed, task type, settings): the same call writes byte-identical files. Games live
under `<cache>/alfworld-gen/<settings key>/` (cache = `cache_dir`, else $SDAR_CACHE, else ~/.cache/sdar; the
key hashes the settings, the generator version and the logic digests); an existing game is never rewritten,
and every game is staged in a temporary folder, validated, and moved into place with one atomic rename.

Validation: each sampled game is loaded on the real engine, the planner (fast-downward) solves it from the
start, and the plan is replayed until the game reports a win; a game that is already won, unsolved, or needs
more than `max_expert_steps` steps is resampled (attempt 1, 2, ... up to `max_attempts`). The checked plan is
stored in traj_data.json under "sdar_generator" so nobody has to plan again.

Splits: `generated_split("train" | "valid" | "test", n)` uses seeds 0, 1, 2; different seeds give disjoint
game seeds (index < SEED_STRIDE), so the panels are disjoint by construction.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import json
import logging
import os
import random
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from sdar.envs.alfworld.engine import TASK_TYPES, AlfworldGame
from sdar.envs.alfworld.layouts import GeneratorSettings, Scene, render_problem, sample_scene
from sdar.envs.alfworld.priors import OBJECT_PRIORS

__all__ = [
    "DEFAULT_SETTINGS",
    "GENERATOR_VERSION",
    "OBJECT_PRIORS",
    "SEED_STRIDE",
    "SPLIT_SEEDS",
    "TASK_TYPES",
    "GeneratorSettings",
    "LogicSourceError",
    "classic_logic",
    "game_root",
    "game_seed",
    "generate_game",
    "generate_games",
    "generated_split",
    "settings_key",
    "solve_check",
    "to_classic_logic",
]

logger = logging.getLogger(__name__)

GENERATOR_VERSION = 1  # bump when the same seed and settings should give a different game
SEED_STRIDE = 1_000_000  # game seed = seed * SEED_STRIDE + index
PROGRESS_FIRST_S, PROGRESS_EVERY_S = 2.0, 5.0  # generate_games: first progress line, then one per interval
SPLIT_SEEDS = {"train": 0, "valid": 1, "test": 2}
DEFAULT_SETTINGS = GeneratorSettings()
GAME_FILE = "game.tw-pddl"
TRAJ_FILE = "traj_data.json"
DATA_VARIABLE = "ALFWORLD_DATA"

# SHA-256 of the classic logic/alfred.pddl and logic/alfred.twl2 that belong with the json_2.1.1 games.
CLASSIC_DOMAIN_SHA256 = "e64e8c0002648c403e05adedc25be5ea8b9863924f32cc7611051bed1f386e46"
CLASSIC_GRAMMAR_SHA256 = "d955e6db384c68ac5797e881b795fd36d788e87a03547f9a87e48fbd7c5b361b"
_HELP_ACTION = re.compile(r"\(:action help\b.*?\n\)\n\n", re.DOTALL)


class LogicSourceError(RuntimeError):
    """No classic alfred domain/grammar could be found or rebuilt."""


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _is_classic(domain: str, grammar: str) -> bool:
    return _sha256(domain) == CLASSIC_DOMAIN_SHA256 and _sha256(grammar) == CLASSIC_GRAMMAR_SHA256


def _replace(text: str, old: str, new: str, count: int) -> str:
    if text.count(old) != count:
        raise LogicSourceError(
            f"expected {count} x {old!r} in alfworld's packaged logic; is alfworld==0.4.2 installed?"
        )
    return text.replace(old, new)


def to_classic_logic(domain: str, grammar: str) -> tuple[str, str]:
    """alfworld 0.4.2's packaged alfred.pddl/alfred.twl2 rewritten to the classic `put X in/on Y` logic."""
    domain, removed = _HELP_ACTION.subn("", domain)
    help_at = grammar.find("\n\naction help {")
    if removed != 1 or help_at < 0:
        raise LogicSourceError(
            "alfworld's packaged logic has no `help` action to remove; is alfworld==0.4.2 installed?"
        )
    grammar = grammar[: help_at + 1]  # the help action is the grammar's last block, after a blank line
    grammar = _replace(grammar, 'template :: "move {o} to {r}";', 'template :: "put {o} in/on {r}";', 2)
    grammar = _replace(
        grammar, "You move the {o.name} to the {r.name}.", "You put the {o.name} in/on the {r.name}.", 1
    )
    grammar = _replace(grammar, '"You arrive at {r.name}. ', '"You arrive at {lend.name}. ', 1)
    return domain, grammar


def _package_logic_dir() -> Path:
    spec = importlib.util.find_spec("alfworld")
    if spec is None or not spec.submodule_search_locations:
        raise LogicSourceError("alfworld is not installed; install it with: pip install 'sdar[alfworld]'")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def classic_logic(data_dir: str | Path | None = None) -> tuple[str, str]:
    """(domain, grammar) of the classic alfred logic: `data_dir`/$ALFWORLD_DATA `logic/`, else the wheel's."""
    return _classic_logic(str(data_dir) if data_dir else os.environ.get(DATA_VARIABLE, ""))


@functools.lru_cache(maxsize=4)
def _classic_logic(chosen: str) -> tuple[str, str]:
    if chosen:
        logic = Path(os.path.expandvars(chosen)).expanduser() / "logic"
        if (logic / "alfred.pddl").is_file() and (logic / "alfred.twl2").is_file():
            domain = (logic / "alfred.pddl").read_text(encoding="utf-8")
            grammar = (logic / "alfred.twl2").read_text(encoding="utf-8")
            if _is_classic(domain, grammar):
                return domain, grammar
            logger.warning(
                "%s holds non-classic alfred logic (e.g. the `move` grammar); using the wheel's", logic
            )
    package = _package_logic_dir()
    try:
        domain = (package / "alfred.pddl").read_text(encoding="utf-8")
        grammar = (package / "alfred.twl2").read_text(encoding="utf-8")
    except OSError as error:
        raise LogicSourceError(f"alfworld's packaged logic files are missing ({error})") from None
    domain, grammar = to_classic_logic(domain, grammar)
    if not _is_classic(domain, grammar):
        raise LogicSourceError(
            f"the logic rebuilt from {package} does not match the classic ALFWorld files; pin "
            f"alfworld==0.4.2 or set {DATA_VARIABLE} to a folder with the classic logic/alfred.pddl and "
            "logic/alfred.twl2"
        )
    return domain, grammar


def settings_key(settings: GeneratorSettings) -> str:
    """12 hex characters naming (generator version, logic, settings): the cache subfolder."""
    payload = {
        "generator": GENERATOR_VERSION,
        "logic": [CLASSIC_DOMAIN_SHA256, CLASSIC_GRAMMAR_SHA256],
        "settings": dataclasses.asdict(settings),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def game_root(settings: GeneratorSettings = DEFAULT_SETTINGS, cache_dir: str | Path | None = None) -> Path:
    """The folder holding the games of `settings`: <cache>/alfworld-gen/<settings key>."""
    base = Path(cache_dir) if cache_dir else Path(os.environ.get("SDAR_CACHE", "") or "~/.cache/sdar")
    return base.expanduser() / "alfworld-gen" / settings_key(settings)


def _folder_name(scene: Scene, game_seed: int) -> str:
    recep = scene.parent_target or scene.toggle_target
    return f"{scene.task_type}-{scene.object_target}-None-{recep}-gen{game_seed}"


def _game_json(scene: Scene, game_seed: int, domain: str, grammar: str) -> str:
    data = {
        "pddl_domain": domain,
        "grammar": grammar.replace("UNKNOWN GOAL", scene.goal),
        "pddl_problem": render_problem(scene, f"plan_trial_gen_{game_seed}"),
        "solvable": True,
    }
    return json.dumps(data)


def _traj_json(
    scene: Scene, game_seed: int, attempt: int, settings: GeneratorSettings, plan: list[str]
) -> str:
    data = {
        "task_id": f"trial_gen_{game_seed}",
        "task_type": scene.task_type,
        "pddl_params": {
            "object_target": scene.object_target,
            "parent_target": scene.parent_target,
            "toggle_target": scene.toggle_target,
            "mrecep_target": "",
            "object_sliced": False,
        },
        "sdar_generator": {
            "version": GENERATOR_VERSION,
            "game_seed": game_seed,
            "attempt": attempt,
            "room_kind": scene.room_kind,
            "goal": scene.goal + ".",
            "expert_plan": plan,
            "settings": dataclasses.asdict(settings),
            "usual_places": list(scene.usual_places),
        },
    }
    return json.dumps(data, indent=4, sort_keys=True) + "\n"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600 files; a cache should read like any file
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def solve_check(game_file: str | Path, max_steps: int) -> list[str] | None:
    """The planner's plan if it wins the game from the start in <= `max_steps` admissible steps, else None."""
    game = AlfworldGame(game_file)
    try:
        state = game.reset()
        if state.won:
            return None
        plan = game.plan()
        if not plan or len(plan) > max_steps:
            return None
        for command in plan:
            if command not in state.admissible_commands:
                return None
            state = game.step(command)
        return plan if state.won else None
    finally:
        game.close()


def _scene_rng(task_type: str, game_seed: int, attempt: int) -> random.Random:
    # A string seed is hashed with SHA-512 by `random`, so it is stable across runs and Python versions.
    return random.Random(f"sdar-alfworld-gen/v{GENERATOR_VERSION}/{task_type}/{game_seed}/{attempt}")


def generate_game(
    game_seed: int,
    task_type: str,
    settings: GeneratorSettings = DEFAULT_SETTINGS,
    cache_dir: str | Path | None = None,
) -> Path:
    """The game file (`.../game.tw-pddl`) of one generated game; written and validated unless cached."""
    if task_type not in TASK_TYPES:
        raise ValueError(f"unknown task_type {task_type!r}; expected one of {', '.join(TASK_TYPES)}")
    if game_seed < 0:
        raise ValueError(f"game_seed must be >= 0, got {game_seed}")
    root = game_root(settings, cache_dir)
    logic = None
    for attempt in range(settings.max_attempts):
        scene = sample_scene(task_type, settings, _scene_rng(task_type, game_seed, attempt))
        name, trial = _folder_name(scene, game_seed), f"trial_gen_{game_seed}"
        final = root / name / trial / GAME_FILE
        if final.is_file() and (final.parent / TRAJ_FILE).is_file():
            return final
        rejected = root / ".rejected" / f"{name}.{attempt}"
        if rejected.is_file():
            continue
        logic = logic or classic_logic()
        staging = Path(tempfile.mkdtemp(prefix=f"{name}_staging_", dir=_prepare_root(root, settings)))
        os.chmod(staging, 0o777 & ~_umask())
        try:
            staged = staging / trial / GAME_FILE
            _write_atomic(staged, _game_json(scene, game_seed, *logic))
            plan = solve_check(staged, settings.max_expert_steps)
            if plan is None:
                logger.info("generated game %s (attempt %d) failed validation; resampling", name, attempt)
                _write_atomic(rejected, "")
                continue
            _write_atomic(staged.parent / TRAJ_FILE, _traj_json(scene, game_seed, attempt, settings, plan))
            try:
                os.rename(staging, root / name)
            except OSError:
                if not final.is_file():  # not a concurrent writer that got there first
                    raise
            return final
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    raise RuntimeError(
        f"no valid {task_type} game for game seed {game_seed} in {settings.max_attempts} attempts; "
        f"raise GeneratorSettings.max_attempts or max_expert_steps, or make the room smaller"
    )


def _prepare_root(root: Path, settings: GeneratorSettings) -> Path:
    """Create `root` with its settings.json (what the key stands for); return the staging folder beside it."""
    settings_file = root / "settings.json"
    if not settings_file.is_file():
        payload = {"generator": GENERATOR_VERSION, "key": root.name, "settings": dataclasses.asdict(settings)}
        _write_atomic(settings_file, json.dumps(payload, indent=2, sort_keys=True) + "\n")
    staging = root.parent / ".staging"  # outside `root`, so folder walkers never see half-written games
    staging.mkdir(parents=True, exist_ok=True)
    return staging


def game_seed(seed: int, index: int) -> int:
    """The seed of game `index` of panel `seed`; distinct (seed, index < SEED_STRIDE) never share one."""
    if seed < 0 or not 0 <= index < SEED_STRIDE:
        raise ValueError(f"need seed >= 0 and 0 <= index < {SEED_STRIDE}, got seed={seed}, index={index}")
    return seed * SEED_STRIDE + index


def generate_games(
    num_games: int,
    *,
    seed: int = 0,
    settings: GeneratorSettings = DEFAULT_SETTINGS,
    task_types: Sequence[str] = TASK_TYPES,
    cache_dir: str | Path | None = None,
) -> list[Path]:
    """Game files of games 0..num_games-1 of `seed`; game i has task type task_types[i % len] (balanced)."""
    if not 0 <= num_games <= SEED_STRIDE:
        raise ValueError(f"num_games must lie in [0, {SEED_STRIDE}], got {num_games}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    task_types = tuple(task_types)
    unknown = [t for t in task_types if t not in TASK_TYPES]
    if unknown or not task_types:
        raise ValueError(
            f"task_types={task_types!r} is not valid; use a non-empty subset of {', '.join(TASK_TYPES)}"
        )
    # Generating a game takes seconds (the planner checks it is solvable): a fresh cache takes minutes, so
    # say what is being prepared; a cached split is read in well under PROGRESS_FIRST_S and says nothing.
    games, started, last_line = [], time.monotonic(), None
    for index in range(num_games):
        games.append(
            generate_game(game_seed(seed, index), task_types[index % len(task_types)], settings, cache_dir)
        )
        now = time.monotonic()
        if now - (started + PROGRESS_FIRST_S if last_line is None else last_line + PROGRESS_EVERY_S) >= 0:
            last_line = now
            where = game_root(settings, cache_dir)
            print(f"generating ALFWorld games: {index + 1}/{num_games} (cached in {where})", file=sys.stderr)
    return games


def generated_split(
    name: str,
    num_games: int,
    *,
    settings: GeneratorSettings = DEFAULT_SETTINGS,
    task_types: Sequence[str] = TASK_TYPES,
    cache_dir: str | Path | None = None,
) -> list[Path]:
    """A fixed panel of generated games: "train", "valid" or "test" (seeds 0, 1, 2: disjoint panels)."""
    if name not in SPLIT_SEEDS:
        raise ValueError(f"unknown generated split {name!r}; choose one of: {', '.join(SPLIT_SEEDS)}")
    return generate_games(
        num_games, seed=SPLIT_SEEDS[name], settings=settings, task_types=task_types, cache_dir=cache_dir
    )
