"""experiments/cpu_reproduction/skill_reading.py: reply scores equal one-sequence scoring; the teacher sees
the skills; the summary counts what its rows say."""

import pytest
import torch
from experiment_scripts import load_script

from sdar.config import load_config
from sdar.envs.alfworld.priors import OBJECT_PRIORS
from sdar.models import load_model, token_logprobs

pytest.importorskip("alfworld")


@pytest.fixture(scope="module")
def probe():
    return load_script("skill_reading")


def test_reply_scores_are_those_of_each_reply_alone_and_the_teacher_differs(probe):
    config = load_config("smoke", ["eval.num_tasks=2"])
    model, tokenizer = load_model(config.model)
    env = probe.make_env(config.env)
    try:
        spec, task_id = probe.get_env_spec(config.env.name), env.task_ids("valid")[0]
        task, message, actions, expert = probe.first_turn_candidates(env, spec, config, task_id)
    finally:
        env.close()
    assert actions and all(action.startswith("go to ") for action in actions) and expert in actions
    student, teacher = probe.reply_logprobs(model, tokenizer, config, task, message, actions[:3])
    prompt = probe.chat_prompt_ids(tokenizer, message)
    for index, action in enumerate(actions[:3]):
        reply = tokenizer(probe.default_reply(task, action), add_special_tokens=False).input_ids
        with torch.no_grad():
            alone, _ = token_logprobs(model, torch.tensor([prompt + reply]), start=len(prompt))
        assert float(alone[0, len(prompt) :].sum()) == pytest.approx(float(student[index]), abs=1e-3)
    assert not torch.allclose(student, teacher)  # the teacher's prompt carries the skills


def test_the_summary_counts_its_rows(probe):
    config = load_config("smoke", ["eval.num_tasks=2"])
    model, tokenizer = load_model(config.model)
    result = probe.measure(config, model, tokenizer)
    rows = result["rows"]
    assert result["tasks"] == len(rows) == 2
    assert result["teacher_top"] == sum(row["teacher_top"] for row in rows)
    assert all(0.0 < row["student_p"] < 1.0 and 0.0 < row["teacher_p"] < 1.0 for row in rows)
    assert result["uniform_p"] == pytest.approx(sum(1 / row["candidates"] for row in rows) / 2)
    for row in rows:  # the line points to one receptacle type: every candidate of it, and only those
        kinds = {action.rsplit(" ", 1)[0] for action in row["line_choice"]}
        assert len(kinds) == 1 and 0.0 < row["teacher_line_p"] < 1.0


def test_the_skill_texts_tell_the_teacher_more_and_more(probe):
    config = load_config("smoke")
    env = probe.make_env(config.env)
    try:
        spec, task_id = probe.get_env_spec(config.env.name), env.task_ids("valid")[0]
        task, _, _, expert = probe.first_turn_candidates(env, spec, config, task_id)
    finally:
        env.close()
    target = task.task_id.split("/")[-2].split("-")[1]  # the game folder: type-Object-...
    likeliest = max(OBJECT_PRIORS[target], key=OBJECT_PRIORS[target].get)
    assert probe.skill_text("library", task, expert) is None
    assert probe.skill_text("priors", task, expert).startswith(f"A {target.lower()} is usually found in/on: ")
    assert f"in/on: {likeliest.lower()}, " in probe.skill_text("priors", task, expert)
    assert probe.skill_text("answer", task, expert).endswith(f"Your first action must be: {expert}.")
