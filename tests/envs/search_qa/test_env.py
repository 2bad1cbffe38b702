"""SearchQAEnv on an in-memory corpus: search, answer, invalid replies, the turn limit, the expert; prompts,
reply parsing and rendering; the registry entry with the shipped data."""

import pytest

from sdar.envs.base import TextEnv
from sdar.envs.policies import ExpertPolicy, run_episode
from sdar.envs.replies import NO_OP_ACTION
from sdar.envs.search_qa import QuestionBank, SearchQAEnv
from sdar.envs.search_qa.env import FIRST_OBSERVATION, INVALID_OBSERVATION, keyword_query
from sdar.envs.search_qa.policies import NoSearchPolicy, closed_book_answer
from sdar.envs.search_qa.prompts import (
    build_search_prompt,
    parse_search_action,
    read_action,
    render_search_reply,
)

from .conftest import DATA, DOCUMENTS, GOLD, QUESTIONS, needs_data

pytest.importorskip("bm25s")


@pytest.fixture
def env():
    environment = SearchQAEnv(QuestionBank(QUESTIONS, DOCUMENTS, gold=GOLD), topk=2)
    yield environment
    environment.close()


def test_is_a_text_env_with_fixed_task_ids(env):
    assert isinstance(env, TextEnv)
    assert env.task_ids("all") == ["nq/q0", "hotpotqa/q1", "hotpotqa/q2"]
    with pytest.raises(ValueError, match="split 'all'"):
        env.task_ids("test")


def test_reset_gives_the_question_as_goal_and_dataset_as_type(env):
    task, result = env.reset("hotpotqa/q1")
    assert (task.task_type, task.goal, task.metadata) == ("hotpotqa", QUESTIONS[1].question, {"max_turns": 4})
    assert result.observation == FIRST_OBSERVATION and not result.done and result.admissible_actions is None
    with pytest.raises(KeyError, match="unknown Search-QA task 'nq/zzz'"):
        env.reset("nq/zzz")


def test_search_returns_topk_passages_in_an_information_block(env):
    env.reset("nq/q0")
    result = env.step("<search>capital of France</search>")
    assert result.observation.startswith("<information>Doc 1(Title: Paris) Paris is the capital")
    assert result.observation.endswith("</information>")
    assert result.observation.count("Doc ") == 2  # topk = 2
    assert (result.reward, result.done, result.won) == (0.0, False, False)
    nothing = env.step("<search>the of and</search>")  # only stop words: no passage
    assert nothing.observation == "<information>No passage matches this query.</information>"


def test_answer_ends_the_episode_with_em_reward_and_f1(env):
    env.reset("nq/q0")
    result = env.step("<answer>the PARIS.</answer>")
    assert (result.reward, result.done, result.won) == (1.0, True, True)
    assert result.info["metrics"] == {"f1": 1.0, "grounded": 0.0}  # right, but nothing was retrieved
    env.reset("nq/q0")
    wrong = env.step("<answer>Paris France</answer>")
    assert (wrong.reward, wrong.won) == (0.0, False)
    assert wrong.info["metrics"]["f1"] == pytest.approx(2 / 3)  # precision 1/2, recall 1
    env.reset("nq/q0")
    env.step("<search>capital of France</search>")
    grounded = env.step("<answer>Paris</answer>")
    assert grounded.won and grounded.info["metrics"] == {"f1": 1.0, "grounded": 1.0}
    assert env.step("<answer>Paris</answer>").observation == "The episode is over."


def test_invalid_action_is_a_no_op_and_the_last_turn_ends_the_episode(env):
    env.reset("nq/q0")
    for _ in range(3):
        result = env.step(NO_OP_ACTION)
        assert result.observation == INVALID_OBSERVATION and not result.done
    last = env.step("<search>capital of France</search>")  # turn 4 of 4 without an answer
    assert last.done and not last.won and last.reward == 0.0
    assert last.info["metrics"] == {"f1": 0.0, "grounded": 0.0}


@pytest.mark.parametrize(
    "action", ["", "x" * 10_000, "<answer></answer>", "<search>a</search><answer>b</answer>", "\x00"]
)
def test_hostile_actions_never_raise(env, action):
    env.reset("nq/q0")
    assert env.step(action).observation == INVALID_OBSERVATION


def test_expert_searches_the_question_then_missing_gold_titles_then_answers(env):
    outcome = run_episode(env, ExpertPolicy(env), "hotpotqa/q1", max_turns=4)
    assert outcome.won and outcome.metrics == {"f1": 1.0, "grounded": 1.0}
    assert outcome.actions[0] == "<search>designer Eiffel Tower born</search>"
    assert outcome.actions[-1] == "<answer>Dijon</answer>"
    assert all(read_action(action)[0] == "search" for action in outcome.actions[:-1])
    assert run_episode(env, ExpertPolicy(env), "nq/q0", max_turns=4).won


