"""Skill libraries: ALFWorld routing for every task type, loud failure on unknown types, teacher text."""

import re

import pytest

from sdar.env_records import Task
from sdar.skills.library import (
    ALFWORLD_ROUTES,
    SKILL_DIR,
    SKILL_LIBRARIES,
    SkillLibrary,
    UnknownTaskTypeError,
    get_skill_library,
    register_skill_library,
    route_alfworld,
    teacher_context,
)

ALFWORLD_DIR = SKILL_DIR / "alfworld"
CATEGORY_SKILLS = ("pick", "look", "heat", "cool", "clean")
EXPECTED_ROUTES = {
    "pick_and_place_simple": ["pick"],
    "pick_two_obj_and_place": ["pick", "pick_two"],
    "look_at_obj_in_light": ["look"],
    "pick_heat_then_place_in_recep": ["heat"],
    "pick_cool_then_place_in_recep": ["cool"],
    "pick_clean_then_place_in_recep": ["clean"],
}


def _skill(name: str) -> str:
    return (ALFWORLD_DIR / f"{name}.md").read_text(encoding="utf-8").strip()


def _task(task_type: str) -> Task:
    return Task(task_id=f"{task_type}-X-None-Y-1", task_type=task_type, goal="put some x on y.")


@pytest.mark.parametrize(("task_type", "skills"), sorted(EXPECTED_ROUTES.items()))
def test_route_every_alfworld_task_type(task_type, skills):
    assert route_alfworld(task_type) == skills


def test_the_six_task_types_are_exactly_the_routed_ones():
    assert set(ALFWORLD_ROUTES) == set(EXPECTED_ROUTES)


@pytest.mark.parametrize(
    "task_type",
    [
        "",
        "unknown",
        "pick_and_place_with_movable_recep",
        "Pick_And_Place_Simple",
        "pick_and_place_simple-Book-None-Desk-313",
    ],
)
def test_unknown_task_type_raises_instead_of_falling_back_to_general(task_type):
    with pytest.raises(
        UnknownTaskTypeError, match="known task types: pick_and_place_simple, pick_two_obj_and_place"
    ):
        route_alfworld(task_type)
    with pytest.raises(UnknownTaskTypeError):
        teacher_context("alfworld", _task(task_type))


@pytest.mark.parametrize(("task_type", "skills"), sorted(EXPECTED_ROUTES.items()))
def test_teacher_context_is_general_plus_routed_skills(task_type, skills):
    context = teacher_context("alfworld", _task(task_type))
    assert context == "\n\n".join(_skill(name) for name in ["general", *skills])
    assert context.startswith("## General skills")
    for other in set(CATEGORY_SKILLS) - set(skills):
        assert _skill(other) not in context  # no category leaks into another's context


def test_every_skill_file_is_reachable_and_every_route_has_a_file():
    library = get_skill_library("alfworld")
    routed = {name for names in ALFWORLD_ROUTES.values() for name in names}
    assert set(library.skill_names()) == routed | set(library.always)


@pytest.mark.parametrize("name", ["general", *CATEGORY_SKILLS, "pick_two"])
def test_skill_files_are_numbered_principle_plus_when_items(name):
    lines = _skill(name).splitlines()
    assert lines[0].startswith("## ")
    items = lines[1:]
    assert [int(re.match(r"(\d+)\. ", item).group(1)) for item in items] == list(range(1, len(items) + 1))
    assert all(" When: " in item for item in items)
    low, high = (3, 4) if name == "pick_two" else (5, 8)
    assert low <= len(items) <= high


@pytest.mark.parametrize("task_type", sorted(EXPECTED_ROUTES))
def test_teacher_context_size(task_type):
    # ≈ 250-600 tokens: about 3.6-4 characters per token for English under the Qwen/SmolLM2 tokenizers
    assert 1000 <= len(teacher_context("alfworld", _task(task_type))) <= 2600


def test_skills_use_the_classic_alfworld_grammar():
    general = _skill("general")
    for command in ("go to X", "open X", "close X", "take X from Y", "put X in/on Y", "clean X with Y",
                    "heat X with Y", "cool X with Y", "use X", "examine X", "look", "inventory"):  # fmt: skip
        assert command in general, command
    everything = "\n".join(_skill(name) for name in get_skill_library("alfworld").skill_names())
    assert not re.search(
        r"\bmove \w+ (\d+ )?to\b", everything
    )  # the alfworld 0.4.2 grammar ("move X to Y") does not apply to these games
    assert '"heat X with microwave 1"' in _skill("heat")
    assert '"cool X with fridge 1"' in _skill("cool")
    assert '"clean X with sinkbasin N"' in _skill("clean")
    assert '"use desklamp N"' in _skill("look")


