"""Search-QA's turn limit has one knob, env.max_turns: the env ends episodes by it, the prompt states it."""

import dataclasses

import pytest

import sdar.envs.search_qa as search_qa
from sdar.config import load_config
from sdar.config_files import read_source
from sdar.envs import ENVS, make_env
from sdar.envs.search_qa import QuestionBank
from sdar.envs.search_qa.prompts import build_search_prompt
from sdar.errors import ConfigError

from .conftest import DOCUMENTS, GOLD, QUESTIONS


@pytest.fixture
def in_memory_search_qa(monkeypatch):
    """The registry's search-qa entry over the conftest's question bank (no data folder needed)."""
    monkeypatch.setitem(
        ENVS, "search-qa", dataclasses.replace(ENVS["search-qa"], check=lambda data_dir=None: None)
    )
    monkeypatch.setattr(
        search_qa, "load_data_resources", lambda data_dir, **_: QuestionBank(QUESTIONS, DOCUMENTS, gold=GOLD)
    )


@pytest.mark.parametrize("max_turns", [6, 2])
def test_env_max_turns_ends_the_episode_and_is_the_limit_the_prompt_states(in_memory_search_qa, max_turns):
    env = make_env(load_config("search_qa_smoke", [f"env.max_turns={max_turns}"]).env)
    task, first = env.reset("nq/q0")
    assert env.max_turns == task.metadata["max_turns"] == max_turns
    prompt = build_search_prompt(task, first.observation, None, [], 0, 4)
    assert f"at most {max_turns} turns" in prompt
    later = build_search_prompt(task, "obs", None, [("obs", "<search>x</search>")], 1, 4)
    assert f"turn 2 of at most {max_turns}" in later
    results = [env.step("not a tag") for _ in range(max_turns)]
    assert [result.done for result in results] == [False] * (max_turns - 1) + [True]


def test_the_option_max_turns_is_refused_naming_env_max_turns(in_memory_search_qa):
    config = load_config("search_qa_smoke", ["env.options={max_turns: 6}"])
    with pytest.raises(
        ConfigError, match=r"env\.options\.max_turns is not an option of 'search-qa'.*env\.max_turns=6"
    ):
        make_env(config.env)


def test_the_search_qa_presets_set_the_turn_limit_as_env_max_turns():
    for preset in ("search_qa_smoke", "search_qa_qwen2.5-3b_sdar"):
        config = load_config(preset)
        assert config.env.max_turns == 4 and "max_turns" not in config.env.options


def test_a_config_without_env_max_turns_plays_the_protocols_4_turns(in_memory_search_qa):
    assert "max_turns" not in read_source("search_qa_smoke")["env"]  # the preset leaves it to the env
    config = load_config("search_qa_smoke")
    assert config.env.max_turns == ENVS["search-qa"].default_max_turns == 4
    for env_config in (config.env, dataclasses.replace(config.env, max_turns=None)):  # resolved, or not
        env = make_env(env_config)
        task, first = env.reset("nq/q0")
        assert env.max_turns == task.metadata["max_turns"] == 4
        assert "at most 4 turns" in build_search_prompt(task, first.observation, None, [], 0, 4)
        results = [env.step("not a tag") for _ in range(4)]
        assert [result.done for result in results] == [False, False, False, True]
