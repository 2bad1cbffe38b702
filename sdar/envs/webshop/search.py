"""Product search: BM25 over the products' `contents` with bm25s, set up like WebShop's Lucene engine.

The original opens a Pyserini `LuceneSearcher` on an index built with Anserini's defaults, and asks it for the
top 50 hits of the lower-cased search text. Facts relied on (Pyserini 0.20 / Anserini / Lucene 9.4):
- Analyzer (`DefaultEnglishAnalyzer`): StandardTokenizer (Unicode UAX#29 word boundaries) -> English
  possessive filter (drops a trailing 's) -> lower case -> Lucene's 33 English stop words -> Porter stemmer.
  `analyze` approximates the tokenizer with a regex: runs of letters/digits/"_", joined across one "'", ".",
  ":" (and the curly apostrophe) between two letters, and across one ".", ",", ";", "'" between two digits;
  everything else (spaces, "-", "/", "&", ...) separates; emoji are tokens, Han characters one each.
  Porter stems follow Lucene's variant of the algorithm (`porter_stem`).
- Query: a bag of words; every analyzed query token is one SHOULD clause, a repeated token counts twice.
- Scoring: BM25 with k1 = 0.9, b = 0.4 (Anserini's defaults), idf = ln(1 + (N - df + 0.5) / (df + 0.5)),
  tf part = tf / (tf + k1 (1 - b + b dl / avgdl)) (Lucene 9 drops the constant (k1 + 1) factor; it does not
  change the ranking). Lucene stores each document length lossily in one byte (`SmallFloat.intToByte4`:
  exact below 24 tokens, then 4 significant bits); `lucene_length` reproduces that and the index uses it.
- Ties are broken by the document id (the ASIN) in ascending order (Anserini's BREAK_SCORE_TIES_BY_DOCID).

Measured agreement with the committed Lucene index: see benchmarks/README.md (WebShop section).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence

import numpy as np

K1 = 0.9
B = 0.4
SEARCH_RETURN_N = 50  # the original's top-N results per search
WEBSHOP_INSTALL_HINT = "pip install 'sdar[webshop]' (bm25s, nltk, rapidfuzz)"

# Lucene's EnglishAnalyzer.ENGLISH_STOP_WORDS_SET, which Anserini's default analyzer uses.
LUCENE_STOP_WORDS = frozenset(
    (
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "if",
        "in",
        "into",
        "is",
        "it",
        "no",
        "not",
        "of",
        "on",
        "or",
        "such",
        "that",
        "the",
        "their",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "will",
        "with",
    )
)
_QUOTES = "'\u2018\u2019\u2024\ufe52\uff07\uff0e"  # Single_Quote and MidNumLet
_JOIN_DIGITS = re.compile(rf"(?<=\d)[{_QUOTES}.,;\u2044](?=\d)")  # MidNum, MidNumLet
_JOINER = "\x00"
# Han ideographs and Hiragana: StandardTokenizer emits each character as its own token.
_IDEOGRAPHS = "\u3040-\u309f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_LETTER = rf"[^\W\d_{_IDEOGRAPHS}]"
_JOIN_LETTERS = re.compile(rf"(?<={_LETTER})[{_QUOTES}.:\u00b7\ufe13\ufe55\uff1a](?={_LETTER})")  # MidLetter
# Extended_Pictographic (Unicode emoji data): one token per emoji sequence, even for "™" and "®".
_PICTOGRAPHIC = (
    "\u00a9\u00ae\u203c\u2049\u2122\u2139\u2194-\u2199\u21a9\u21aa\u231a\u231b\u2328\u2388\u23cf\u23e9-\u23f3"
    "\u23f8-\u23fa\u24c2\u25aa\u25ab\u25b6\u25c0\u25fb-\u25fe\u2600-\u2605\u2607-\u2612\u2614-\u2685"
    "\u2690-\u2705\u2708-\u2712\u2714\u2716\u271d\u2721\u2728\u2733\u2734\u2744\u2747\u274c\u274e"
    "\u2753-\u2755\u2757\u2763-\u2767\u2795-\u2797\u27a1\u27b0\u27bf\u2934\u2935\u2b05-\u2b07\u2b1b\u2b1c"
    "\u2b50\u2b55\u3030\u303d\u3297\u3299\U0001f000-\U0001f0ff\U0001f10d-\U0001f10f\U0001f12f"
    "\U0001f16c-\U0001f171\U0001f17e\U0001f17f\U0001f18e\U0001f191-\U0001f19a\U0001f1ad-\U0001f1e5"
    "\U0001f201-\U0001f20f\U0001f21a\U0001f22f\U0001f232-\U0001f23a\U0001f23c-\U0001f23f"
    "\U0001f249-\U0001f3fa\U0001f400-\U0001f53d\U0001f546-\U0001f64f\U0001f680-\U0001f6ff"
    "\U0001f774-\U0001f77f\U0001f7d5-\U0001f7ff\U0001f80c-\U0001f80f\U0001f848-\U0001f84f"
    "\U0001f85a-\U0001f85f\U0001f888-\U0001f88f\U0001f8ae-\U0001f8ff\U0001f90c-\U0001f93a"
    "\U0001f93c-\U0001f945\U0001f947-\U0001faff\U0001fc00-\U0001fffd"
)
_EMOJI_TAIL = "[\ufe0f\U0001f3fb-\U0001f3ff]*"
_TOKEN = re.compile(
    rf"(?P<emoji>[{_PICTOGRAPHIC}]{_EMOJI_TAIL}(?:\u200d[{_PICTOGRAPHIC}]{_EMOJI_TAIL})*)"
    rf"|(?P<ideograph>[{_IDEOGRAPHS}])"
    rf"|(?P<word>(?:[^\W{_IDEOGRAPHS}]|{_JOINER}[{_QUOTES}.:\u00b7\ufe13\ufe55\uff1a,;\u2044])+)",
    re.UNICODE,
)
_HAS_ALPHANUMERIC = re.compile(r"[^\W_]")


@functools.lru_cache(maxsize=1)
def _other_numbers() -> dict[int, str]:
    """Category No ("½", "²", "①"): Python's \\w matches them, StandardTokenizer does not."""
    separators = {code: " " for code in range(0x30000) if unicodedata.category(chr(code)) == "No"}
    separators.update({0xFF9E: " ", 0xFF9F: " "})  # halfwidth sound marks: Extend, no word on their own
    return separators


