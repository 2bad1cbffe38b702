"""Factory and readiness check of the "alfworld" registry entry (registered in `sdar.envs`).

"alfworld": the official ALFWorld games (`json_2.1.1/<split>` under env.data_dir or $ALFWORLD_DATA).
`check_alfworld()` says what is missing (the package, or the data folder); `make_alfworld_env` builds one env.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from sdar.envs.alfworld.env import AlfworldEnv, resolve_data_dir
from sdar.envs.base import missing_package_or_data

ALFWORLD_INSTALL_HINT = "pip install 'sdar[alfworld]'"


def alfworld_engine_missing(data_dir=None) -> str | None:
    """Why the ALFWorld engine cannot be imported here, or None (`data_dir` is not needed)."""
    missing = [name for name in ("alfworld", "textworld") if importlib.util.find_spec(name) is None]
    if missing:
        return f"package {' and '.join(missing)} not installed: {ALFWORLD_INSTALL_HINT}"
    return None


def check_alfworld(data_dir: str | Path | None = None) -> str | None:
    """What is missing for the official ALFWorld env (the package, or the data folder), or None."""
    return missing_package_or_data(alfworld_engine_missing(), resolve_data_dir, data_dir)


def make_alfworld_env(data_dir: str | Path | None = None, **options) -> AlfworldEnv:
    """The official-games env; `options` go to AlfworldEnv (plan_cache_dir, max_action_chars)."""
    problem = alfworld_engine_missing()
    if problem:
        raise ImportError(f"the 'alfworld' env needs the ALFWorld engine: {problem}")
    return AlfworldEnv(data_dir or None, **options)
