"""The alfworld-location lines: the place read from the expert plan, and the half-reliable variant."""

import json

import pytest

from sdar.env_records import Task
from sdar.errors import ConfigError
from sdar.skills import get_skill_library
from sdar.skills.object_location import location_from_plan, location_is_right, location_line

PICK = [
    "go to countertop 1",
    "take tomato 1 from countertop 1",
    "go to diningtable 1",
    "put tomato 1 in/on diningtable 1",
]
HEAT = [
    "go to fridge 1",
    "open fridge 1",
    "take egg 2 from fridge 1",
    "go to microwave 1",
    "heat egg 2 with microwave 1",
    "go to countertop 2",
    "put egg 2 in/on countertop 2",
]
PICK_TWO = [
    "go to sofa 1",
    "take pillow 1 from sofa 1",
    "go to bed 1",
    "put pillow 1 in/on bed 1",
    "go to armchair 1",
    "take pillow 2 from armchair 1",
    "go to bed 1",
    "put pillow 2 in/on bed 1",
]


def test_the_place_is_the_first_take_and_elsewhere_holds_nothing_taken():
    assert tuple(location_from_plan(PICK)) == ("tomato 1", "countertop 1", "diningtable 1")
    assert tuple(location_from_plan(HEAT)) == ("egg 2", "fridge 1", "microwave 1")
    assert tuple(location_from_plan(PICK_TWO)) == ("pillow 1", "sofa 1", "bed 1")  # never armchair 1


def test_a_plan_without_a_take_is_refused_and_one_without_a_second_receptacle_has_no_elsewhere():
    with pytest.raises(ValueError, match="takes no object"):
        location_from_plan(["go to desk 1", "use desklamp 1"])
    assert location_from_plan(["go to desk 1", "take pen 1 from desk 1", "use desklamp 1"]).elsewhere == ""


def _game(tmp_path, name, plan):
    game = tmp_path / name
    game.mkdir()
    (game / "traj_data.json").write_text(json.dumps({"sdar_generator": {"expert_plan": plan}}))
    return Task(name, "pick_and_place_simple", "put some tomato on diningtable.", {"game_dir": str(game)})


def test_the_reliable_line_is_always_right_and_the_half_one_lies_in_about_half_the_games(tmp_path):
    reliable, half = get_skill_library("alfworld-location"), get_skill_library("alfworld-location-half")
    right_line = location_line("tomato 1", "countertop 1")
    wrong_line = location_line("tomato 1", "diningtable 1")
    names = [f"pick_and_place_simple-Tomato-None-DiningTable-gen{i}" for i in range(40)]
    rights = 0
    for name in names:
        task = _game(tmp_path, name, PICK)
        assert reliable.generated(task) == right_line
        told = half.generated(task)
        assert told == (right_line if location_is_right(str(tmp_path / name)) else wrong_line)
        rights += told == right_line
    assert 12 <= rights <= 28  # a hash of the name: about half, the same on every machine
    assert reliable.route(_game(tmp_path, "g", PICK)) == []  # the line is the whole context


def test_official_games_without_an_expert_plan_name_the_generated_env(tmp_path):
    game = tmp_path / "official"
    game.mkdir()
    (game / "traj_data.json").write_text(json.dumps({"pddl_params": {}}))
    task = Task("official", "pick_and_place_simple", "", {"game_dir": str(game)})
    with pytest.raises(ConfigError, match="alfworld-gen"):
        get_skill_library("alfworld-location").generated(task)
