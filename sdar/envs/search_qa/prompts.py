"""The Search-QA user message and reply format (docs/method.md §1), from editable plain-text templates.

`templates/first_turn.txt` (turn 1): {question}, {max_turns}. `templates/with_history.txt` (later turns): also
{step_count}, {history_count}, {history} (the last H = 4 (observation, action) pairs, rendered by
`sdar.envs.history.render_history`), {current_step} and {observation} (the result of the last action: the
`<information>` block of a search, or the note on an invalid reply). The env puts `max_turns` in
`Task.metadata`. History beyond the prompt budget is dropped oldest first; the question is never cut.

Reply format: `<think>...</think>` then exactly one of `<search>q</search>` / `<answer>a</answer>`, parsed by
`sdar.envs.replies.parse_search_reply`. The action the env steps is the canonical tag text, e.g.
`<search>capital of france</search>`, or `NO_OP_ACTION` for an invalid reply; that is also what the history
shows, so the model sees its own past queries.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sdar.env_records import Task
from sdar.envs.alfworld.prompts import check_template, fill_template
from sdar.envs.history import (
    FittedPrompt,
    HistoryPair,
    fit_history,
    recent_history,
    render_history,
    text_only,
)
from sdar.envs.replies import NO_OP_ACTION, parse_search_reply

TEMPLATE_DIR = Path(__file__).parent / "templates"
_FIRST = frozenset({"question", "max_turns"})
TEMPLATE_FIELDS = {
    "first_turn": _FIRST,
    "with_history": _FIRST | {"step_count", "history_count", "history", "current_step", "observation"},
}
DEFAULT_MAX_TURNS = 4
SEARCH_STOP = ("</search>", "</answer>")


@dataclass(frozen=True)
class SearchTemplates:
    first_turn: str
    with_history: str


@functools.lru_cache(maxsize=8)
def load_search_templates(directory: Path = TEMPLATE_DIR) -> SearchTemplates:
    texts = {}
    for name, allowed in TEMPLATE_FIELDS.items():
        path = Path(directory) / f"{name}.txt"
        if not path.is_file():
            raise FileNotFoundError(f"Search-QA prompt template {path} is missing (expected {name}.txt)")
        texts[name] = path.read_text(encoding="utf-8").rstrip()
        check_template(texts[name], name, allowed)
    return SearchTemplates(**texts)


def render_search_prompt(
    task: Task,
    observation: str,
    admissible_actions: Sequence[str] | None,
    history_pairs: Sequence[HistoryPair | tuple[str, str]],
    step_count: int,
    history_length: int = 4,
    *,
    budget: int | None = None,
    measure: Callable[[str], int] = len,
    templates: SearchTemplates | None = None,
) -> FittedPrompt:
    """The user message and how much history it shows (admissible actions: Search-QA has none)."""
    recent = recent_history(history_pairs, step_count, history_length)
    templates = templates or load_search_templates()
    common = {"question": task.goal.strip(), "max_turns": task.metadata.get("max_turns", DEFAULT_MAX_TURNS)}
    if step_count == 0:
        return fit_history(lambda _: fill_template(templates.first_turn, common), [], budget, measure)

    def render(kept: list[HistoryPair]) -> str:
        history = render_history(kept, first_step=step_count - len(kept) + 1) if kept else "(none shown)"
        values = dict(
            common,
            step_count=step_count,
            history_count=len(kept),
            history=history,
            current_step=step_count + 1,
            observation=observation.strip(),
        )
        return fill_template(templates.with_history, values)

    return fit_history(render, recent, budget, measure)


# The user message text (EnvSpec.build_prompt); `render_search_prompt` also says how much history it shows.
build_search_prompt = text_only(render_search_prompt)


# ---- actions ---------------------------------------------------------------------------------------------
def search_action(query: str) -> str:
    return f"<search>{query}</search>"


def answer_action(answer: str) -> str:
    return f"<answer>{answer}</answer>"


@dataclass(frozen=True)
class SearchActionReply:
    """A parsed reply as the rollout needs it (EnvSpec.parse_reply): the canonical action and validity."""

    action: str
    valid: bool
    reason: str
    kind: str  # "search", "answer" or "invalid"
    content: str
    think: str


def parse_search_action(text: str) -> SearchActionReply:
    """Model reply -> the action the env steps: `<search>q</search>`, `<answer>a</answer>` or NO_OP_ACTION."""
    reply = parse_search_reply(text)
    if not reply.valid:
        return SearchActionReply(NO_OP_ACTION, False, reply.reason, "invalid", "", reply.think)
    make = search_action if reply.kind == "search" else answer_action
    return SearchActionReply(make(reply.content), True, reply.reason, reply.kind, reply.content, reply.think)


def read_action(action: str) -> tuple[str, str]:
    """A stepped action -> (kind, content): kind "search", "answer" or "invalid" (content "")."""
    reply = parse_search_reply(action, require_think=False)
    return (reply.kind, reply.content) if reply.valid else ("invalid", "")


def render_search_reply(task: Task, action: str) -> str:
    """The SFT target reply that steps `action` (an expert action), in the Search-QA format."""
    kind, content = read_action(action)
    question = task.goal.strip().rstrip("?")
    if kind == "search":
        thought = f'To answer "{question}" I need evidence, so I will search for: {content}.'
        return f"<think>{thought}</think>\n<search>{content}</search>"
    if kind == "answer":
        thought = f"The retrieved passages answer the question: {content}."
        return f"<think>{thought}</think>\n<answer>{content}</answer>"
    raise ValueError(f"cannot render a reply for {action!r}: not a <search> or <answer> action")
