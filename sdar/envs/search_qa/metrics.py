"""Answer scoring of the Search-R1 protocol (docs/method.md §1, §7): exact match and token F1.

Normalisation, in Search-R1's order: lower-case, remove ASCII punctuation (`string.punctuation`), drop the
articles "a", "an", "the" as whole words, then collapse every whitespace run to one space and strip. EM is 1
when the normalised prediction equals ANY normalised gold answer. F1 (SQuAD-style token overlap, the best over
the gold answers) is reported next to EM as an extra metric; it never changes the reward.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower-case, strip punctuation, drop a/an/the, collapse whitespace (Search-R1's EM normalisation)."""
    lowered = text.lower()
    without_punctuation = "".join(char for char in lowered if char not in _PUNCTUATION)
    without_articles = _ARTICLES.sub(" ", without_punctuation)
    return " ".join(without_articles.split())


def exact_match(prediction: str, golden_answers: Iterable[str]) -> bool:
    """True when the normalised prediction equals any normalised gold answer."""
    predicted = normalize_answer(prediction)
    return any(predicted == normalize_answer(gold) for gold in golden_answers)


def token_f1(prediction: str, gold: str) -> float:
    """SQuAD token F1 between two answers after normalisation; 0 when either side has no tokens."""
    predicted_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    common = Counter(predicted_tokens) & Counter(gold_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(predicted_tokens)
    recall = overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def best_f1(prediction: str, golden_answers: Iterable[str]) -> float:
    """The highest token F1 of the prediction against any gold answer (0 for no gold answers)."""
    return max((token_f1(prediction, gold) for gold in golden_answers), default=0.0)