def test_skills_carry_household_knowledge():
    general, pick = _skill("general"), _skill("pick")
    assert "A closed fridge, microwave, cabinet, drawer or safe" in general
    assert "keychain, creditcard, cellphone, watch: sidetable, dresser, armchair" in pick
    assert "pillow: bed, sofa, armchair" in pick
    assert "desklamp stands on a sidetable, desk or dresser" in _skill("look")
    assert "mug, cup in cabinet, coffeemachine, countertop" in _skill("heat")
    assert "SAME receptacle" in _skill("pick_two")


def test_unknown_env_and_double_registration():
    with pytest.raises(KeyError, match="no skill library for env 'nowhere'; libraries: .*alfworld"):
        teacher_context("nowhere", _task("pick_and_place_simple"))
    with pytest.raises(ValueError, match="registered twice"):
        register_skill_library(SkillLibrary("alfworld", ALFWORLD_DIR, route=lambda task: []))


def test_a_new_env_is_data_plus_a_router(tmp_path):
    (tmp_path / "general.md").write_text("## General\n1. Read the goal. When: always.\n")
    (tmp_path / "apparel.md").write_text("## Apparel\n1. Check the size. When: clothes.\n")

    def route(task: Task) -> list[str]:
        return ["apparel"] if "shirt" in task.goal else []

    register_skill_library(SkillLibrary("toyshop", tmp_path, route=route))
    try:
        shirt = Task("1", "goal", "i need a blue shirt")
        assert (
            teacher_context("toyshop", shirt)
            == "## General\n1. Read the goal. When: always.\n\n## Apparel\n1. Check the size. When: clothes."
        )
        assert (
            teacher_context("toyshop", Task("2", "goal", "a lamp"))
            == "## General\n1. Read the goal. When: always."
        )
        broken = SkillLibrary("toyshop2", tmp_path, route=lambda task: ["missing"])
        with pytest.raises(FileNotFoundError, match="skills in .*: apparel, general"):
            broken.context(shirt)
    finally:
        SKILL_LIBRARIES.pop("toyshop")


def _game(tmp_path, name: str, object_target: str, usual_places=None) -> Task:
    """A task whose game folder holds just the traj_data.json the alfworld-places skill reads."""
    import json

    game_dir = tmp_path / name
    game_dir.mkdir()
    traj = {"task_type": "pick_and_place_simple", "pddl_params": {"object_target": object_target}}
    if usual_places is not None:
        traj["sdar_generator"] = {"usual_places": usual_places}
    (game_dir / "traj_data.json").write_text(json.dumps(traj))
    return Task(name, "pick_and_place_simple", "put a mug in cabinet.", {"game_dir": game_dir.as_posix()})


def test_alfworld_places_states_the_games_own_order_else_the_table(tmp_path):
    from sdar.envs.alfworld.priors import OBJECT_PRIORS

    shuffled = _game(tmp_path, "gen", "Mug", ["SinkBasin", "Cabinet", "CoffeeMachine"])
    assert teacher_context("alfworld-places", shuffled) == (
        "A mug is usually found in/on: sinkbasin, cabinet, coffeemachine (most likely first). Go there first."
    )
    official = _game(tmp_path, "official", "Pot")  # no recorded order: the table's, most likely first
    assert list(OBJECT_PRIORS["Pot"]) == ["StoveBurner", "CounterTop", "Cabinet"]
    assert "pot is usually found in/on: stoveburner, countertop, cabinet (most" in teacher_context(
        "alfworld-places", official
    )
    unknown = _game(tmp_path, "unknown", "Ottoman")
    no_places = "No usual place is known for a ottoman: look everywhere."
    assert teacher_context("alfworld-places", unknown) == no_places
    # No game (the prompt-budget probe): the longest line of any object, an upper bound
    probe = teacher_context("alfworld-places", _task("pick_and_place_simple"))
    lines = [teacher_context("alfworld-places", _game(tmp_path, o, o)) for o in ("Mug", "KeyChain", "Apple")]
    assert len(probe) >= max(len(line) for line in lines)


def test_a_generated_skill_follows_the_file_skills(tmp_path):
    (tmp_path / "general.md").write_text("# General\n1. Be brief. When: always.\n")
    library = SkillLibrary("gen-test", tmp_path, route=lambda task: [], generated=lambda t: f"id {t.task_id}")
    assert library.context(_task("pick_and_place_simple")) == (
        "# General\n1. Be brief. When: always.\n\nid pick_and_place_simple-X-None-Y-1"
    )
