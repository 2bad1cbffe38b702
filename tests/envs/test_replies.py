"""Reply parsing: validity rules of docs/method.md §1 and hostile input (nothing may raise)."""

import random
import time

import pytest

from sdar.envs.replies import (
    INVALID_REASONS,
    MAX_ACTION_CHARS,
    NO_OP_ACTION,
    VALID,
    parse_action_reply,
    parse_search_reply,
)

# --- ALFWorld / WebShop: <think>...</think><action>...</action> ---------------------------------------------


def test_valid_reply_gives_stripped_action_and_think():
    reply = parse_action_reply(
        "<think> The apple is here. </think><action> take apple 1 from countertop 1 </action>"
    )
    assert reply.valid and reply.reason == VALID
    assert reply.action == "take apple 1 from countertop 1"
    assert reply.think == "The apple is here."


def test_action_is_lowercased_and_whitespace_collapsed():
    reply = parse_action_reply("<think>x</think>\n<action>\n  Go To\n\tCabinet   1 </action>")
    assert reply.action == "go to cabinet 1"
    kept = parse_action_reply("<think>x</think><action>click[Buy Now]</action>", lowercase=False)
    assert kept.action == "click[Buy Now]"


def test_tags_match_case_insensitively_and_outside_text_is_allowed():
    reply = parse_action_reply("Sure.\n<THINK>plan</Think>\n<Action>look</ACTION>\nDone.")
    assert reply.valid and reply.action == "look" and reply.think == "plan"


def test_empty_think_block_is_valid():
    assert parse_action_reply("<think></think><action>look</action>").valid


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "missing_think"),
        ("<action>look</action>", "missing_think"),
        ("<think>x</think>", "missing_action"),
        ("<think>x</think> look", "missing_action"),
        ("<think>x<action>look</action>", "missing_think"),  # unclosed think
        ("<think>x</think><action>look", "missing_action"),  # unclosed action
        ("<think>x</think>look</action>", "missing_action"),
        ("<think>x</think><action >look</action >", "missing_action"),  # not our tags
        ("<think>a</think><think>b</think><action>look</action>", "repeated_tag"),
        ("<think>x</think><action>look</action><action>inventory</action>", "repeated_tag"),
        ("<think>x</think><action>look</action></action>", "repeated_tag"),
        # a tag quoted inside another block counts: tags inside tags are invalid
        ("<think>I will write <action>look</action></think><action>look</action>", "repeated_tag"),
        ("<think><think>x</think></think><action>look</action>", "repeated_tag"),
        ("<think>x</think><action><action>look</action></action>", "repeated_tag"),
        # nesting, overlap, order
        ("<think>x <action>look</action> y</think>", "misordered_tags"),
        ("<action><think>y</think>look</action>", "misordered_tags"),  # think nested in the action
        ("<think>x</think><action><think>y</think>look</action>", "repeated_tag"),
        ("<action>look</action><think>x</think>", "misordered_tags"),
        ("<think>a<action>b</think>c</action>", "misordered_tags"),
        ("</think>x<think><action>look</action>", "misordered_tags"),
        ("<think>x</think></action>look<action>", "misordered_tags"),
        # content
        ("<think>x</think><action></action>", "empty_action"),
        ("<think>x</think><action> \n\t </action>", "empty_action"),
        ("<think>x</think><action>look\x00</action>", "control_character"),
        ("<think>x</think><action>go to\x1b[31m desk 1</action>", "control_character"),
        ("<think>x</think><action>look\u200b</action>", "control_character"),  # zero-width space
        ("<think>x</think><action>\ufefflook</action>", "control_character"),  # BOM
        ("<think>x</think><action>look\ud800</action>", "control_character"),  # lone surrogate
        ("<think>x</think><action>look\x7f</action>", "control_character"),  # DEL
    ],
)
def test_invalid_replies_step_the_no_op(text, reason):
    reply = parse_action_reply(text)
    assert (reply.valid, reply.reason, reply.action) == (False, reason, NO_OP_ACTION)
    assert reply.reason in INVALID_REASONS


@pytest.mark.parametrize(
    "text",
    [
        "<think>我想拿苹果</think><action>take apple 1 from countertop 1</action>",  # Chinese in think
        "<think>x</think><action>take apple 1 from countertop 1。</action>",  # ideographic full stop
        "<think>x</think><action>look</action>です",  # kana after the blocks
        "<think>사과</think><action>look</action>",  # hangul
        "<think>first，then</think><action>look</action>",  # full-width comma
        "<think>\U00020000</think><action>look</action>",  # ideograph extension B (outside the BMP)
    ],
)
def test_any_cjk_character_invalidates(text):
    reply = parse_action_reply(text)
    assert (reply.valid, reply.reason, reply.action) == (False, "cjk", NO_OP_ACTION)
    assert parse_action_reply(text, flag_cjk=False).reason != "cjk"


