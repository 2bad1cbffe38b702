"""The WebShop user message (docs/method.md §1), from the two editable templates in `templates/`.

Same placeholders and mechanics as the ALFWorld prompt (sdar.envs.alfworld.prompts): `first_turn.txt` (no
history) and `with_history.txt`. WebShop specifics, following the release (verl-agent's WebShop manager):
- The observation shown is the page text AFTER the instruction, each " [SEP] " segment in single quotes
  ("'Back to Search' [SEP] 'Page 1 (Total results: 50)' [SEP] ..."); the task is stated once at the top.
  History observations get the same treatment.
- The release's 13,000-character fallback: when the prompt with history is longer than 13,000 characters,
  it is rendered with the no-history template instead (WebShop pages can be long: 10 products per results
  page with full titles). A token `budget` then drops the oldest history pairs first, as for ALFWorld.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path

from sdar.env_records import Task
from sdar.envs.alfworld.prompts import TEMPLATE_FIELDS, AlfworldTemplates, check_template, fill_template
from sdar.envs.history import (
    FittedPrompt,
    HistoryPair,
    fit_history,
    recent_history,
    render_history,
    text_only,
)
from sdar.envs.webshop.pages import SEPARATOR

TEMPLATE_DIR = Path(__file__).parent / "templates"
HISTORY_FALLBACK_CHARS = 13_000  # the release's limit for a prompt with history
NO_ADMISSIBLE_ACTIONS = "(none listed)"
NO_HISTORY_SHOWN = "(none shown)"


@functools.lru_cache(maxsize=8)
def load_webshop_templates(directory: Path = TEMPLATE_DIR) -> AlfworldTemplates:
    texts = {}
    for name, allowed in TEMPLATE_FIELDS.items():
        path = Path(directory) / f"{name}.txt"
        if not path.is_file():
            raise FileNotFoundError(f"WebShop prompt template {path} is missing (expected {name}.txt)")
        texts[name] = path.read_text(encoding="utf-8").rstrip()
        check_template(texts[name], name, allowed)
    return AlfworldTemplates(**texts)


def format_observation(observation: str, instruction: str) -> str:
    """The segments after the instruction, each quoted; the raw text when the page lacks the instruction."""
    parts = observation.split(SEPARATOR)
    if instruction not in parts:
        return observation.strip()
    return SEPARATOR.join(f"'{part}'" for part in parts[parts.index(instruction) + 1 :])


def format_admissible_actions(admissible_actions: Sequence[str] | None) -> str:
    return "\n".join(f"- {action}" for action in admissible_actions or ()) or NO_ADMISSIBLE_ACTIONS


def render_webshop_prompt(
    task: Task,
    observation: str,
    admissible_actions: Sequence[str] | None,
    history_pairs: Sequence[HistoryPair | tuple[str, str]],
    step_count: int,
    history_length: int = 2,
    *,
    budget: int | None = None,
    measure: Callable[[str], int] = len,
    templates: AlfworldTemplates | None = None,
    fallback_chars: int = HISTORY_FALLBACK_CHARS,
) -> FittedPrompt:
    """The user message and how much history it shows (see the module docstring for the fallbacks)."""
    recent = recent_history(history_pairs, step_count, history_length)
    templates = templates or load_webshop_templates()
    common = {
        "task": task.goal,
        "observation": format_observation(observation, task.goal),
        "admissible_actions": format_admissible_actions(admissible_actions),
    }
    first_turn = fill_template(templates.first_turn, common)
    if step_count == 0:
        return fit_history(lambda _: first_turn, [], budget, measure)

    def render(kept: list[HistoryPair]) -> str:
        if not kept:
            history = NO_HISTORY_SHOWN
        else:
            shown = [HistoryPair(format_observation(o, task.goal), a) for o, a in kept]
            history = render_history(shown, first_step=step_count - len(kept) + 1)
        values = dict(common, step_count=step_count, history_count=len(kept), history=history)
        return fill_template(templates.with_history, dict(values, current_step=step_count + 1))

    if len(render(recent)) > fallback_chars:  # the release's switch to the no-history template
        length = measure(first_turn)
        over = budget is not None and length > budget
        return FittedPrompt(
            first_turn, pairs_shown=0, pairs_dropped=len(recent), length=length, over_budget=over
        )
    return fit_history(render, recent, budget, measure)


# The user message text (EnvSpec.build_prompt); `render_webshop_prompt` also says how much history it shows.
build_webshop_prompt = text_only(render_webshop_prompt)
