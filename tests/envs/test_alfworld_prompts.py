"""ALFWorld prompt rendering: exact goldens for both variants, numbering, budget, editable templates.

The goldens in tests/golden/ (the prompt plus one final newline) were written once from the renderer and
reviewed by eye. After an intended
wording change, review the new text and rewrite them with:
    python -c "import tests.envs.test_alfworld_prompts as t; t.write_goldens()"
"""

from pathlib import Path

import pytest

from sdar.env_records import Task
from sdar.envs.alfworld.prompts import (
    TEMPLATE_FIELDS,
    build_alfworld_prompt,
    load_alfworld_templates,
    render_alfworld_prompt,
)

GOLDEN = Path(__file__).parent.parent / "golden"

TASK = Task(
    task_id="valid_seen/pick_heat_then_place_in_recep-Apple-None-DiningTable-26",
    task_type="pick_heat_then_place_in_recep",
    goal="heat some apple and put it in diningtable.",
)
# as the engine adapter emits it: TextWorld's "-= Welcome to TextWorld, ALFRED! =-" banner stripped
FIRST_OBSERVATION = (
    "You are in the middle of a room. Looking quickly around you, you see a cabinet 2, a cabinet 1, "
    "a countertop 1, a diningtable 1, a fridge 1, a microwave 1, and a sinkbasin 1.\n\n"
    "Your task is to: heat some apple and put it in diningtable."
)
FIRST_ACTIONS = [
    "go to cabinet 1", "go to cabinet 2", "go to countertop 1", "go to diningtable 1", "go to fridge 1",
    "go to microwave 1", "go to sinkbasin 1", "help", "inventory", "look",
]  # fmt: skip
HISTORY = [
    (FIRST_OBSERVATION, "go to countertop 1"),
    (
        "You arrive at countertop 1. On the countertop 1, you see a apple 1, and a knife 1.",
        "take apple 1 from countertop 1",
    ),
    ("You pick up the apple 1 from the countertop 1.", "go to microwave 1"),
]
CURRENT = "You arrive at microwave 1. The microwave 1 is closed."
CURRENT_ACTIONS = [
    "examine microwave 1", "go to cabinet 1", "go to countertop 1", "go to diningtable 1",
    "heat apple 1 with microwave 1", "help", "inventory", "look", "open microwave 1",
]  # fmt: skip


def first_turn_prompt() -> str:
    return build_alfworld_prompt(TASK, FIRST_OBSERVATION, FIRST_ACTIONS, [], step_count=0)


def with_history_prompt() -> str:
    return build_alfworld_prompt(TASK, CURRENT, CURRENT_ACTIONS, HISTORY, step_count=3)


def write_goldens() -> None:
    (GOLDEN / "alfworld_prompt_first_turn.txt").write_text(first_turn_prompt() + "\n", encoding="utf-8")
    (GOLDEN / "alfworld_prompt_with_history.txt").write_text(with_history_prompt() + "\n", encoding="utf-8")


def test_first_turn_golden():
    assert first_turn_prompt() + "\n" == (GOLDEN / "alfworld_prompt_first_turn.txt").read_text(
        encoding="utf-8"
    )


def test_with_history_golden():
    assert with_history_prompt() + "\n" == (GOLDEN / "alfworld_prompt_with_history.txt").read_text(
        encoding="utf-8"
    )


def test_with_history_shows_the_last_h_pairs_numbered_by_step():
    text = with_history_prompt()
    assert "already taken 3 step(s)" in text and "most recent 2 observation(s)" in text
    assert "[Observation 1:" not in text and "Action 1:" not in text
    assert "Action 2: 'take apple 1 from countertop 1']" in text and "Action 3: 'go to microwave 1']" in text
    assert "You are now at step 4. Your current observation is: " + CURRENT in text
    # passing only the latest pairs renders the same prompt (numbering is anchored to step_count)
    assert build_alfworld_prompt(TASK, CURRENT, CURRENT_ACTIONS, HISTORY[-2:], step_count=3) == text
    four = build_alfworld_prompt(TASK, CURRENT, CURRENT_ACTIONS, HISTORY, step_count=3, history_length=4)
    assert "most recent 3 observation(s)" in four and "[Observation 1: 'You are in the middle" in four