def test_non_cjk_unicode_is_fine():
    reply = parse_action_reply("<think>Ünïcödé ✓ 🍎 ñ</think><action>Take Café 1 from Tablé 1</action>")
    assert reply.valid and reply.action == "take café 1 from tablé 1"


def test_action_length_cap():
    at_cap = "a" * MAX_ACTION_CHARS
    assert parse_action_reply(f"<think>x</think><action>{at_cap}</action>").action == at_cap
    over = parse_action_reply(f"<think>x</think><action>{at_cap}b</action>")
    assert (over.valid, over.reason, over.action) == (False, "action_too_long", NO_OP_ACTION)
    assert parse_action_reply("<think>x</think><action>go to desk 1</action>", max_action_chars=5).reason == (
        "action_too_long"
    )
    # the cap counts after whitespace collapsing: 150 words separated by newlines are 299 characters
    spaced = "\n\n".join(["a"] * 100)
    assert parse_action_reply(f"<think>x</think><action>{spaced}</action>").action == " ".join(["a"] * 100)


def test_control_characters_in_think_only_do_not_invalidate():
    reply = parse_action_reply("<think>odd\x00bytes\x07</think><action>look</action>")
    assert reply.valid and reply.action == "look"


def test_think_is_kept_for_invalid_replies_with_one_think_block():
    reply = parse_action_reply("<think>hmm</think> no action here")
    assert reply.think == "hmm" and not reply.valid
    assert parse_action_reply("<think>a</think><think>b</think>").think == ""


def test_no_op_is_not_a_command_of_the_alfworld_grammar():
    verbs = (
        "go to",
        "open",
        "close",
        "take",
        "put",
        "clean",
        "heat",
        "cool",
        "use",
        "examine",
        "look",
        "inventory",
    )
    assert not NO_OP_ACTION.startswith(verbs) and NO_OP_ACTION.lower() == NO_OP_ACTION
    assert "[" not in NO_OP_ACTION  # and no WebShop search[...] / click[...]


