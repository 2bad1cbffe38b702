"""The libraries behind WebShop's text matching, held to what the original WebShop computes.

Stemmer: the original searches with Lucene's PorterStemFilter (Martin Porter's reference code). The stems
below are Lucene's own: they are the terms Lucene stored for the real 1k catalogue (its term vectors, read
from the committed index; benchmarks/README.md, WebShop section). nltk's PorterStemmer gives them in its
MARTIN_EXTENSIONS mode, and only there.
Matcher: the original's reward calls thefuzz 0.19 `fuzz.token_set_ratio` (with python-Levenshtein);
`thefuzz_token_set_ratio` below transcribes its rule, and rapidfuzz (with our thefuzz-0.19 pre-processing)
must give the same integer on every pair. rapidfuzz's own pre-processing differs: that part stays ours.
"""

import itertools
import json
import random

import pytest

from sdar.envs.webshop.text_matching import full_process, token_set_ratio

from .builders import REAL_DATA, needs_real_data

nltk_porter = pytest.importorskip("nltk.stem.porter")
rapidfuzz = pytest.importorskip("rapidfuzz")

# word -> Lucene's stem, where nltk's other two modes (or the published algorithm) give another stem
LUCENE_STEMS = {
    # Porter's reference code: 1-2 letter words stay, "bli" -> "ble", "logi" -> "log"
    "us": "us", "as": "as", "is": "is", "xs": "xs", "ys": "ys", "s": "s",
    "assembly": "assembl", "assemblies": "assembl", "possibly": "possibl", "incredibly": "incred",
    "compatibly": "compat", "superbly": "superbl", "technology": "technolog", "technologies": "technolog",
    "ecology": "ecolog",
    # where nltk's default mode adds rules of its own
    "always": "alwai", "day": "dai", "display": "displai", "enjoying": "enjoi", "grey": "grei",
    "boys": "boi", "dry": "dry", "drying": "dry", "flying": "fly", "age": "ag", "aging": "ag", "are": "ar",
    "eyes": "ey", "exceed": "exce", "additionally": "addition", "beautifully": "beautifulli",
    "carefully": "carefulli", "diy": "dii",
    # the usual rules, for good measure
    "caresses": "caress", "ponies": "poni", "running": "run", "relational": "relat",
    "generalizations": "gener", "oscillators": "oscil", "hopping": "hop", "filing": "file",
}  # fmt: skip


@pytest.mark.parametrize(("word", "stem"), sorted(LUCENE_STEMS.items()))
def test_nltk_porter_in_martin_extensions_mode_stems_as_lucene(word, stem):
    from sdar.envs.webshop.search import porter_stem

    stemmer = nltk_porter.PorterStemmer(mode=nltk_porter.PorterStemmer.MARTIN_EXTENSIONS)
    assert stemmer.stem(word, to_lowercase=False) == stem
    assert porter_stem(word) == stem  # what the search index and queries use


def test_nltk_porter_in_its_other_modes_does_not_stem_as_lucene():
    stems = {
        mode: {word: nltk_porter.PorterStemmer(mode=mode).stem(word) for word in LUCENE_STEMS}
        for mode in (nltk_porter.PorterStemmer.NLTK_EXTENSIONS, nltk_porter.PorterStemmer.ORIGINAL_ALGORITHM)
    }
    nltk_default, published = stems.values()
    assert nltk_default["always"] == "alway" and nltk_default["additionally"] == "addit"
    assert published["technology"] == "technologi" and published["us"] == "u"
    assert sum(stem != LUCENE_STEMS[word] for word, stem in nltk_default.items()) == 18
    assert sum(stem != LUCENE_STEMS[word] for word, stem in published.items()) == 15


def _longest_common_subsequence(first: str, second: str) -> int:
    previous = [0] * (len(second) + 1)
    for char in first:
        current = [0]
        for index, other in enumerate(second):
            current.append(previous[index] + 1 if char == other else max(previous[index + 1], current[index]))
        previous = current
    return previous[-1]


def _thefuzz_ratio(first: str, second: str) -> int:
    """thefuzz 0.19 `fuzz.ratio` on processed text: equal -> 100, an empty side -> 0, else
    round(100 · Levenshtein.ratio), the ratio with substitution cost 2 = 2·LCS / (len a + len b)."""
    if first == second:
        return 100
    if not first or not second:
        return 0
    return round(100 * (2 * _longest_common_subsequence(first, second) / (len(first) + len(second))))


