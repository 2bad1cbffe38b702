"""Scripted policies, episode runners and expert demonstration export."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from sdar.env_records import StepResult, Task
from sdar.envs.alfworld.env import AlfworldEnv
from sdar.envs.alfworld.prompts import build_alfworld_prompt
from sdar.envs.policies import (
    ExpertPolicy,
    Policy,
    RandomAdmissiblePolicy,
    expert_demonstrations,
    run_episode,
    run_episodes,
)
from sdar.envs.pool import EnvPool
from sdar.envs.replies import parse_action_reply

from .fakes import FAKE_PLAN, CounterEnv, FakeEngine, write_fake_game
from .test_alfworld_env import DATA, needs_data

TASK = Task("t", "counter", "count")


@pytest.fixture
def fake_games(tmp_path: Path) -> Path:
    split = tmp_path / "json_2.1.1" / "train"
    for name in ("a", "b", "c"):
        write_fake_game(split, f"pick_and_place_simple-Mug-None-Table-1/trial_{name}")
    return tmp_path


def test_random_policy_is_seeded_and_uniform_over_admissible():
    result = StepResult("obs", admissible_actions=("a", "b", "c", "d"))
    draws = [RandomAdmissiblePolicy(seed=7).act(TASK, result, []) for _ in range(3)]
    assert len(set(draws)) == 1  # a fresh policy with the same seed starts the same stream
    first, second = RandomAdmissiblePolicy(seed=7), RandomAdmissiblePolicy(seed=7)
    sequence = [first.act(TASK, result, []) for _ in range(200)]
    assert sequence == [second.act(TASK, result, []) for _ in range(200)]
    assert sequence != [RandomAdmissiblePolicy(seed=8).act(TASK, result, []) for _ in range(200)]
    assert set(sequence) == {"a", "b", "c", "d"} and max(sequence.count(a) for a in "abcd") < 80
    assert RandomAdmissiblePolicy(0).act(TASK, StepResult("obs"), []) == "look"
    assert isinstance(first, Policy) and isinstance(ExpertPolicy(), Policy)


def test_expert_policy_reads_pool_info_or_asks_the_env():
    attached = StepResult("obs", info={"expert_action": "take mug"})
    assert ExpertPolicy().act(TASK, attached, []) == "take mug"
    env = CounterEnv()
    env.reset("x")
    assert ExpertPolicy(env).act(TASK, StepResult("obs"), []) == "win"
    with pytest.raises(ValueError, match="needs an env"):
        ExpertPolicy().act(TASK, StepResult("obs"), [])
    assert (
        ExpertPolicy(fallback="look").act(TASK, StepResult("o", info={"expert_action": None}), []) == "look"
    )


def test_run_episodes_over_a_pool_equals_one_by_one(fake_games):
    factory = functools.partial(AlfworldEnv, fake_games, engine_factory=FakeEngine, plan_cache_dir="")
    env = factory()
    ids = env.task_ids("train")
    one_by_one = [run_episode(env, RandomAdmissiblePolicy(3), task_id, max_turns=8) for task_id in ids[:1]]
    assert one_by_one[0].steps <= 8
    expert = [run_episode(env, ExpertPolicy(env), task_id) for task_id in ids]
    assert all(o.won and o.steps == 3 and o.reward == 10.0 and o.actions == tuple(FAKE_PLAN) for o in expert)
    for workers in (0, 2):
        with EnvPool(factory, num_slots=2, num_workers=workers) as pool:
            assert run_episodes(pool, ExpertPolicy(), ids) == expert
            random_runs = run_episodes(pool, RandomAdmissiblePolicy(5), ids * 2, max_turns=6)
            assert random_runs == run_episodes(pool, RandomAdmissiblePolicy(5), ids * 2, max_turns=6)
            assert [o.task.task_id for o in random_runs] == ids * 2 and all(o.steps <= 6 for o in random_runs)


def test_expert_demonstrations_render_prompts_and_parseable_replies(fake_games):
    env = AlfworldEnv(fake_games, engine_factory=FakeEngine, plan_cache_dir="")
    ids = env.task_ids("train")
    turns = list(expert_demonstrations(env, ids[:2], render_prompt=build_alfworld_prompt))
    assert len(turns) == 2 * len(FAKE_PLAN)
    assert [t.expert_action for t in turns[:3]] == FAKE_PLAN and [t.step_count for t in turns[:3]] == [
        0,
        1,
        2,
    ]
    third = turns[2]
    assert third.history == (
        (turns[0].observation, FAKE_PLAN[0]),
        (turns[1].observation, FAKE_PLAN[1]),
    )
    assert (
        third.observation in third.prompt
        and FAKE_PLAN[2] in third.prompt
        and "put a mug in table" in third.prompt
    )
    assert third.prompt == build_alfworld_prompt(
        third.task, third.observation, third.admissible_actions, third.history, 2
    )
    assert parse_action_reply(third.reply).action == FAKE_PLAN[2] and parse_action_reply(third.reply).valid
    bare = list(expert_demonstrations(env, ids[:1], render_reply=None, max_turns=2, only_won=False))
    assert len(bare) == 2 and bare[0].prompt is None and bare[0].reply is None
    assert list(expert_demonstrations(env, ids[:1], max_turns=2)) == []  # not won within 2 turns: dropped


@needs_data
@pytest.mark.slow
def test_real_games_expert_wins_and_random_is_reproducible(tmp_path):
    factory = functools.partial(AlfworldEnv, DATA, plan_cache_dir=tmp_path)
    with EnvPool(factory, num_slots=2, num_workers=2, timeout_s=300) as pool:
        ids = pool.task_ids("valid_seen")[:2]
        assert all(o.won for o in run_episodes(pool, ExpertPolicy(), ids))
        first = run_episodes(pool, RandomAdmissiblePolicy(1), ids, max_turns=10)
        assert first == run_episodes(pool, RandomAdmissiblePolicy(1), ids, max_turns=10)
