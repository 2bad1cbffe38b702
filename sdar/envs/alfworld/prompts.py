"""The ALFWorld user message (docs/method.md §1), built from plain-text templates a user can read and edit.

Two templates live in `templates/` next to this file:
- `first_turn.txt` (step 0, no history): {task}, {observation}, {admissible_actions}.
- `with_history.txt` (every later step): also {step_count} (steps already taken), {history_count} (pairs
  shown), {history} (rendered by `sdar.envs.history.render_history`) and {current_step} (= step_count + 1).
Placeholders are `{name}`; any other brace is literal text, and substituted values are never re-scanned, so an
observation containing braces is safe. An unknown placeholder fails at load time with the allowed names.
Point `load_alfworld_templates(directory)` at a folder with your own two files to change the wording.

Rendering choices: the goal is stated on its own line in both variants (the env's first observation also ends
with it); admissible actions are listed one per line as "- go to cabinet 1", in the env's order, without
"help" (it only prints the command list, which the prompt already shows); the current observation keeps its
line breaks. This returns the user message only; the rollout applies the chat template.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sdar.env_records import Task
from sdar.envs.history import (
    FittedPrompt,
    HistoryPair,
    fit_history,
    recent_history,
    render_history,
    text_only,
)

TEMPLATE_DIR = Path(__file__).parent / "templates"
TEMPLATE_FIELDS: dict[str, frozenset[str]] = {
    "first_turn": frozenset({"task", "observation", "admissible_actions"}),
    "with_history": frozenset(
        {
            "task",
            "observation",
            "admissible_actions",
            "step_count",
            "history_count",
            "history",
            "current_step",
        }
    ),
}
HIDDEN_ACTIONS = frozenset({"help"})
NO_ADMISSIBLE_ACTIONS = "(none listed)"
NO_HISTORY_SHOWN = "(none shown)"
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_TASK_PREFIX = re.compile(r"^\s*your task is to\s*:\s*", re.IGNORECASE)


@dataclass(frozen=True)
class AlfworldTemplates:
    first_turn: str
    with_history: str


def check_template(template: str, name: str, allowed: frozenset[str]) -> None:
    unknown = sorted({match.group(1) for match in _PLACEHOLDER.finditer(template)} - allowed)
    if unknown:
        raise ValueError(
            f"template {name!r} uses unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)}; "
            f"allowed: {', '.join('{' + a + '}' for a in sorted(allowed))}"
        )


def fill_template(template: str, values: dict[str, object]) -> str:
    """Replace each `{name}` with `values[name]`; other braces stay; values are not re-scanned."""
    return _PLACEHOLDER.sub(
        lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), template
    )


@functools.lru_cache(maxsize=8)
def _load(directory: Path) -> AlfworldTemplates:
    texts = {}
    for name, allowed in TEMPLATE_FIELDS.items():
        path = directory / f"{name}.txt"
        if not path.is_file():
            raise FileNotFoundError(f"ALFWorld prompt template {path} is missing (expected {name}.txt)")
        text = path.read_text(encoding="utf-8").rstrip()  # the file's trailing newline is not part of it
        check_template(text, name, allowed)
        texts[name] = text
    return AlfworldTemplates(**texts)


def load_alfworld_templates(directory: str | Path | None = None) -> AlfworldTemplates:
    """The two templates from `directory` (default: the packaged `templates/`), validated."""
    return _load(Path(directory).resolve() if directory is not None else TEMPLATE_DIR)


def format_admissible_actions(admissible_actions: Sequence[str] | None) -> str:
    shown = [action for action in admissible_actions or () if action not in HIDDEN_ACTIONS]
    return "\n".join(f"- {action}" for action in shown) if shown else NO_ADMISSIBLE_ACTIONS


def task_description(task: Task) -> str:
    """The goal without a leading "Your task is to:" (the templates say it)."""
    return _TASK_PREFIX.sub("", task.goal).strip()


def render_alfworld_prompt(
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
) -> FittedPrompt:
    """The user message plus how much history it shows; history beyond `budget` is dropped oldest first.

    `history_pairs` are the pairs of the steps before this one (all of them or only the latest); the last of
    them is step `step_count`. `step_count == 0` selects the first-turn template.
    """
    recent = recent_history(history_pairs, step_count, history_length)
    templates = templates or load_alfworld_templates()
    common = {
        "task": task_description(task),
        "observation": observation.strip(),
        "admissible_actions": format_admissible_actions(admissible_actions),
    }
    if step_count == 0:
        return fit_history(lambda _: fill_template(templates.first_turn, common), [], budget, measure)

    def render(kept: list[HistoryPair]) -> str:
        history = render_history(kept, first_step=step_count - len(kept) + 1) if kept else NO_HISTORY_SHOWN
        values = dict(
            common,
            step_count=step_count,
            history_count=len(kept),
            history=history,
            current_step=step_count + 1,
        )
        return fill_template(templates.with_history, values)

    return fit_history(render, recent, budget, measure)


# The ALFWorld user message text (EnvSpec.build_prompt); `render_alfworld_prompt` also says how much
# history it shows.
build_alfworld_prompt = text_only(render_alfworld_prompt)


def template_prompt(directory: str | Path) -> Callable[..., str]:
    """An `EnvSpec.build_prompt` from your own `first_turn.txt` and `with_history.txt` in `directory`, with
    the placeholders of ALFWorld's (TEMPLATE_FIELDS); the files are read and checked now."""
    return text_only(functools.partial(render_alfworld_prompt, templates=load_alfworld_templates(directory)))
