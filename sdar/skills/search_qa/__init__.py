"""The Search-QA skill library (docs/method.md §4): general skills plus routing by dataset and question form.

Dataset routes: NQ and TriviaQA -> direct retrieval; PopQA -> entity-attribute lookup; HotpotQA, 2Wiki,
MuSiQue, Bamboogle -> multi-hop. A "which ... or ..." question also gets the comparison skill, whatever its
dataset. A dataset without a route raises (no silent general-only fallback).
"""

from __future__ import annotations

import re
from pathlib import Path

from sdar.env_records import Task
from sdar.skills.library import SkillLibrary, UnknownTaskTypeError, register_skill_library

SEARCH_QA_ROUTES: dict[str, tuple[str, ...]] = {
    "nq": ("direct_retrieval",),
    "triviaqa": ("direct_retrieval",),
    "popqa": ("entity_attribute",),
    "hotpotqa": ("multi_hop",),
    "2wikimultihopqa": ("multi_hop",),
    "musique": ("multi_hop",),
    "bamboogle": ("multi_hop",),
}
# "which" before an " or " joining two options, e.g. "Which is older, the Eiffel Tower or Big Ben?"
COMPARISON = re.compile(r"\bwhich\b.*\bor\b", re.IGNORECASE | re.DOTALL)


def is_comparison(question: str) -> bool:
    return COMPARISON.search(question) is not None


def route_search_qa(task: Task) -> list[str]:
    """Category skills of a Search-QA task: its dataset's route, plus comparison for "which ... or ..."."""
    if task.task_type not in SEARCH_QA_ROUTES:
        raise UnknownTaskTypeError(
            f"no Search-QA skill route for dataset {task.task_type!r}; "
            f"known datasets: {', '.join(SEARCH_QA_ROUTES)}"
        )
    skills = list(SEARCH_QA_ROUTES[task.task_type])
    if is_comparison(task.goal):
        skills.append("comparison")
    return skills


SEARCH_QA_LIBRARY = register_skill_library(
    SkillLibrary("search-qa", Path(__file__).parent, route=route_search_qa)
)
