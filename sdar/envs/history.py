"""History memory: the (observation, action) pairs of one episode, and their rendering into the prompt.

At turn k the prompt shows the last H pairs (H = 2 ALFWorld/WebShop, 4 Search-QA; docs/method.md §1). Pair j
is the observation the agent saw at step j and the action it stepped in reply (the executed action: for an
invalid reply, the no-op string). Steps are numbered from 1. One rendered line per pair:

    [Observation 3: 'On the desk 1, you see a pen 1.', Action 3: 'take pen 1 from desk 1']

Lines are joined by "\\n". Whitespace runs inside an observation/action (ALFWorld's first observation has
blank lines) become one space so that each pair stays on one line. This is the verl-agent layout, kept so
prompts stay comparable with the paper's.

Prompt budget: `fit_history` renders with as many of the given pairs as fit a budget (characters, or tokens
through any `measure` callable), dropping the OLDEST pairs first. Only history is ever dropped; the rest of
the prompt (task, skills, current observation, admissible actions) is never cut, even when it alone exceeds
the budget (then `over_budget` is True and the caller decides).

Each env's prompt builder renders the history; the rollout loop keeps one `EpisodeMemory` per episode.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

_WHITESPACE = re.compile(r"\s+")


class HistoryPair(NamedTuple):
    observation: str
    action: str


def as_pairs(pairs: Iterable[HistoryPair | tuple[str, str]]) -> list[HistoryPair]:
    """Accept HistoryPair or plain (observation, action) tuples."""
    return [HistoryPair(str(observation), str(action)) for observation, action in pairs]


class EpisodeMemory:
    """The (observation, action) pairs of one episode, oldest first."""

    def __init__(self) -> None:
        self._pairs: list[HistoryPair] = []

    def add(self, observation: str, action: str) -> None:
        self._pairs.append(HistoryPair(observation, action))

    def recent(self, history_length: int) -> list[HistoryPair]:
        """The last `history_length` pairs (all of them if fewer; none for 0)."""
        if history_length < 0:
            raise ValueError(f"history_length must be >= 0, got {history_length}")
        return self._pairs[max(0, len(self._pairs) - history_length) :] if history_length else []

    @property
    def pairs(self) -> tuple[HistoryPair, ...]:
        return tuple(self._pairs)

    @property
    def step_count(self) -> int:
        """Steps already taken in this episode."""
        return len(self._pairs)

    def clear(self) -> None:
        self._pairs.clear()

    def __len__(self) -> int:
        return len(self._pairs)


def _one_line(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()


def render_history(pairs: Sequence[HistoryPair | tuple[str, str]], first_step: int) -> str:
    """`[Observation n: '...', Action n: '...']` lines, numbered from `first_step`, joined by newlines."""
    return "\n".join(
        f"[Observation {first_step + offset}: '{_one_line(observation)}', "
        f"Action {first_step + offset}: '{_one_line(action)}']"
        for offset, (observation, action) in enumerate(pairs)
    )


@dataclass(frozen=True)
class FittedPrompt:
    text: str
    pairs_shown: int
    pairs_dropped: int
    length: int  # measure(text)
    over_budget: bool  # True only when even the history-free prompt exceeds the budget


def fit_history(
    render: Callable[[list[HistoryPair]], str],
    pairs: Sequence[HistoryPair | tuple[str, str]],
    budget: int | None = None,
    measure: Callable[[str], int] = len,
) -> FittedPrompt:
    """Render with the most recent pairs that fit `budget` (None = no budget), dropping oldest first.

    `render(kept_pairs)` builds the whole prompt from the pairs to show (it owns their step numbering);
    `measure` is `len` for characters or e.g. `lambda s: len(tokenizer(s).input_ids)` for tokens.
    """
    kept = as_pairs(pairs)
    total = len(kept)
    while True:
        text = render(kept)
        length = measure(text)
        if budget is None or length <= budget or not kept:
            return FittedPrompt(
                text=text,
                pairs_shown=len(kept),
                pairs_dropped=total - len(kept),
                length=length,
                over_budget=budget is not None and length > budget,
            )
        kept = kept[1:]


def text_only(render: Callable[..., FittedPrompt]) -> Callable[..., str]:
    """An env's `build_prompt` from its `render_*_prompt`: the same arguments, the user message text only."""

    @functools.wraps(render)
    def build_prompt(*args, **kwargs) -> str:
        return render(*args, **kwargs).text

    return build_prompt


def recent_history(
    history_pairs: Sequence[HistoryPair | tuple[str, str]], step_count: int, history_length: int
) -> list[HistoryPair]:
    """The last `history_length` of the pairs of the `step_count` steps taken (all of them or only the
    latest are given); checks that the counts are consistent."""
    if step_count < 0 or history_length < 0:
        raise ValueError(f"step_count and history_length must be >= 0, got {step_count}, {history_length}")
    pairs = as_pairs(history_pairs)
    if len(pairs) > step_count:
        raise ValueError(f"{len(pairs)} history pairs given but only {step_count} step(s) taken")
    return pairs[max(0, len(pairs) - history_length) :] if history_length else []
