"""Playing official ALFWorld games prints no ResourceWarning (textworld leaves each game file to the GC)."""

import gc
import importlib.util
import warnings
from pathlib import Path

import pytest

from sdar.envs.alfworld.env import AlfworldEnv

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "alfworld"
HAS_ENGINE = all(importlib.util.find_spec(name) for name in ("alfworld", "textworld"))


@pytest.mark.alfworld
@pytest.mark.skipif(
    not (HAS_ENGINE and (DATA / "json_2.1.1" / "valid_seen").is_dir()),
    reason="needs the alfworld extra and ../shared/data/alfworld",
)
def test_loading_games_leaves_no_unclosed_file(tmp_path):
    env = AlfworldEnv(DATA, plan_cache_dir=tmp_path)
    task_ids = env.task_ids("valid_seen")[:3]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for task_id in task_ids:
            task, result = env.reset(task_id)
            assert task.goal and not env.step("look").done
        gc.collect()
    env.close()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