def test_huge_replies_are_fast_and_safe():
    megabyte = 1 << 20
    cases = [
        "a" * megabyte,
        "<think>" + "x" * megabyte + "</think><action>look</action>",
        "<think>x</think><action>" + "go " * (megabyte // 3) + "</action>",
        "<think>" * (megabyte // 7),
        "<" * megabyte,
        "<think></think><action>" * (megabyte // 23),
        "\x00" * megabyte,
        "我" * megabyte,
    ]
    start = time.perf_counter()
    results = [parse_action_reply(text) for text in cases]
    assert time.perf_counter() - start < 5.0
    assert results[1].valid and results[1].action == "look" and len(results[1].think) == megabyte
    assert [r.reason for r in results] == [
        "missing_think",
        VALID,
        "action_too_long",
        "missing_think",
        "missing_think",
        "repeated_tag",
        "missing_think",
        "missing_think",
    ]
    assert all(r.action == NO_OP_ACTION for r in results if not r.valid)


ALPHABET = [
    "<think>", "</think>", "<action>", "</action>", "<search>", "</search>", "<answer>", "</answer>",
    "<", ">", "/", "think", "action", "look", "go to desk 1", " ", "\n", "\t", "\x00", "\x1b", "\u200b",
    "é", "🍎", "苹", "，", "\ud800", "<THINK>", "</Action>", "a" * 60,
]  # fmt: skip


def _random_replies(count: int, seed: int, skeleton: tuple[str, ...]) -> list[str]:
    """Random fragments around, between and inside the tags of `skeleton`; many are valid, many are not."""
    rng = random.Random(seed)

    def junk() -> str:
        return "".join(rng.choice(ALPHABET) for _ in range(rng.choice((0, 0, 1, 1, 2, 4))))

    replies = []
    for _ in range(count):
        tags = [tag for tag in skeleton if rng.random() > 0.1]  # sometimes drop a tag
        replies.append(junk() + "".join(tag + junk() for tag in tags))
    return replies


ACTION_SKELETON = ("<think>", "</think>", "<action>", "</action>")
SEARCH_SKELETON = ("<think>", "</think>", "<search>", "</search>")


def test_random_hostile_replies_keep_the_invariants():
    replies = _random_replies(3000, 0, ACTION_SKELETON)
    assert 100 < sum(parse_action_reply(text).valid for text in replies) < 2900  # both branches run
    for text in replies:
        reply = parse_action_reply(text)
        if reply.valid:
            assert reply.reason == VALID
            assert reply.action and len(reply.action) <= MAX_ACTION_CHARS
            assert reply.action == reply.action.lower() == " ".join(reply.action.split())
            assert "\x00" not in reply.action and "\u200b" not in reply.action and "苹" not in reply.action
            assert text.lower().count("<action>") == 1 and text.lower().count("<think>") == 1
        else:
            assert reply.action == NO_OP_ACTION and reply.reason in INVALID_REASONS


# --- Search-QA: <think>...</think> then exactly one of <search> / <answer> ----------------------------------


def test_search_and_answer_replies():
    search = parse_search_reply("<think>need the author</think>\n<search> who wrote\nHamlet </search>")
    assert (search.kind, search.content, search.reason, search.think) == (
        "search",
        "who wrote Hamlet",
        VALID,
        "need the author",
    )
    assert search.valid
    answer = parse_search_reply("<think>found it</think><answer>William Shakespeare</answer>")
    assert (answer.kind, answer.content, answer.valid) == ("answer", "William Shakespeare", True)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "missing_search_or_answer"),
        ("<think>x</think>just text", "missing_search_or_answer"),
        ("<think>x</think><search>q", "missing_search_or_answer"),  # unclosed
        ("<think>x</think></answer>", "missing_search_or_answer"),
        ("<think>x</think><search>q</search><answer>a</answer>", "both_search_and_answer"),
        ("<think>x</think><answer>a</answer><search>q</search>", "both_search_and_answer"),
        ("<think>maybe <search></think><answer>a</answer>", "both_search_and_answer"),
        ("<think>x</think><search>q1</search><search>q2</search>", "repeated_tag"),
        ("<think>x</think><answer>a</answer><answer>b</answer>", "repeated_tag"),
        ("<think>x</think><answer><answer>a</answer></answer>", "repeated_tag"),
        ("<think>a</think><think>b</think><search>q</search>", "repeated_tag"),
        ("<search>q</search>", "missing_think"),
        ("<search>q</search><think>x</think>", "misordered_tags"),
        ("<think>x <answer>a</answer></think>", "misordered_tags"),
        ("<think>x</think></search>q<search>", "misordered_tags"),
        ("<think>x</think><answer> </answer>", "empty_content"),
        ("<think>x</think><search>" + "q" * 501 + "</search>", "content_too_long"),
        ("<think>x</think><answer>a\x00b</answer>", "control_character"),
        ("<think>答案</think><answer>a</answer>", "cjk"),
        ("<think>x</think><answer>东京</answer>", "cjk"),
    ],
)
def test_invalid_search_replies(text, reason):
    reply = parse_search_reply(text)
    assert (reply.kind, reply.content, reply.reason, reply.valid) == ("invalid", "", reason, False)
    assert reply.reason in INVALID_REASONS


def test_search_think_requirement_is_optional():
    reply = parse_search_reply("<search>capital of France</search>", require_think=False)
    assert (reply.kind, reply.content) == ("search", "capital of France")
    # a present think block must still be well placed and single
    assert (
        parse_search_reply("<answer>a</answer><think>x</think>", require_think=False).reason
        == "misordered_tags"
    )


def test_search_content_keeps_case_and_unicode():
    reply = parse_search_reply("<think>x</think><answer>Zürich, Switzerland</answer>")
    assert reply.content == "Zürich, Switzerland"


def test_search_hostile_inputs():
    megabyte = 1 << 20
    big = parse_search_reply("<think>x</think><search>" + "q " * megabyte + "</search>")
    assert big.reason == "content_too_long"
    assert (
        parse_search_reply("<think>x</think>" + "<search>" * (megabyte // 8) + "</search>").reason
        == "repeated_tag"
    )
    assert (
        parse_search_reply("<search>" * (megabyte // 8)).reason == "missing_search_or_answer"
    )  # never closed
    assert parse_search_reply("\x00" * megabyte).reason == "missing_search_or_answer"
    replies = _random_replies(3000, 1, SEARCH_SKELETON) + _random_replies(
        3000, 2, ("<think>", "</think>", "<answer>", "</answer>")
    )
    assert 100 < sum(parse_search_reply(text).valid for text in replies) < 5900
    for text in replies:
        reply = parse_search_reply(text)
        if reply.valid:
            assert reply.kind in ("search", "answer") and reply.content and len(reply.content) <= 500
            lowered = text.lower()
            assert lowered.count(f"<{reply.kind}>") == 1 and lowered.count(f"</{reply.kind}>") == 1
            other = "answer" if reply.kind == "search" else "search"
            assert f"<{other}>" not in lowered and f"</{other}>" not in lowered
        else:
            assert reply.kind == "invalid" and reply.content == "" and reply.reason in INVALID_REASONS
