"""The WebShop skill library: keyword routing to the seven categories, all matches, files and their format."""

import re

import pytest

from sdar.env_records import Task
from sdar.envs.webshop.categories import CATEGORIES, goal_categories
from sdar.skills import UnknownTaskTypeError, get_skill_library, teacher_context


def task(goal: str) -> Task:
    return Task("0", goal_categories(goal)[0], goal)


@pytest.mark.parametrize(
    ("goal", "categories"),
    [
        ("Find me slim fit men's henleys with short sleeve", ("apparel",)),
        ("Find me non slip women's loafers & slip-ons with arch support", ("footwear",)),
        ("Find me ready hang wall art for living room", ("home_decor",)),
        ("i need a fast charging usb c cable", ("electronics",)),
        ("Find me an rfid blocking leather wallet", ("accessories",)),
        ("Find me sulfate free shampoo for dry hair", ("beauty_health",)),
        ("Find me gluten free herbal tea", ("other",)),
        ("a waterproof phone case with a wrist strap", ("electronics", "accessories")),
    ],
)
def test_goals_route_to_every_matching_category(goal, categories):
    assert goal_categories(goal) == categories
    library = get_skill_library("webshop")
    assert library.skills_for(task(goal)) == ["general", *categories]


def test_keywords_match_whole_words_only():
    assert goal_categories("a bathtub") == ("other",)  # "bath" is no keyword, "tub" is not in "bathtub"
    assert goal_categories("two pillows") == ("home_decor",)  # plural


def test_teacher_context_concatenates_general_and_category_skills():
    text = teacher_context("webshop", task("a waterproof phone case with a wrist strap"))
    assert text.startswith("## General WebShop skills")
    assert text.index("## Electronics skills") < text.index("## Accessories skills")


def test_unknown_task_type_raises_with_the_categories():
    with pytest.raises(UnknownTaskTypeError, match="known categories: apparel"):
        get_skill_library("webshop").route(Task("0", "toys", "a kite"))


def test_every_category_has_a_skill_file_of_numbered_principle_when_items():
    library = get_skill_library("webshop")
    assert set(library.skill_names()) == {"general", *CATEGORIES}
    for name in library.skill_names():
        lines = library.load(name).splitlines()
        assert lines[0].startswith("## ")
        for number, line in enumerate(lines[1:], start=1):
            assert re.match(rf"{number}\. .+\. When: .+\.$", line), (name, line)
