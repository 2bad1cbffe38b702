"""Fuzzy string matching exactly as WebShop's reward uses it (thefuzz `fuzz.token_set_ratio`), and colours.

WebShop scores attributes and options with `fuzz.token_set_ratio(a, b) > 85` (thefuzz 0.19 with
python-Levenshtein). rapidfuzz computes the same scorer; the facts it must reproduce:
- Pre-processing ("full process"): characters 128-255 are dropped (thefuzz's `force_ascii`), a non-string is
  first turned into `str(value)` (this matters: the release passes option *tuples*, see reward.py), every
  non-word character (regex `\\W`, so "_" survives) becomes a space, then lower-case and strip. An empty
  processed string scores 0. This stays ours (`full_process`): rapidfuzz's own `default_process` turns "_"
  into a space and keeps "é", so "navy_blue" would match "navy blue" where WebShop's matcher does not.
- `ratio(a, b)` is the Levenshtein ratio with substitution cost 2, i.e. 2·LCS(a, b) / (len a + len b), as
  python-Levenshtein / rapidfuzz compute it, scaled to 0..100.
- `token_set_ratio`: with the token SETS of both strings, t0 = sorted intersection joined by spaces,
  t1 = t0 + sorted(a - b), t2 = t0 + sorted(b - a) (each stripped); the score is the best of ratio(t0, t1),
  ratio(t0, t2), ratio(t1, t2), rounded to an integer (round-half-even, as Python's `round`).
  Consequence used by the reward: if one side's tokens are a subset of the other's, the score is 100.
  tests/envs/webshop/test_library_matching.py holds rapidfuzz to a transcription of that rule.
- `normalize_color(value)`: the first entry of WebShop's 102-word COLOR_SET (its order matters) that is a
  substring of the value, else the value unchanged. For a tuple, `in` tests element equality instead.
"""

from __future__ import annotations

import re

# WebShop's web_agent_site/engine/normalize.py COLOR_SET, in its order (the first substring match wins).
COLOR_SET: tuple[str, ...] = (
    "alabaster", "apricot", "aqua", "ash", "asphalt", "azure", "banana", "beige", "black", "blue", "blush",
    "bordeaux", "bronze", "brown", "burgundy", "camel", "camo", "caramel", "champagne", "charcoal", "cheetah",
    "chestnut", "chocolate", "christmas", "coffee", "cognac", "copper", "coral", "cranberry", "cream",
    "crystal", "dark", "denim", "eggplant", "elephant", "espresso", "fuchsia", "gold", "granite", "grape",
    "graphite", "grass", "gray", "green", "grey", "heather", "indigo", "ivory", "ivy", "khaki", "lavender",
    "lemon", "leopard", "light", "lilac", "lime", "magenta", "maroon", "mauve", "merlot", "midnight", "mint",
    "mocha", "multicolor", "mushroom", "mustard", "natural", "navy", "nude", "olive", "orange", "peach",
    "pewter", "pink", "plum", "purple", "rainbow", "red", "rose", "royal", "rust", "sand", "sapphire",
    "seashell", "silver", "skull", "slate", "steel", "stone", "stonewash", "sunflower", "tan", "taupe",
    "teal", "tiger", "turquoise", "violet", "walnut", "wheat", "white", "wine", "yellow",
)  # fmt: skip

FUZZY_MATCH_THRESHOLD = 85  # a match needs a token_set_ratio strictly above this
_NON_WORD = re.compile(r"\W", re.UNICODE)
_LATIN1_HIGH = {code: None for code in range(128, 256)}


def normalize_color(value):
    """The first COLOR_SET entry contained in `value`, else `value` itself (tuples: element equality)."""
    for color in COLOR_SET:
        if color in value:
            return color
    return value


def full_process(value) -> str:
    """thefuzz's default pre-processing: str(), drop chars 128-255, non-word chars -> space, lower, strip."""
    text = value if isinstance(value, str) else str(value)
    text = text.translate(_LATIN1_HIGH)
    return _NON_WORD.sub(" ", text).lower().strip()


def _rapidfuzz():
    try:
        import rapidfuzz
    except ImportError as error:
        raise ImportError("WebShop's reward needs rapidfuzz: pip install 'sdar[webshop]'") from error
    return rapidfuzz


def ratio(first: str, second: str) -> float:
    """100 · 2·LCS / (len first + len second); 0 when both are empty (never reached by token_set_ratio)."""
    total = len(first) + len(second)
    if total == 0:
        return 0.0
    return 100.0 * 2 * _rapidfuzz().distance.LCSseq.similarity(first, second) / total


def token_set_ratio(first, second) -> int:
    """thefuzz `fuzz.token_set_ratio(first, second)` with its default processing; an int in 0..100."""
    return round(_rapidfuzz().fuzz.token_set_ratio(first, second, processor=full_process))


def fuzzy_match(first, second) -> bool:
    return token_set_ratio(first, second) > FUZZY_MATCH_THRESHOLD