def thefuzz_token_set_ratio(first, second) -> int:
    """thefuzz 0.19 `fuzz._token_set(first, second, partial=False)`, transcribed."""
    processed_first, processed_second = full_process(first), full_process(second)
    if not processed_first or not processed_second:
        return 0
    tokens_first, tokens_second = set(processed_first.split()), set(processed_second.split())
    intersection = " ".join(sorted(tokens_first & tokens_second)).strip()
    combined_first = (intersection + " " + " ".join(sorted(tokens_first - tokens_second))).strip()
    combined_second = (intersection + " " + " ".join(sorted(tokens_second - tokens_first))).strip()
    return max(
        _thefuzz_ratio(intersection, combined_first),
        _thefuzz_ratio(intersection, combined_second),
        _thefuzz_ratio(combined_first, combined_second),
    )


def assert_same_scores(pairs) -> None:
    differing = [(a, b) for a, b in pairs if token_set_ratio(a, b) != thefuzz_token_set_ratio(a, b)]
    assert differing == []


def test_rapidfuzz_scores_as_thefuzz_on_edge_cases():
    pairs = [
        ("abcdexyz", "abcdeqrs"),  # 62.5: rounds half to even, down to 62
        ("abcdefgx", "abcdefgy"),  # 87.5 -> 88
        ("abcdefg", "abcdefh"), ("abcdef", "abcdeg"),  # 85.7 -> 86 and 83.3 -> 83: either side of 85
        ("blue", "navy blue"), ("x-large", "large"), ("machine wash", "hand wash"), ("!!", "blue"),
        ("", ""), ("Hand-Wash", "hand wash"), ("caf\u00e9 Latte", "caf latte"), ("a b c", "c b a"),
        (("size", "x-large"), "x large"), (("color", "navy blue"), "navy blue"), ("16 oz", "16 ounce"),
        ("Navy_Blue", "navy"),
    ]  # fmt: skip
    assert [token_set_ratio(a, b) for a, b in pairs[:2]] == [62, 88]
    assert_same_scores(pairs)


def test_rapidfuzz_scores_as_thefuzz_on_random_phrases():
    rng = random.Random(0)
    words = ["blue", "navy", "x", "large", "small", "cotton", "wash", "hand", "machine", "pack", "2", "oz"]
    words += ["".join(rng.choice("abcde") for _ in range(rng.randint(1, 6))) for _ in range(20)]
    phrase = lambda: " ".join(rng.choice(words) for _ in range(rng.randint(0, 5)))  # noqa: E731
    assert_same_scores([(phrase(), phrase()) for _ in range(3000)])


@needs_real_data
def test_rapidfuzz_scores_as_thefuzz_on_the_catalogues_attributes_and_options():
    """Attributes, option values and goal option tuples of the real catalogue, as the reward compares them."""
    items = json.loads((REAL_DATA / "data" / "items_ins_v2_1000.json").read_text())
    texts = sorted({text for item in items.values() for text in item.get("attributes", [])})
    texts += sorted({text for item in items.values() for text in item.get("instruction_attributes", [])})
    rng = random.Random(0)
    pairs = [(rng.choice(texts), rng.choice(texts)) for _ in range(3000)]
    pairs += [(text, ("color", text)) for text in itertools.islice(texts, 200)]  # a tuple, as the release
    assert_same_scores(pairs)


def test_rapidfuzz_default_processing_is_not_thefuzz_019s_so_ours_stays():
    default_process = rapidfuzz.utils.default_process
    assert default_process("Navy_Blue") == "navy blue" and full_process("Navy_Blue") == "navy_blue"
    assert default_process("caf\u00e9") == "caf\u00e9" and full_process("caf\u00e9") == "caf"
    with_default = rapidfuzz.fuzz.token_set_ratio("navy_blue", "navy blue", processor=default_process)
    # WebShop: {navy_blue} vs {blue, navy} share no token; ratio("navy_blue", "blue navy") = 2·4/18 -> 44
    assert with_default == 100 and token_set_ratio("navy_blue", "navy blue") == 44
