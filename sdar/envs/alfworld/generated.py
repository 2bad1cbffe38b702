"""The `alfworld-gen` env: generated ALFWorld games (no downloaded data) on the real engine.

Options (`env.options` in a config): `train_games`, `valid_games`, `test_games` (panel sizes; game i of a
panel is the same game on every machine), `task_types` (a subset of the six), and any GeneratorSettings
field (num_receptacles, num_objects, num_distractor_types, openable_share, prior_strength, room_kinds,
max_expert_steps). Games are generated on first use and cached (see generator.py).
"""

from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path

from sdar.envs.alfworld.engine import TASK_TYPES
from sdar.errors import ConfigError

PANEL_SIZES = {"train": 120, "valid": 60, "test": 60}


@dataclasses.dataclass(frozen=True)
class GeneratedGames:
    """Picklable split -> game folders mapping (env worker processes rebuild the env from it)."""

    settings: object
    sizes: tuple[tuple[str, int], ...]
    task_types: tuple[str, ...]
    cache_dir: str = ""

    def __call__(self, split: str) -> list[Path]:
        from sdar.envs.alfworld.generator import generated_split

        sizes = dict(self.sizes)
        if split not in sizes:
            raise KeyError(f"alfworld-gen has splits {', '.join(sizes)}; got {split!r}")
        paths = generated_split(
            split,
            sizes[split],
            settings=self.settings,
            task_types=self.task_types,
            cache_dir=self.cache_dir or None,
        )
        return [Path(path).parent for path in paths]


def generated_games(options: dict, cache_dir: str = "") -> GeneratedGames:
    """Validate `env.options` and build the split mapping; unknown keys fail naming the valid ones."""
    from sdar.envs.alfworld.generator import GeneratorSettings

    options = dict(options)
    sizes = {split: int(options.pop(f"{split}_games", size)) for split, size in PANEL_SIZES.items()}
    task_types = tuple(options.pop("task_types", TASK_TYPES))
    unknown_types = [t for t in task_types if t not in TASK_TYPES]
    if unknown_types:
        raise ConfigError(f"env.options.task_types has {unknown_types}; valid: {', '.join(TASK_TYPES)}")
    fields = {f.name for f in dataclasses.fields(GeneratorSettings)}
    unknown = sorted(set(options) - fields)
    if unknown:
        valid = sorted(fields | {f"{split}_games" for split in PANEL_SIZES} | {"task_types"})
        raise ConfigError(f"unknown alfworld-gen env.options {unknown}; valid options: {', '.join(valid)}")
    return GeneratedGames(GeneratorSettings(**options), tuple(sizes.items()), task_types, cache_dir)


def make_generated_env(options: dict | None = None, cache_dir: str = "", **env_options):
    """An AlfworldEnv over generated games."""
    from sdar.envs.alfworld.env import AlfworldEnv

    return AlfworldEnv(split_dirs=generated_games(options or {}, cache_dir), **env_options)


def generated_env_factory(options: dict | None = None, cache_dir: str = ""):
    """A picklable zero-argument factory (for EnvPool worker processes)."""
    return partial(make_generated_env, dict(options or {}), cache_dir)
