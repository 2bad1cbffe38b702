"""History memory: recent pairs, the exact history format, and budget truncation (oldest first)."""

import pytest

from sdar.envs.history import EpisodeMemory, HistoryPair, fit_history, render_history


def _memory(count: int) -> EpisodeMemory:
    memory = EpisodeMemory()
    for step in range(1, count + 1):
        memory.add(f"obs {step}", f"act {step}")
    return memory


def test_recent_pairs():
    memory = _memory(3)
    assert memory.step_count == len(memory) == 3
    assert memory.recent(2) == [HistoryPair("obs 2", "act 2"), HistoryPair("obs 3", "act 3")]
    assert memory.recent(5) == list(memory.pairs)  # fewer pairs than asked: all of them
    assert memory.recent(3) == list(memory.pairs)
    assert memory.recent(0) == []
    with pytest.raises(ValueError, match="history_length"):
        memory.recent(-1)
    memory.clear()
    assert memory.recent(2) == [] and memory.step_count == 0


def test_render_history_exact_format():
    pairs = [
        ("You arrive at desk 1.\n\nOn the desk 1, you see a pen 1.", "take pen 1 from desk 1"),
        ("x", "look"),
    ]
    assert render_history(pairs, first_step=4) == (
        "[Observation 4: 'You arrive at desk 1. On the desk 1, you see a pen 1.', "
        "Action 4: 'take pen 1 from desk 1']\n"
        "[Observation 5: 'x', Action 5: 'look']"
    )
    assert render_history([], first_step=1) == ""


SKILLS = "SKILLS: never cut"
CURRENT = "CURRENT OBSERVATION: never cut"


def _render(kept):
    return "\n".join([SKILLS, render_history(kept, first_step=10 - len(kept)), CURRENT])


def test_no_budget_keeps_everything():
    pairs = _memory(4).pairs
    fitted = fit_history(_render, pairs)
    assert (fitted.pairs_shown, fitted.pairs_dropped, fitted.over_budget) == (4, 0, False)
    assert fitted.text == _render(list(pairs)) and fitted.length == len(fitted.text)


def test_budget_drops_oldest_pairs_first():
    pairs = list(_memory(4).pairs)
    full = len(_render(pairs))
    one_pair = len(_render(pairs[-1:]))
    fitted = fit_history(_render, pairs, budget=one_pair)
    assert (fitted.pairs_shown, fitted.pairs_dropped, fitted.over_budget) == (1, 3, False)
    assert "obs 4" in fitted.text and "obs 3" not in fitted.text and "obs 1" not in fitted.text
    assert fit_history(_render, pairs, budget=full).pairs_shown == 4  # the boundary is inclusive
    assert fit_history(_render, pairs, budget=full - 1).pairs_shown == 3


def test_every_budget_keeps_skills_and_current_observation_and_a_suffix_of_history():
    pairs = list(_memory(4).pairs)
    shown_before = 0
    for budget in range(0, len(_render(pairs)) + 2):
        fitted = fit_history(_render, pairs, budget=budget)
        assert SKILLS in fitted.text and CURRENT in fitted.text
        assert fitted.text == _render(pairs[len(pairs) - fitted.pairs_shown :])  # newest pairs kept
        assert fitted.pairs_shown >= shown_before  # more budget never shows less history
        assert fitted.over_budget == (fitted.length > budget)
        assert fitted.over_budget == (budget < len(_render([])))
        shown_before = fitted.pairs_shown
    assert shown_before == 4


def test_over_budget_returns_the_history_free_prompt():
    fitted = fit_history(_render, _memory(3).pairs, budget=5)
    assert fitted.over_budget and fitted.pairs_shown == 0 and fitted.pairs_dropped == 3
    assert fitted.text == _render([])


def test_token_measure():
    words = lambda text: len(text.split())  # noqa: E731 - a stand-in tokenizer: one token per word
    pairs = list(_memory(3).pairs)
    budget = words(_render(pairs[-2:]))
    fitted = fit_history(_render, pairs, budget=budget, measure=words)
    assert fitted.pairs_shown == 2 and fitted.length == budget