def standard_tokens(text: str) -> list[str]:
    """StandardTokenizer-like tokens (case kept): see the module docstring for the joining rules."""
    text = text.translate(_other_numbers())
    protected = _JOIN_DIGITS.sub(lambda m: _JOINER + m.group(0), text)
    protected = _JOIN_LETTERS.sub(lambda m: _JOINER + m.group(0), protected)
    tokens = []
    for match in _TOKEN.finditer(protected):
        token = match.group(0).replace(_JOINER, "")
        if match.lastgroup != "word" or _HAS_ALPHANUMERIC.search(token):  # a run of "_" alone is no word
            tokens.append(token)
    return tokens


@functools.cache
def _lucene_porter_stemmer():
    """nltk's Porter stemmer in the mode of Martin Porter's reference code, which Lucene's PorterStemFilter
    runs: unlike the published 1980 algorithm (and Snowball's "porter", e.g. PyStemmer) it leaves words of one
    or two characters alone and maps "bli" -> "ble" and "logi" -> "log" ("technology" -> "technolog",
    "assembly" -> "assembl", "us" stays "us"). nltk's default mode adds rules of its own ("always" ->
    "alway", Lucene: "alwai"), so the mode matters (tests/envs/webshop/test_library_matching.py)."""
    try:
        from nltk.stem.porter import PorterStemmer
    except ImportError as error:
        raise ImportError(f"WebShop search needs nltk: {WEBSHOP_INSTALL_HINT}") from error
    return PorterStemmer(mode=PorterStemmer.MARTIN_EXTENSIONS)


@functools.lru_cache(maxsize=200_000)
def porter_stem(word: str) -> str:
    """Lucene's Porter stem of one lower-cased token."""
    return _lucene_porter_stemmer().stem(word, to_lowercase=False)


