"""The WebShop envs' declared shortest won episode (`EnvSpec.min_turns`) against what their expert plays."""

import pytest

from sdar.config import load_config
from sdar.envs import get_env_spec, make_env
from sdar.envs.policies import ExpertPolicy, run_episode

from .builders import REAL_DATA, needs_real_data

pytest.importorskip("bm25s")


def expert_episodes(env, task_ids):
    return [run_episode(env, ExpertPolicy(env), task_id, max_turns=15) for task_id in task_ids]


def test_generated_catalogue_needs_at_least_its_declared_turns():
    env = make_env(load_config("webshop_smoke").env)
    task_ids = env.task_ids("test")
    outcomes = expert_episodes(env, task_ids)
    assert all(outcome.won for outcome in outcomes)
    assert min(outcome.steps for outcome in outcomes) == get_env_spec("webshop-gen").min_turns == 4
    # every generated goal asks for an option: buying right after opening the product never wins
    for task_id, outcome in zip(task_ids, outcomes, strict=True):
        env.reset(task_id)
        for action in outcome.actions[:2]:  # the search and the product's page
            env.step(action)
        assert not env.step("click[buy now]").won


@needs_real_data
def test_real_catalogue_has_goals_won_in_its_declared_turns():
    overrides = ["env.name=webshop", f"env.data_dir={REAL_DATA}", "env.options={}"]
    env = make_env(load_config("webshop_smoke", overrides).env)
    outcomes = expert_episodes(env, env.task_ids("test")[:100])
    won = [outcome.steps for outcome in outcomes if outcome.won]
    assert min(won) == get_env_spec("webshop").min_turns == 3  # goals that ask for no option
