"""Reply parsing and validity (docs/method.md §1): turn a model reply into the text the env steps.

Two reply formats:
- ALFWorld / WebShop: `<think>...</think><action>...</action>` → `parse_action_reply`.
- Search-QA: `<think>...</think>` then exactly one of `<search>q</search>` / `<answer>a</answer>`
  → `parse_search_reply`.

Rules shared by both (our documented reading of the spec and the release):
- Tags are the literal strings `<think>`, `</think>`, ... (no spaces or attributes inside the brackets),
  matched ASCII-case-insensitively (`<Action>` counts; the release lower-cases the reply before searching).
- Every tag of the format must occur EXACTLY once: a repeated tag anywhere in the reply, including a tag
  quoted inside another block ("tags inside tags", e.g. `<think>I will write <action>..</think>`), makes the
  reply invalid (`repeated_tag`). Blocks must not overlap or nest and must come in order: the think block
  closes before the action (search/answer) block opens (`misordered_tags`).
- Text outside the blocks (a preamble, trailing text) is allowed, as in the release.
- Any CJK character anywhere in the reply makes it invalid (`cjk`). The release tests U+4E00–U+9FFF only; we
  test a superset (ideographs incl. extensions, kana, hangul, bopomofo, CJK punctuation, full-width forms).
- The content is stripped and every whitespace run (newlines, tabs) becomes one space. It must be non-empty
  (`empty_action`/`empty_content`; the release would step an empty string), at most `max_chars` long
  (`action_too_long`/`content_too_long`, so a runaway reply cannot reach the env), and free of control and
  invisible format characters such as NUL or zero-width spaces (`control_character`).
- Parsing never raises on any `str`: every path is linear in the reply length (no backtracking regex).

An invalid ALFWorld/WebShop reply yields `NO_OP_ACTION`, which the env steps as an unknown command: ALFWorld
(TextWorld) answers "Nothing happens." and WebShop treats it as an unparseable action; neither changes state.
The rollout subtracts the invalid-action penalty for that turn. An env names its parser in its EnvSpec
(`parse_reply`); the rollout loop only calls it through the spec.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# An unknown command for every env: TextWorld replies "Nothing happens."; WebShop has no `search[`/`click[`.
# It also reads sensibly in the history the model sees on its next turn.
NO_OP_ACTION = "invalid action"

# Longest accepted action after whitespace normalisation. The longest ALFWorld command is ~60 characters and a
# WebShop `search[...]` of a full goal ~200; anything longer is a runaway reply, not a command.
MAX_ACTION_CHARS = 200
# Longest accepted Search-QA query or answer (questions run ~100 characters; answers are short spans).
MAX_SEARCH_CONTENT_CHARS = 500

# Why a reply is invalid: stable short codes, counted in metrics; the values explain them.
INVALID_REASONS: dict[str, str] = {
    "missing_think": "no complete <think>...</think> block",
    "missing_action": "no complete <action>...</action> block",
    "missing_search_or_answer": "neither a <search>...</search> nor an <answer>...</answer> block",
    "both_search_and_answer": "both a search and an answer tag appear",
    "repeated_tag": "a tag of the format occurs more than once (includes tags quoted inside a block)",
    "misordered_tags": "a closing tag before its opening tag, overlapping blocks, or think not first",
    "cjk": "the reply contains a CJK character",
    "empty_action": "the action block is empty",
    "empty_content": "the search/answer block is empty",
    "action_too_long": f"the action is longer than the cap (default {MAX_ACTION_CHARS} characters)",
    "content_too_long": f"the query/answer is longer than the cap (default {MAX_SEARCH_CONTENT_CHARS} chars)",
    "control_character": "the action/content contains a control or invisible format character (e.g. NUL)",
}
VALID = "ok"

_CJK = re.compile(
    "["
    "\u2e80-\u2fdf"  # CJK radicals, Kangxi radicals
    "\u3000-\u303f"  # CJK symbols and punctuation (、。「」)
    "\u3040-\u30ff"  # hiragana, katakana
    "\u3100-\u312f\u3130-\u318f\u31a0-\u31ff"  # bopomofo, hangul compatibility jamo, bopomofo extended
    "\u3200-\u33ff"  # enclosed CJK letters, CJK compatibility
    "\u3400-\u4dbf"  # CJK unified ideographs extension A
    "\u4e00-\u9fff"  # CJK unified ideographs (the release's range)
    "\uac00-\ud7af"  # hangul syllables
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\uff00-\uffef"  # half-width and full-width forms (，！？)
    "\U00020000-\U0003134f"  # ideograph extensions B-G and the compatibility supplement
    "]"
)
_WHITESPACE = re.compile(r"\s+")
_ACTION_TAGS = re.compile(r"<(/?)(think|action)>", re.IGNORECASE | re.ASCII)
_SEARCH_TAGS = re.compile(r"<(/?)(think|search|answer)>", re.IGNORECASE | re.ASCII)


@dataclass(frozen=True)
class ParsedReply:
    """An ALFWorld/WebShop reply: the action to step (`NO_OP_ACTION` when invalid) and why it is (in)valid."""

    action: str
    valid: bool
    reason: str  # VALID ("ok") or a key of INVALID_REASONS
    think: str  # the stripped reasoning, "" when no single well-formed think block exists


@dataclass(frozen=True)
class SearchReply:
    """A Search-QA reply: kind "search", "answer" or "invalid"; content = the query/answer ("" if invalid)."""

    kind: str
    content: str
    reason: str  # VALID ("ok") or a key of INVALID_REASONS
    think: str

    @property
    def valid(self) -> bool:
        return self.kind != "invalid"


@dataclass(frozen=True)
class _Block:
    open_start: int  # index of "<" of the opening tag
    inner_start: int  # first character after the opening tag
    inner_end: int  # index of "<" of the closing tag
    close_end: int  # first character after the closing tag


def _scan_tags(text: str, pattern: re.Pattern) -> dict[tuple[str, bool], list[re.Match]]:
    """All tag matches keyed by (lower-case name, is_closing), in order of appearance."""
    found: dict[tuple[str, bool], list[re.Match]] = {}
    for match in pattern.finditer(text):
        found.setdefault((match.group(2).lower(), match.group(1) == "/"), []).append(match)
    return found


def _block(tags: dict, name: str) -> tuple[str, _Block | None]:
    """The single block `name` as (reason, block): reason is VALID, the missing code or a violation code."""
    opens, closes = tags.get((name, False), []), tags.get((name, True), [])
    if not opens or not closes:
        return "missing", None
    if len(opens) > 1 or len(closes) > 1:
        return "repeated_tag", None
    opening, closing = opens[0], closes[0]
    if closing.start() < opening.end():
        return "misordered_tags", None
    return VALID, _Block(opening.start(), opening.end(), closing.start(), closing.end())


def _normalise(inner: str) -> str:
    return _WHITESPACE.sub(" ", inner).strip()


def _has_control_character(text: str) -> bool:
    # Cc = control (NUL, ESC, DEL, ...), Cf = invisible format (zero-width space, BOM, bidi overrides), Cs =
    # lone surrogates; Co/Cn = private-use/unassigned code points. Whitespace was already normalised away.
    return any(unicodedata.category(char)[0] == "C" for char in text)


def _check_content(content: str, max_chars: int, empty_code: str, long_code: str) -> str:
    if not content:
        return empty_code
    if len(content) > max_chars:
        return long_code
    if _has_control_character(content):
        return "control_character"
    return VALID


def parse_action_reply(
    text: str, *, max_action_chars: int = MAX_ACTION_CHARS, lowercase: bool = True, flag_cjk: bool = True
) -> ParsedReply:
    """Parse `<think>..</think><action>..</action>`; invalid replies map to `NO_OP_ACTION`.

    `lowercase=True` because ALFWorld commands (and WebShop's clickable texts) are lower-case.
    Reason precedence when several rules fail: think block, action block, order, CJK, action content.
    """
    tags = _scan_tags(text, _ACTION_TAGS)
    think_reason, think = _block(tags, "think")
    action_reason, action = _block(tags, "action")
    think_text = _normalise_think(text, think) if think else ""

    reason = VALID
    if think_reason != VALID:
        reason = "missing_think" if think_reason == "missing" else think_reason
    elif action_reason != VALID:
        reason = "missing_action" if action_reason == "missing" else action_reason
    elif think.close_end > action.open_start:
        reason = "misordered_tags"
    elif flag_cjk and _CJK.search(text):
        reason = "cjk"
    if reason != VALID:
        return ParsedReply(NO_OP_ACTION, False, reason, think_text)

    content = _normalise(text[action.inner_start : action.inner_end])
    reason = _check_content(content, max_action_chars, "empty_action", "action_too_long")
    if reason != VALID:
        return ParsedReply(NO_OP_ACTION, False, reason, think_text)
    return ParsedReply(content.lower() if lowercase else content, True, VALID, think_text)


def parse_search_reply(
    text: str,
    *,
    max_content_chars: int = MAX_SEARCH_CONTENT_CHARS,
    require_think: bool = True,
    flag_cjk: bool = True,
) -> SearchReply:
    """Parse `<think>..</think>` then exactly one of `<search>q</search>` / `<answer>a</answer>`.

    `require_think=True` follows the spec's format; the release only checks the search/answer tags.
    Content keeps its case (answers are normalised later, at scoring). Reason precedence: search/answer
    presence (neither, both), repeats, think block, order, CJK, content.
    """
    tags = _scan_tags(text, _SEARCH_TAGS)
    has_search = any(key[0] == "search" for key in tags)
    has_answer = any(key[0] == "answer" for key in tags)
    think_reason, think = _block(tags, "think")
    think_text = _normalise_think(text, think) if think else ""

    def invalid(reason: str) -> SearchReply:
        return SearchReply("invalid", "", reason, think_text)

    if has_search and has_answer:
        return invalid("both_search_and_answer")
    if not has_search and not has_answer:
        return invalid("missing_search_or_answer")
    kind = "search" if has_search else "answer"
    block_reason, block = _block(tags, kind)
    if block_reason == "missing":
        return invalid("missing_search_or_answer")  # an opening tag without its closing tag, or vice versa
    if block_reason != VALID:
        return invalid(block_reason)
    if think_reason == "repeated_tag" or think_reason == "misordered_tags":
        return invalid(think_reason)
    if require_think and think_reason == "missing":
        return invalid("missing_think")
    if think is not None and think.close_end > block.open_start:
        return invalid("misordered_tags")
    if flag_cjk and _CJK.search(text):
        return invalid("cjk")
    content = _normalise(text[block.inner_start : block.inner_end])
    reason = _check_content(content, max_content_chars, "empty_content", "content_too_long")
    if reason != VALID:
        return invalid(reason)
    return SearchReply(kind, content, VALID, think_text)


def _normalise_think(text: str, think: _Block) -> str:
    return text[think.inner_start : think.inner_end].strip()