def analyze(text: str) -> list[str]:
    """The Lucene/Anserini analysis chain: tokens -> possessive -> lower -> stop words -> Porter stems."""
    words = []
    for token in standard_tokens(text):
        if token[-2:] in ("'s", "'S", "\u2019s", "\u2019S"):
            token = token[:-2]
        token = token.lower()
        if token and token not in LUCENE_STOP_WORDS:
            words.append(porter_stem(token))
    return words


def _long_to_int4(value: int) -> int:
    bits = value.bit_length()
    if bits < 4:
        return value
    shift = bits - 4
    return ((value >> shift) & 0x07) | ((shift + 1) << 3)


def _int4_to_long(value: int) -> int:
    bits, shift = value & 0x07, (value >> 3) - 1
    return bits if shift == -1 else (bits | 0x08) << shift


_FREE_VALUES = 255 - _long_to_int4(2**31 - 1)  # 24: lengths below this are stored exactly


def lucene_length(length: int) -> int:
    """The document length Lucene's BM25 sees after its one-byte norm (SmallFloat.intToByte4 round trip)."""
    if length < _FREE_VALUES:
        return length
    return _FREE_VALUES + _int4_to_long(_long_to_int4(length - _FREE_VALUES))


class ProductSearch:
    """BM25 over `documents` (one text per id); `search(text)` -> ids of the top hits, best first."""

    def __init__(self, ids: Sequence[str], documents: Sequence[str], quantise_lengths: bool = True):
        try:
            import bm25s
        except ImportError as error:
            raise ImportError(f"WebShop search needs bm25s: {WEBSHOP_INSTALL_HINT}") from error
        if len(ids) != len(documents):
            raise ValueError(f"{len(ids)} ids for {len(documents)} documents")
        self.ids = list(ids)
        corpus = [analyze(text) for text in documents]
        self.retriever = bm25s.BM25(k1=K1, b=B, method="lucene")
        self.retriever.index(corpus, show_progress=False)
        if quantise_lengths:
            self._rescore_with_lucene_lengths(corpus)
        # rank of each id in ascending order, for the deterministic tie-break
        self._id_rank = np.argsort(np.argsort(np.array(self.ids, dtype=object)))

    def _rescore_with_lucene_lengths(self, corpus: list[list[str]]) -> None:
        """Rebuild bm25s's score matrix with Lucene's quantised document lengths (avgdl stays exact)."""
        vocabulary = self.retriever.vocab_dict
        document_count = len(corpus)
        average_length = sum(len(tokens) for tokens in corpus) / max(document_count, 1)
        frequencies: dict[int, list[tuple[int, int]]] = {}
        for index, tokens in enumerate(corpus):
            for token, count in Counter(tokens).items():
                frequencies.setdefault(vocabulary[token], []).append((index, count))
        vocabulary_size = len(vocabulary)
        data, indices, pointer = [], [], [0]
        for token_id in range(vocabulary_size):
            postings = frequencies.get(token_id, [])
            df = len(postings)
            idf = np.log(1.0 + (document_count - df + 0.5) / (df + 0.5))
            for index, count in postings:
                norm = K1 * (1 - B + B * lucene_length(len(corpus[index])) / average_length)
                data.append(idf * count / (count + norm))
                indices.append(index)
            pointer.append(len(data))
        scores = self.retriever.scores
        scores["data"] = np.asarray(data, dtype=np.float32)
        scores["indices"] = np.asarray(indices, dtype=scores["indices"].dtype)
        scores["indptr"] = np.asarray(pointer, dtype=scores["indptr"].dtype)

    def scores(self, text: str) -> np.ndarray:
        """BM25 score of every document for the query `text` (shape [documents])."""
        token_ids = self.retriever.get_tokens_ids(analyze(text))
        if not token_ids:
            return np.zeros(len(self.ids), dtype=np.float32)
        return self.retriever.get_scores_from_ids(token_ids)

    def search(self, text: str, limit: int = SEARCH_RETURN_N) -> list[str]:
        """Ids of the `limit` best documents with a positive score: score descending, then id ascending."""
        scores = self.scores(text)
        matching = np.flatnonzero(scores > 0)
        order = matching[np.lexsort((self._id_rank[matching], -scores[matching]))]
        return [self.ids[index] for index in order[:limit]]
