"""Each registered env states its protocol's turn limit once (EnvSpec.default_max_turns, docs/method.md §6);
an unset env.max_turns resolves to it in the config, an explicit one wins."""

import dataclasses

import pytest
import yaml

from sdar.cli import main
from sdar.config import Config, load_config, to_dict
from sdar.envs import ENVS, register_env
from sdar.errors import ConfigError

PROTOCOL_LIMITS = {  # docs/method.md §6; the toy env's own 6
    "alfworld": 50,
    "alfworld-gen": 50,
    "webshop": 15,
    "webshop-gen": 15,
    "search-qa": 4,
    "toy": 6,
}


def test_each_built_in_env_states_its_protocols_turn_limit():
    assert {name: ENVS[name].default_max_turns for name in PROTOCOL_LIMITS} == PROTOCOL_LIMITS


@pytest.mark.parametrize("name", sorted(PROTOCOL_LIMITS))
def test_an_unset_env_max_turns_resolves_to_the_envs_limit_and_an_explicit_one_wins(name):
    assert Config().env.max_turns is None
    resolved = load_config(None, [f"env.name={name}"])
    assert resolved.env.max_turns == PROTOCOL_LIMITS[name]
    assert to_dict(resolved)["env"]["max_turns"] == PROTOCOL_LIMITS[name]  # what RUN/config.yaml saves
    assert load_config(None, [f"env.name={name}", "env.max_turns=7"]).env.max_turns == 7


def test_sdar_config_prints_the_resolved_turn_limit(capsys):
    assert main(["config", "search_qa_smoke"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["env"]["max_turns"] == 4


def test_an_unset_turn_limit_of_an_unregistered_env_is_refused():
    with pytest.raises(ConfigError, match=r"env\.name='nope' is not a registered env; choose one of: alf"):
        load_config(None, ["env.name=nope"])
    assert load_config(None, ["env.name=nope", "env.max_turns=3"]).env.max_turns == 3  # nothing to look up


def test_an_env_whose_default_limit_cannot_win_is_not_registered():
    spec = dataclasses.replace(ENVS["toy"], name="toy-too-short", default_max_turns=2)  # toy needs 3
    with pytest.raises(ValueError, match="default_max_turns=2 is below its min_turns=3"):
        register_env(spec)
    assert "toy-too-short" not in ENVS