def test_history_length_zero_and_errors():
    text = build_alfworld_prompt(TASK, CURRENT, CURRENT_ACTIONS, HISTORY, step_count=3, history_length=0)
    assert (
        "already taken 3 step(s)" in text
        and "most recent 0 observation(s)" in text
        and "(none shown)" in text
    )
    with pytest.raises(ValueError, match="history pairs"):
        build_alfworld_prompt(TASK, CURRENT, CURRENT_ACTIONS, HISTORY, step_count=2)
    with pytest.raises(ValueError, match=">= 0"):
        build_alfworld_prompt(TASK, CURRENT, CURRENT_ACTIONS, [], step_count=-1)


def test_admissible_actions_and_goal_rendering():
    text = first_turn_prompt()
    assert "- go to cabinet 1\n- go to cabinet 2\n" in text and "- look" in text
    assert "- help" not in text
    assert "(none listed)" in build_alfworld_prompt(TASK, CURRENT, None, [], step_count=0)
    prefixed = Task("t", TASK.task_type, "Your task is to: heat some apple and put it in diningtable.")
    assert build_alfworld_prompt(prefixed, FIRST_OBSERVATION, FIRST_ACTIONS, [], 0) == text


def test_braces_in_values_are_not_substituted():
    text = build_alfworld_prompt(
        TASK, "A note says {task} and {history}.", ["look"], [("{observation}", "{x}")], 1
    )
    assert (
        "A note says {task} and {history}." in text
        and "[Observation 1: '{observation}', Action 1: '{x}']" in text
    )


def test_budget_drops_oldest_history_first_and_never_the_current_observation():
    full = render_alfworld_prompt(TASK, CURRENT, CURRENT_ACTIONS, HISTORY, step_count=3)
    assert full.pairs_shown == 2
    tight = render_alfworld_prompt(
        TASK, CURRENT, CURRENT_ACTIONS, HISTORY, step_count=3, budget=full.length - 1
    )
    assert (tight.pairs_shown, tight.pairs_dropped, tight.over_budget) == (1, 1, False)
    assert "[Observation 3: 'You pick up the apple 1" in tight.text and "Observation 2" not in tight.text
    assert "most recent 1 observation(s)" in tight.text
    starved = render_alfworld_prompt(TASK, CURRENT, CURRENT_ACTIONS, HISTORY, step_count=3, budget=10)
    assert starved.over_budget and starved.pairs_shown == 0
    assert CURRENT in starved.text and "heat apple 1 with microwave 1" in starved.text
    first = render_alfworld_prompt(TASK, FIRST_OBSERVATION, FIRST_ACTIONS, [], step_count=0, budget=10)
    assert first.over_budget and first.text == first_turn_prompt()


def test_packaged_templates_use_every_field_and_ask_for_the_reply_format():
    templates = load_alfworld_templates()
    for name, fields in TEMPLATE_FIELDS.items():
        text = getattr(templates, name)
        assert all("{" + field + "}" in text for field in fields), name
        assert "<think> </think>" in text and "<action> </action>" in text


def test_custom_template_directory(tmp_path):
    (tmp_path / "first_turn.txt").write_text(
        "Goal: {task}\nSee: {observation}\nDo one of:\n{admissible_actions}\n"
    )
    (tmp_path / "with_history.txt").write_text("{task}|{step_count}|{history}|{observation}")
    templates = load_alfworld_templates(tmp_path)
    text = build_alfworld_prompt(TASK, "obs", ["look"], [], 0, templates=templates)
    assert text == "Goal: heat some apple and put it in diningtable.\nSee: obs\nDo one of:\n- look"
    text = build_alfworld_prompt(TASK, "obs", ["look"], [("o", "a")], 1, templates=templates)
    assert text == "heat some apple and put it in diningtable.|1|[Observation 1: 'o', Action 1: 'a']|obs"

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "first_turn.txt").write_text("{task} {obsrvation}")
    (bad / "with_history.txt").write_text("{task}")
    with pytest.raises(
        ValueError, match=r"unknown placeholder\(s\) \{obsrvation\}; allowed: .*\{observation\}"
    ):
        load_alfworld_templates(bad)
    with pytest.raises(FileNotFoundError, match="with_history.txt"):
        (tmp_path / "missing").mkdir()
        (tmp_path / "missing" / "first_turn.txt").write_text("{task}")
        load_alfworld_templates(tmp_path / "missing")
