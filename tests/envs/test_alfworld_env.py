"""AlfworldEnv: listing, episodes, expert and plan cache, hostile actions, failures; fake and real engine."""

from __future__ import annotations

import functools
import importlib.util
from collections import Counter
from pathlib import Path

import pytest

from sdar.envs.alfworld.env import SPLITS, AlfworldEnv, PlanCache, admits, clean_action, collect_game_dirs
from sdar.envs.base import TextEnv
from sdar.envs.pool import EnvPool

from .fakes import FAKE_PLAN, FakeEngine, write_fake_game

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "alfworld"
HAS_ENGINE = all(importlib.util.find_spec(name) for name in ("alfworld", "textworld"))
needs_data = pytest.mark.skipif(
    not (HAS_ENGINE and (DATA / "json_2.1.1" / "valid_seen").is_dir()),
    reason="needs the alfworld extra and ../shared/data/alfworld",
)
HOSTILE = [
    "",
    "   ",
    "x" * 1_000_000,
    "go to\x00 shelf 1",
    "\x1b[31mlook\x1b[0m",
    "<action>look</action>",
    "日本語のテキスト",
    "\ud800",
    "look\n\n\tinventory",
    "\u200bgo to shelf 1",
    "GO TO SHELF 1",
    "🙂" * 500,
]


@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    """A data folder in the official layout: 3 playable valid_seen games, 5 that alfworld's filter drops."""
    split = tmp_path / "json_2.1.1" / "valid_seen"
    write_fake_game(split, "pick_and_place_simple-Mug-None-Table-2/trial_b")
    write_fake_game(split, "pick_and_place_simple-Mug-None-Table-2/trial_a")
    write_fake_game(split, "look_at_obj_in_light-Book-None-Lamp-1/trial_c", task_type="look_at_obj_in_light")
    write_fake_game(split, "pick_and_place_simple-Mug-None-Table-3/trial_unsolvable", solvable=False)
    write_fake_game(split, "pick_and_place_simple-Mug-None-Table-3/trial_nogame", with_game=False)
    write_fake_game(split, "pick_and_place_simple-Apple-None-Table-3/trial_Sliced")
    write_fake_game(split, "pick_and_place_simple-movable-None-Table-3/trial_x")
    write_fake_game(split, "pick_and_place_with_movable_recep-Mug-Bowl-Table-3/trial_y", task_type="other")
    (tmp_path / "json_2.1.1" / "train").mkdir()
    return tmp_path


def fake_env(root: Path, **options) -> AlfworldEnv:
    return AlfworldEnv(root, engine_factory=FakeEngine, plan_cache_dir=root / "plans", **options)


def test_listing_applies_alfworld_filter_in_sorted_order(fake_root):
    env = fake_env(fake_root)
    assert isinstance(env, TextEnv)
    assert env.task_ids("valid_seen") == [
        "valid_seen/look_at_obj_in_light-Book-None-Lamp-1/trial_c",
        "valid_seen/pick_and_place_simple-Mug-None-Table-2/trial_a",
        "valid_seen/pick_and_place_simple-Mug-None-Table-2/trial_b",
    ]


