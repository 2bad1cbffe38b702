"""WebShop's turn limit has one knob, env.max_turns (15 unless set): the env ends episodes by it."""

import pytest

from sdar.config import load_config
from sdar.envs import ENVS, make_env
from sdar.envs.replies import NO_OP_ACTION
from sdar.errors import ConfigError

pytest.importorskip("bm25s")


def steps_until_done(env) -> int:
    env.reset(env.task_ids("test")[0])
    steps, done = 0, False
    while not done:
        done = env.step(NO_OP_ACTION).done
        steps += 1
    return steps


@pytest.mark.parametrize(("overrides", "limit"), [(["env.max_turns=null"], 15), (["env.max_turns=6"], 6)])
def test_env_max_turns_or_the_envs_15_ends_the_episode(overrides, limit):
    config = load_config("webshop_smoke", overrides)
    assert config.env.max_turns == limit
    env = make_env(config.env)
    assert env.max_steps == limit
    assert steps_until_done(env) == limit


def test_the_option_max_steps_is_refused_naming_env_max_turns():
    config = load_config("webshop_smoke", ["env.options.max_steps=6"])
    with pytest.raises(
        ConfigError, match=r"env\.options\.max_steps is not an option of 'webshop-gen'.*env\.max_turns=6"
    ):
        make_env(config.env)


def test_the_paper_preset_plays_the_envs_15_turns_with_one_knob():
    config = load_config("webshop_qwen2.5-3b_sdar")
    assert config.env.max_turns == ENVS["webshop"].default_max_turns == 15
    assert "max_steps" not in config.env.options
