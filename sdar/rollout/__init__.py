"""Rollout: reply parsing, history memory and (later) the batched multi-turn loop."""

from sdar.rollout.memory import EpisodeMemory, FittedPrompt, HistoryPair, fit_history, render_history
from sdar.rollout.parsing import (
    INVALID_REASONS,
    MAX_ACTION_CHARS,
    MAX_SEARCH_CONTENT_CHARS,
    NO_OP_ACTION,
    ParsedReply,
    SearchReply,
    parse_action_reply,
    parse_search_reply,
)

__all__ = [
    "INVALID_REASONS",
    "MAX_ACTION_CHARS",
    "MAX_SEARCH_CONTENT_CHARS",
    "NO_OP_ACTION",
    "EpisodeMemory",
    "FittedPrompt",
    "HistoryPair",
    "ParsedReply",
    "SearchReply",
    "fit_history",
    "parse_action_reply",
    "parse_search_reply",
    "render_history",
]
