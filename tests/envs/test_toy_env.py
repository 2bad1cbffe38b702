"""The built-in toy env: rooms drawn from task ids, the key's usual place, the expert, option checks."""

import pytest

from sdar.config import load_config
from sdar.envs import get_env_spec, make_env
from sdar.envs.policies import ExpertPolicy, run_episode
from sdar.envs.toy.env import USUAL_PLACE, ToyEnv
from sdar.errors import ConfigError


def test_a_task_id_always_draws_the_same_room_and_colours_take_turns():
    env = ToyEnv()
    first = [env.reset(task_id)[1].observation for task_id in env.task_ids("valid")]
    assert [env.reset(task_id)[1].observation for task_id in env.task_ids("valid")] == first
    assert [env.reset(f"test-{index}")[0].task_type for index in range(4)] == ["blue", "gold", "green", "red"]


def test_keys_lie_in_their_usual_place_with_the_prior():
    def usual_share(prior: float) -> float:
        env = ToyEnv(prior=prior, tasks_per_split=200)
        rooms = [(env.reset(task_id)[0], env.key_place) for task_id in env.task_ids("train")]
        return sum(place == USUAL_PLACE[task.task_type] for task, place in rooms) / len(rooms)

    assert usual_share(1.0) == 1.0 and usual_share(0.0) == 0.0 and 0.7 < usual_share(0.8) < 0.9


def test_the_expert_wins_in_the_fewest_turns_and_a_locked_chest_stays_shut():
    env = ToyEnv()
    outcome = run_episode(env, ExpertPolicy(env), "valid-5", max_turns=6)
    assert outcome.won and len(outcome.actions) == get_env_spec("toy").min_turns == 3
    env.reset("valid-5")
    assert env.step("open gold chest").observation == "The gold chest is locked."
    assert env.step("take gold key").observation == "Nothing happens."  # not found yet


def test_bad_options_and_splits_are_refused_by_name():
    with pytest.raises(ConfigError, match="unknown toy option.*colors; valid env.options: places, prior"):
        make_env(load_config("toy", ["env.options={colors: 3}"]).env)
    with pytest.raises(ConfigError, match=r"env.options.places=9: choose 2 to 8"):
        make_env(load_config("toy", ["env.options={places: 9}"]).env)
    with pytest.raises(ValueError, match="valid splits: train, valid, test"):
        ToyEnv().task_ids("valid_seen")
