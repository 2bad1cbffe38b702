"""The WebShop prompt: observation formatting, history, the 13,000-character fallback, the token budget."""

from sdar.env_records import Task
from sdar.envs.webshop.prompts import build_webshop_prompt, format_observation, render_webshop_prompt

GOAL = "Find me a red hat"
TASK = Task("0", "accessories", GOAL)
RESULTS = f"Instruction: [SEP] {GOAL} [SEP] Back to Search [SEP] Page 1 (Total results: 1) [SEP] Next >"


def test_observation_is_quoted_after_the_instruction():
    assert (
        format_observation(RESULTS, GOAL)
        == "'Back to Search' [SEP] 'Page 1 (Total results: 1)' [SEP] 'Next >'"
    )
    assert (
        format_observation("Thank you for shopping with us! [SEP] x", GOAL)
        == "Thank you for shopping with us! [SEP] x"
    )


def test_first_turn_and_history_prompts():
    first = build_webshop_prompt(
        TASK, f"WebShop [SEP] Instruction: [SEP] {GOAL} [SEP] Search", ["search[<your query>]"], [], 0
    )
    assert f"Your task is to: {GOAL}" in first and "Your current observation is: 'Search'" in first
    assert "- search[<your query>]" in first and "<think>" in first and "<action>" in first
    history = [("WebShop [SEP] Instruction: [SEP] Find me a red hat [SEP] Search", "search[red hat]")]
    later = build_webshop_prompt(TASK, RESULTS, ["click[next >]"], history, 1)
    assert "[Observation 1: ''Search'', Action 1: 'search[red hat]']" in later
    assert "You are now at step 2." in later


def test_prompts_over_13000_characters_drop_the_history():
    long_page = f"Instruction: [SEP] {GOAL} [SEP] " + "x" * 7000
    pairs = [(long_page, "click[next >]"), (long_page, "click[next >]")]
    fitted = render_webshop_prompt(TASK, RESULTS, ["click[next >]"], pairs, 2)
    assert fitted.pairs_shown == 0 and fitted.pairs_dropped == 2
    assert "Before this step" not in fitted.text and len(fitted.text) < 13000
    short = render_webshop_prompt(TASK, RESULTS, ["click[next >]"], [(RESULTS, "a"), (RESULTS, "b")], 2)
    assert short.pairs_shown == 2
    budgeted = render_webshop_prompt(
        TASK, RESULTS, ["click[next >]"], [(RESULTS, "a"), (RESULTS, "b")], 2, budget=len(short.text) - 1
    )
    assert budgeted.pairs_shown == 1  # a budget drops the oldest pair first