def test_empty_or_missing_split_and_bad_data_dir_are_clear_errors(fake_root, monkeypatch):
    env = fake_env(fake_root)
    for split in ("train", "valid_unseen"):  # empty folder, missing folder: an error, never a hang
        with pytest.raises(ValueError, match="no playable ALFWorld games"):
            env.task_ids(split)
    with pytest.raises(ValueError, match="unknown ALFWorld split 'test'.*valid_seen"):
        env.task_ids("test")
    monkeypatch.delenv("ALFWORLD_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="ALFWORLD_DATA.*shared/data/alfworld"):
        AlfworldEnv().task_ids("valid_seen")
    monkeypatch.setenv("ALFWORLD_DATA", str(fake_root))
    assert len(AlfworldEnv(engine_factory=FakeEngine).task_ids("valid_seen")) == 3
    with pytest.raises(FileNotFoundError, match="has no json_2.1.1"):
        AlfworldEnv(fake_root / "json_2.1.1").task_ids("valid_seen")
    with pytest.raises(ValueError, match="unknown ALFWorld task"):
        env.reset("valid_seen/nope")
    with pytest.raises(ValueError, match="outside"):
        env.reset("../../etc")


def test_explicit_game_dirs_and_split_callable(fake_root, tmp_path):
    games = collect_game_dirs(fake_root / "json_2.1.1" / "valid_seen")
    env = AlfworldEnv(game_dirs=games[::-1], engine_factory=FakeEngine, plan_cache_dir="")
    ids = env.task_ids("anything")
    assert ids == [game.resolve().as_posix() for game in games[::-1]]  # the given order is kept
    task, first = env.reset(ids[-1])
    assert task.task_type == "look_at_obj_in_light" and not first.done
    by_split = AlfworldEnv(split_dirs={"train": games[:1]}.get, engine_factory=FakeEngine, plan_cache_dir="")
    assert by_split.task_ids("train") == [games[0].resolve().as_posix()]
    with pytest.raises(ValueError, match="no playable"):
        by_split.task_ids("valid_seen")


def test_episode_reward_done_won_and_steps(fake_root):
    env = fake_env(fake_root)
    task_id = env.task_ids("valid_seen")[1]
    task, result = env.reset(task_id)
    assert task.task_id == task_id and task.task_type == "pick_and_place_simple"
    assert task.goal.startswith("put a mug in table") and "Your task is to:" in result.observation
    assert result.admissible_actions[-1] == FAKE_PLAN[0] and not result.done and result.reward == 0.0
    assert env.step("look").observation == "You see the room."
    for action in FAKE_PLAN[:-1]:
        assert env.step(action).reward == 0.0
    final = env.step(FAKE_PLAN[-1])
    assert (final.reward, final.done, final.won) == (10.0, True, True)
    assert env.num_steps == 4 and env.history == ["look", *FAKE_PLAN]
    assert "error" in env.step("look").info  # stepping a finished episode is reported, not executed
    loads = FakeEngine.loads
    env.reset(task_id)  # same game: the loaded engine is reused (a group's G episodes skip the load)
    assert FakeEngine.loads == loads and env.num_steps == 0


def test_hostile_actions_are_cleaned_and_never_crash(fake_root):
    env = fake_env(fake_root)
    env.reset(env.task_ids("valid_seen")[0])
    for action in [*HOSTILE, None, b"look", 12]:
        result = env.step(action)
        assert not result.done and "error" not in result.info
    sent = env._engine.commands
    assert all(
        len(command) <= 200 and command.isprintable() and command == command.lower() for command in sent
    )
    assert sent[:2] == ["", ""] and sent[2] == "x" * 200 and sent[3] == "go to shelf 1"
    assert (
        sent[4] == "[31mlook [0m" and sent[8] == "look inventory" and sent[9] == sent[10] == "go to shelf 1"
    )
    assert clean_action("<action>Take Mug 1</action>") == "<action>take mug 1</action>"  # tags: just text


def test_admits_the_action_as_the_engine_gets_it():
    admissible = ("go to shelf 1", "look")
    assert admits("Go to  Shelf 1 ", admissible) and admits("look", admissible)
    assert not admits("go to shelf 2", admissible) and not admits("go to section 1", admissible)


def test_expert_follows_plan_and_replans_after_deviation(fake_root):
    FakeEngine.plans = 0
    env = fake_env(fake_root)
    env.reset(env.task_ids("valid_seen")[1])
    assert FakeEngine.plans == 0  # planning is lazy: rollouts that never ask never pay
    assert env.expert_action() == FAKE_PLAN[0]
    env.step(FAKE_PLAN[0])
    assert env.expert_action() == FAKE_PLAN[1] and FakeEngine.plans == 1  # followed: no re-plan
    env.step("look")  # deviation (harmless) -> re-plan from here
    assert env.expert_action() == FAKE_PLAN[1] and FakeEngine.plans == 2
    env.step(FAKE_PLAN[1])
    env.step("drop mug")  # deviation that undoes progress
    assert env.expert_action() == FAKE_PLAN[0] and FakeEngine.plans == 3
    while not (result := env.step(env.expert_action())).done:
        pass
    assert result.won and env.expert_action() is None


def test_planner_failure_leaves_the_episode_running_and_is_not_retried_every_call(fake_root):
    split = fake_root / "json_2.1.1" / "valid_seen"
    write_fake_game(split, "pick_and_place_simple-X-None-Y-8/t", planner_fails=True)
    FakeEngine.plans = 0
    env = fake_env(fake_root)
    env.reset("valid_seen/pick_and_place_simple-X-None-Y-8/t")
    assert env.expert_action() is None and env.expert_action() is None and FakeEngine.plans == 1
    assert "planner crashed" in env.last_expert_error
    assert not env.step("look").done  # the episode goes on without an expert
    assert env.expert_action() is None and FakeEngine.plans == 2  # a new state: tried once more


def test_plans_are_cached_on_disk_by_game_content_and_history(fake_root):
    FakeEngine.plans = 0
    first = fake_env(fake_root)
    task_id = first.task_ids("valid_seen")[1]
    first.reset(task_id)
    first.step("look")
    assert first.expert_action() == FAKE_PLAN[0] and FakeEngine.plans == 1
    second = fake_env(fake_root)  # a fresh process would see the same files
    second.reset(task_id)
    second.step("look")
    assert second.expert_action() == FAKE_PLAN[0] and FakeEngine.plans == 1
    second.reset(task_id)  # the empty history was not planned yet
    assert second.expert_action() == FAKE_PLAN[0] and FakeEngine.plans == 2
    cache = PlanCache(fake_root / "plans")
    assert cache.get("0" * 64, ["look"]) is None


def test_engine_exception_fails_the_episode_and_rebuilds(fake_root):
    env = fake_env(fake_root)
    task_id = env.task_ids("valid_seen")[0]
    env.reset(task_id)
    engine = env._engine
    result = env.step("explode")
    assert (result.done, result.won) == (True, False) and "engine exploded" in result.info["error"]
    assert engine.closed and env.expert_action() is None
    loads = FakeEngine.loads
    _, again = env.reset(task_id)
    assert FakeEngine.loads == loads + 1 and not again.done  # a fresh engine


def test_engine_failure_on_reset_is_a_failed_episode(fake_root):
    write_fake_game(
        fake_root / "json_2.1.1" / "valid_seen", "pick_and_place_simple-X-None-Y-9/t", fail_on_reset=True
    )
    env = fake_env(fake_root)
    task, result = env.reset("valid_seen/pick_and_place_simple-X-None-Y-9/t")
    assert result.done and not result.won and "cannot be loaded" in result.info["error"]
    assert task.task_type == "pick_and_place_simple"
    _, ok = env.reset(env.task_ids("valid_seen")[0])  # the env goes on with the next task
    assert not ok.done


def test_hung_engine_times_out_in_the_pool_and_other_slots_go_on(fake_root):
    factory = functools.partial(AlfworldEnv, fake_root, engine_factory=FakeEngine, plan_cache_dir="")
    ids = AlfworldEnv(fake_root, engine_factory=FakeEngine).task_ids("valid_seen")
    with EnvPool(factory, num_slots=2, num_workers=2, timeout_s=60) as pool:
        pool.reset_many([(0, ids[0]), (1, ids[1])])
        hung, fine = pool.step_many([(0, "hang"), (1, FAKE_PLAN[0])], timeout_s=1.0)
        assert hung.done and not hung.won and "timed out" in hung.info["error"]
        assert fine.observation == f"You did: {FAKE_PLAN[0]}." and not fine.done
        assert pool.restarts == 1
        _, restarted = pool.reset_many([(0, ids[0])])[0]  # the rebuilt worker plays again
        assert not restarted.done and pool.step_many([(0, FAKE_PLAN[0]), (1, FAKE_PLAN[1])])[1].observation


@needs_data
def test_real_listing_matches_sources_counts():
    env = AlfworldEnv(DATA)
    ids = env.task_ids("valid_seen")
    assert len(ids) == 140 and ids == sorted(ids) and ids == env.task_ids("valid_seen")
    counts = Counter(task_id.split("/")[1].split("-")[0] for task_id in ids)
    assert counts == {
        "pick_and_place_simple": 35,
        "look_at_obj_in_light": 13,
        "pick_clean_then_place_in_recep": 27,
        "pick_heat_then_place_in_recep": 16,
        "pick_cool_then_place_in_recep": 25,
        "pick_two_obj_and_place": 24,
    }
    assert len(env.task_ids("train")) == 200 and set(SPLITS) == {"train", "valid_seen", "valid_unseen"}
    with pytest.raises(ValueError, match="valid_unseen"):
        env.task_ids("valid_unseen")  # absent in the shared data: an error, not a hang


@pytest.fixture(scope="module")
def real_env(tmp_path_factory):
    if not (HAS_ENGINE and DATA.is_dir()):
        pytest.skip("needs the alfworld extra and ../shared/data/alfworld")
    env = AlfworldEnv(DATA, plan_cache_dir=tmp_path_factory.mktemp("plans"))
    yield env
    env.close()


@needs_data
def test_real_game_reset_step_and_win(real_env):
    task_id = "valid_seen/look_at_obj_in_light-AlarmClock-None-DeskLamp-323/trial_T20190909_044715_250790"
    task, result = real_env.reset(task_id)
    assert task.task_type == "look_at_obj_in_light" and task.goal == "look at alarmclock under the desklamp."
    assert (
        result.observation.startswith("You are in the middle of a room.")
        and "go to desk 1" in result.admissible_actions
    )
    for action in HOSTILE:
        bad = real_env.step(action)
        assert bad.observation == "Nothing happens." and not bad.done
    arrived = real_env.step("Go to desk 1")  # case is normalised: the grammar is lower-case
    assert (
        arrived.observation.startswith("You arrive at")
        and "take alarmclock 2 from desk 1" in arrived.admissible_actions
    )
    real_env.step("take alarmclock 2 from desk 1")
    final = real_env.step("use desklamp 1")
    assert (final.won, final.done, final.reward) == (True, True, 10.0)


@needs_data
@pytest.mark.slow
def test_real_expert_solves_a_few_games(real_env):
    ids = real_env.task_ids("valid_seen")
    for task_id in (ids[0], ids[40], ids[100]):  # look, pick_clean, pick_two-ish: three task types
        real_env.reset(task_id)
        for _ in range(50):
            result = real_env.step(real_env.expert_action())
            if result.done:
                break
        assert result.won, task_id


@pytest.mark.skipif(not HAS_ENGINE, reason="needs the alfworld extra")
def test_the_configured_data_dir_counts_when_the_environment_variable_is_unset(fake_root, monkeypatch):
    """`env.data_dir` alone is enough for env_factory's check; with neither it names both ways to set it."""
    from sdar.config import load_config
    from sdar.envs import env_factory

    monkeypatch.delenv("ALFWORLD_DATA", raising=False)
    config = load_config("smoke", ["env.name=alfworld", f"env.data_dir={fake_root}", "env.options={}"])
    assert env_factory(config.env).keywords["data_dir"] == str(fake_root)
    with pytest.raises(ImportError, match="env.data_dir.*ALFWORLD_DATA"):
        env_factory(load_config("smoke", ["env.name=alfworld", "env.options={}"]).env)
