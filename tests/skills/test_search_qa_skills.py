"""Search-QA skill routing (docs/method.md §4): by dataset, plus comparison for "which ... or ..."
questions."""

import pytest

from sdar.env_records import Task
from sdar.envs.search_qa import SEARCH_QA_SPEC
from sdar.skills import UnknownTaskTypeError, get_skill_library, teacher_context
from sdar.skills.search_qa import SEARCH_QA_ROUTES, is_comparison, route_search_qa


def task(dataset, question="Who wrote Hamlet?"):
    return Task("id", dataset, question)


@pytest.mark.parametrize(
    ("dataset", "skills"),
    [
        ("nq", ["direct_retrieval"]),
        ("triviaqa", ["direct_retrieval"]),
        ("popqa", ["entity_attribute"]),
        ("hotpotqa", ["multi_hop"]),
        ("2wikimultihopqa", ["multi_hop"]),
        ("musique", ["multi_hop"]),
        ("bamboogle", ["multi_hop"]),
    ],
)
def test_every_dataset_routes_to_its_skill(dataset, skills):
    assert route_search_qa(task(dataset)) == skills


def test_the_router_knows_every_task_type_of_the_env():
    assert set(SEARCH_QA_ROUTES) == set(SEARCH_QA_SPEC.task_types)
    assert get_skill_library(SEARCH_QA_SPEC.skill_library).env_name == "search-qa"


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("Which is older, the Eiffel Tower or Big Ben?", True),
        ("Which band formed first: Blur or Oasis?", True),
        ("which\nfilm came out first, Jaws or Alien?", True),
        ("Who is older, Tom or Jerry?", False),  # no "which"
        ("Which city is the capital of France?", False),  # no "or"
        ("Which actor starred in Oregon Trail?", False),  # "or" only inside a word
    ],
)
def test_comparison_form(question, expected):
    assert is_comparison(question) is expected


def test_comparison_adds_to_the_dataset_route():
    assert route_search_qa(task("hotpotqa", "Which is taller, A or B?")) == ["multi_hop", "comparison"]
    assert route_search_qa(task("nq", "which came first, the chicken or the egg")) == [
        "direct_retrieval",
        "comparison",
    ]


def test_unknown_dataset_raises_with_the_valid_names():
    with pytest.raises(UnknownTaskTypeError, match="known datasets: nq, triviaqa, popqa"):
        route_search_qa(task("squad"))


def test_teacher_context_is_general_then_routed_skills_and_every_file_exists():
    library = get_skill_library("search-qa")
    names = library.skill_names()
    assert set(names) == {"general", "direct_retrieval", "entity_attribute", "multi_hop", "comparison"}
    text = teacher_context("search-qa", task("bamboogle", "Which is older, A or B?"))
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert [s.split(" (")[0] for s in sections] == [
        "## General skills",
        "## Multi-hop skills",
        "## Comparison skills",
    ]
    for name in names:  # numbered "principle. When: ..." items, no answers
        items = [line for line in library.load(name).splitlines()[1:] if line.strip()]
        assert items and all(line[0].isdigit() and "When:" in line for line in items)