def test_keyword_query_drops_question_and_function_words():
    assert keyword_query("Who wrote the book The Hobbit?") == "wrote book Hobbit"
    assert keyword_query("Who is it?") == "Who is it?"  # nothing left: the question itself


def test_expert_keeps_a_turn_for_the_answer():
    env = SearchQAEnv(QuestionBank(QUESTIONS, DOCUMENTS, gold=GOLD), topk=1, max_turns=2)
    outcome = run_episode(env, ExpertPolicy(env), "hotpotqa/q1", max_turns=2)
    assert len(outcome.actions) == 2 and outcome.actions[1] == "<answer>Dijon</answer>" and outcome.won


def test_no_search_baseline_answers_at_once(env):
    assert closed_book_answer("Is Berlin the capital?") == "yes"
    assert closed_book_answer("Who wrote Hamlet?") == "unknown"
    assert run_episode(env, NoSearchPolicy(), "hotpotqa/q2").won  # the yes/no prior
    outcome = run_episode(env, NoSearchPolicy(), "nq/q0")
    assert outcome.actions == ("<answer>unknown</answer>",) and not outcome.won


def test_parse_search_action_gives_canonical_actions():
    search = parse_search_action("<think>need it</think>\n<search>  capital\nof France </search>")
    assert (search.action, search.valid, search.kind) == (
        "<search>capital of France</search>",
        True,
        "search",
    )
    answer = parse_search_action("<think>ok</think><answer>Paris</answer>")
    assert answer.action == "<answer>Paris</answer>"
    for bad in ("<search>x</search>", "<think>a</think><search>x</search><answer>y</answer>", "just text"):
        reply = parse_search_action(bad)
        assert (reply.action, reply.valid) == (NO_OP_ACTION, False)
    assert parse_search_action("<think>a</think>").reason == "missing_search_or_answer"


def test_rendered_expert_replies_parse_back_to_the_same_action(env):
    task, _ = env.reset("hotpotqa/q1")
    for action in ("<search>Eiffel Tower designer</search>", "<answer>Dijon</answer>"):
        assert parse_search_action(render_search_reply(task, action)).action == action
    with pytest.raises(ValueError, match="not a <search> or <answer>"):
        render_search_reply(task, NO_OP_ACTION)


def test_prompts_show_question_history_and_the_last_result(env):
    task, first = env.reset("nq/q0")
    opening = build_search_prompt(task, first.observation, None, [], 0)
    assert "Question: What is the capital of France?" in opening and "at most 4 turns" in opening
    assert "<search>" in opening and "<answer>" in opening and "{" not in opening
    result = env.step("<search>capital of France</search>")
    history = [(first.observation, "<search>capital of France</search>")]
    later = build_search_prompt(task, result.observation, None, history, 1)
    assert (
        "[Observation 1: 'No search results yet.', Action 1: '<search>capital of France</search>']" in later
    )
    assert (
        "This is turn 2 of at most 4. The result of your last action: <information>Doc 1(Title: Paris)"
        in later
    )
    # H = 4: five earlier pairs show only the last four, numbered 2..5
    pairs = [(f"obs {n}", f"<search>q{n}</search>") for n in range(1, 6)]
    shown = build_search_prompt(task, "now", None, pairs, 5, 4)
    assert "Observation 1:" not in shown and "[Observation 2: 'obs 2'" in shown and "Action 5:" in shown
    # a budget drops history oldest first, never the question
    tight = build_search_prompt(task, "now", None, pairs, 5, 4, budget=len(shown) - 10)
    assert "[Observation 2:" not in tight and "Action 5:" in tight and "capital of France" in tight


@needs_data
def test_registry_builds_the_env_from_the_shipped_data():
    pytest.importorskip("pyarrow")
    from sdar.config import load_config
    from sdar.envs import get_env_spec, make_env
    from sdar.errors import ConfigError

    config = load_config("search_qa_smoke", [f"env.data_dir={DATA}"])
    env = make_env(config.env)
    try:
        ids = env.task_ids("answerable_nq")
        assert len(ids) == 500 and len(set(ids)) == 500
        assert len(env.task_ids("test")) == 6 * 500 + 125
        held_out = set(env.task_ids("answerable")) | set(env.task_ids("test"))
        assert len(env.task_ids("train")) > 2000 and not set(env.task_ids("train")) & held_out
        outcome = run_episode(env, ExpertPolicy(env), ids[0], max_turns=4)
        assert outcome.won
        with pytest.raises(ValueError, match="valid splits: test, answerable, train"):
            env.task_ids("dev")
    finally:
        env.close()
    assert get_env_spec("search-qa").stop_strings == ("</search>", "</answer>")
    bad = load_config("search_qa_smoke", [f"env.data_dir={DATA}", "env.options={retriever: bing}"])
    with pytest.raises(ConfigError, match="choose one of: bm25, dense, http"):
        make_env(bad.env)
    with pytest.raises(ConfigError, match="valid env.options"):
        make_env(load_config("search_qa_smoke", [f"env.data_dir={DATA}", "env.options={top_k: 3}"]).env)
