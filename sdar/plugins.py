"""Plugins: your own envs and skill libraries, named in the config and imported before a run is built.

A plugin is a Python module that registers things when it is imported: `register_env(EnvSpec(...))` and
`register_skill_library(SkillLibrary(...))` (examples/lockbox/ is a complete one). The config lists plugins
under `plugins:`, each either a module importable from sys.path (`my_package.my_env`) or a path to a `.py`
file, relative to the YAML file that names it (relative to the working directory in an override).
`load_config` imports them all; a run's saved config names files by absolute path, so that `--resume` and
`sdar eval RUN` find them again.

A file is imported as the top-level module named after it, with its folder put first on sys.path. Env worker
processes (`env.workers > 0`, started with `spawn`) inherit sys.path and so import the env factory by the
same name.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from sdar.errors import ConfigError


def is_file_plugin(entry: str) -> bool:
    return entry.endswith(".py")


def anchor_plugin_paths(entries, directory: Path) -> list[str]:
    """The `plugins:` list of a YAML file in `directory`: relative file paths made absolute from there."""
    if not isinstance(entries, list | tuple) or not all(isinstance(entry, str) for entry in entries):
        raise ConfigError(f"plugins must be a list of module names or .py paths, got {entries!r}")
    return [str((directory / entry).resolve()) if is_file_plugin(entry) else entry for entry in entries]


def import_plugins(entries) -> None:
    """Import every plugin once (a second call finds them in sys.modules and registers nothing twice)."""
    for entry in entries:
        if is_file_plugin(entry):
            _import_file(Path(entry).resolve(), entry)
        else:
            _import_module(entry, entry)


def _import_file(path: Path, entry: str) -> None:
    if not path.is_file():
        raise ConfigError(f"plugin {entry!r}: there is no file {path}")
    name = path.stem
    loaded = sys.modules.get(name)
    if loaded is not None:
        if Path(getattr(loaded, "__file__", None) or "").resolve() == path:
            return
        raise ConfigError(
            f"plugin {path}: a module named {name!r} is already imported from "
            f"{getattr(loaded, '__file__', None) or 'elsewhere'}; rename the plugin file"
        )
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    _import_module(name, entry)


def _import_module(name: str, entry: str) -> None:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name is None or not (name == error.name or name.startswith(f"{error.name}.")):
            raise  # the plugin itself imports something missing: show the user their own traceback
        raise ConfigError(
            f"plugin {entry!r}: no module {name!r} on sys.path; name an importable module or a path ending "
            "in .py"
        ) from None
