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


def test_expert_detours_search_a_place_without_the_key_first_and_leave_the_rooms_as_they_were():
    plain, detouring = ToyEnv(tasks_per_split=200), ToyEnv(tasks_per_split=200, expert_detours=1.0)
    for task_id in plain.task_ids("train")[:20]:
        assert detouring.reset(task_id)[1].observation == plain.reset(task_id)[1].observation
        assert detouring.key_place == plain.key_place  # the same room, the key in the same place
        outcome = run_episode(detouring, ExpertPolicy(detouring), task_id, max_turns=6)
        first, second = outcome.actions[:2]
        assert outcome.won and len(outcome.actions) == 4
        assert first != f"search {plain.key_place}" and first.startswith("search ")
        assert second == f"search {plain.key_place}"
    half = ToyEnv(tasks_per_split=200, expert_detours=0.5)
    detoured = 0
    for task_id in half.task_ids("train"):
        detoured += len(run_episode(half, ExpertPolicy(half), task_id, max_turns=6).actions) == 4
    assert 80 < detoured < 120  # about half of 200


def test_bad_options_and_splits_are_refused_by_name():
    with pytest.raises(ConfigError, match="unknown toy option.*colors; valid env.options: places, prior"):
        make_env(load_config("toy", ["env.options={colors: 3}"]).env)
    with pytest.raises(ConfigError, match=r"env.options.expert_detours=2: a probability"):
        make_env(load_config("toy", ["env.options={expert_detours: 2}"]).env)
    with pytest.raises(ConfigError, match=r"env.options.places=9: choose 2 to 8"):
        make_env(load_config("toy", ["env.options={places: 9}"]).env)
    with pytest.raises(ValueError, match="valid splits: train, valid, test"):
        ToyEnv().task_ids("valid_seen")
