"""An ALFWorld data folder assembled from symbolic links (a split or a game folder on another disk) lists and
resets its games; a task id that climbs out of the data folder is still refused."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from sdar.envs.alfworld.env import AlfworldEnv

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "alfworld" / "json_2.1.1"
HAS_ENGINE = all(importlib.util.find_spec(name) for name in ("alfworld", "textworld"))
pytestmark = pytest.mark.skipif(
    not (HAS_ENGINE and (DATA / "valid_seen").is_dir()), reason="needs the alfworld extra and ../shared/data"
)


def test_a_linked_split_lists_and_resets_its_games(tmp_path):
    (tmp_path / "json_2.1.1").mkdir()
    (tmp_path / "json_2.1.1" / "valid_seen").symlink_to(DATA / "valid_seen", target_is_directory=True)
    env = AlfworldEnv(tmp_path, plan_cache_dir="")
    try:
        task_ids = env.task_ids("valid_seen")
        assert task_ids == AlfworldEnv(DATA.parent, plan_cache_dir="").task_ids("valid_seen")
        task, result = env.reset(task_ids[0])
        assert "error" not in result.info and not result.done and result.admissible_actions
        assert task.goal
        with pytest.raises(ValueError, match="points outside"):
            env.game_dir("valid_seen/../../../")
    finally:
        env.close()


def test_linked_task_type_folders_inside_a_split_are_listed(tmp_path):
    split = tmp_path / "json_2.1.1" / "valid_seen"
    split.mkdir(parents=True)
    linked = sorted(path for path in (DATA / "valid_seen").iterdir() if path.is_dir())[:2]
    for folder in linked:
        (split / folder.name).symlink_to(folder, target_is_directory=True)
    (split / "loop").symlink_to(split, target_is_directory=True)  # a cycle is walked once, not forever
    env = AlfworldEnv(tmp_path, plan_cache_dir="")
    task_ids = env.task_ids("valid_seen")
    expected = [t for t in AlfworldEnv(DATA.parent).task_ids("valid_seen") if t.split("/")[1] in
                {folder.name for folder in linked}]  # fmt: skip
    assert task_ids == expected and task_ids
    assert env.game_dir(task_ids[0]).is_dir()
