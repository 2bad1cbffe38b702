"""The batched rollout: one generate call per turn, exact tokens, invalid replies, env failures, budgets."""

import dataclasses
import functools
import importlib.util
import re

import pytest
import torch

from sdar.config import Config, ModelConfig
from sdar.env_records import StepResult, Task
from sdar.envs.alfworld.prompts import build_alfworld_prompt
from sdar.envs.base import EnvSpec
from sdar.envs.pool import EnvPool
from sdar.envs.replies import NO_OP_ACTION, parse_action_reply
from sdar.models import load_model, token_logprobs
from sdar.models.generation import Generation, HFBackend
from sdar.records import rows_to_batch
from sdar.rollout.engine import (
    SKILLS_HEADER,
    RolloutSettings,
    add_skills_to_message,
    chat_prompt_ids,
    collect_episodes,
    turn_seed,
)

WIN = "open door"


class DoorEnv:
    """A tiny TextEnv: `open door` wins (reward 10); `explode` raises; `long` task ids pad observations."""

    def task_ids(self, split):
        return [f"{split}-{i}" for i in range(4)]

    def reset(self, task_id):
        if task_id.startswith("broken"):
            raise RuntimeError("this task cannot be loaded")
        self.task_id, self.steps = task_id, 0
        task = Task(task_id, "door", f"Your task is to: open the door ({task_id}).")
        return task, StepResult(self._observation("You are in a hallway."), admissible_actions=(WIN, "look"))

    def _observation(self, text):
        return text + (" The wallpaper is very long and winding." * 6 if "long" in self.task_id else "")

    def step(self, action):
        if action == "explode":
            raise RuntimeError("engine exploded")
        self.steps += 1
        command = action.lower()  # like ALFWorld, the env reads the action in lower case
        won = command == WIN
        text = self._observation(f"You did: {command} (step {self.steps}).")
        return StepResult(
            text, reward=10.0 if won else 0.0, done=won, won=won, admissible_actions=(WIN, "look")
        )

    def expert_action(self):
        return WIN

    def close(self):
        pass


SPEC = EnvSpec(
    name="door-test",
    factory=DoorEnv,
    description="test env",
    build_prompt=build_alfworld_prompt,
    parse_reply=parse_action_reply,
    stop_strings=("</action>",),
    admits=lambda action, admissible_actions: action.lower() in admissible_actions,
)


def reply(action):
    return f"<think>ok</think><action>{action}</action>"


class ScriptedBackend:
    """Replies from `script(prompt_text, call_index)`; records calls; log-prob -1 per token; eos appended."""

    def __init__(self, tokenizer, script):
        self.tokenizer, self.script, self.calls = tokenizer, script, []

    def generate(self, prompts, *, max_new_tokens, temperature, top_p, stop_strings=(), seed=None):
        self.calls.append({"prompts": prompts, "seed": seed, "stop_strings": stop_strings})
        out = []
        for prompt in prompts:
            text = self.script(self.tokenizer.decode(prompt), len(self.calls) - 1)
            ids = self.tokenizer(text, add_special_tokens=False).input_ids + [self.tokenizer.eos_token_id]
            out.append(Generation(ids, [-1.0] * len(ids), text, "eos"))
        return out


class RecordingBackend:
    """Passes through to a real backend and keeps every Generation it returned."""

    def __init__(self, backend):
        self.backend, self.generations = backend, []

    def generate(self, prompts, **options):
        generations = self.backend.generate(prompts, **options)
        self.generations.extend(generations)
        return generations


@pytest.fixture
def tiny():
    return load_model(ModelConfig(name="tiny"))


def pool_for(count):
    return EnvPool(DoorEnv, num_slots=count, num_workers=0)


def settings(**overrides):
    values = dict(group_size=2, max_turns=3, max_new_tokens=12, max_prompt_tokens=1024, seed=0)
    return RolloutSettings(**(values | overrides))


def run(tokenizer, backend, task_ids, count=None, **overrides):
    rollout_settings = settings(**overrides)
    with pool_for(count or len(task_ids) * rollout_settings.group_size) as pool:
        return collect_episodes(pool, SPEC, backend, tokenizer, task_ids, rollout_settings)


def test_same_seed_gives_identical_episodes(tiny):
    model, tokenizer = tiny
    first = run(tokenizer, HFBackend(model, tokenizer), ["t-0", "t-1"], seed=4)
    again = run(tokenizer, HFBackend(model, tokenizer), ["t-0", "t-1"], seed=4)
    other = run(tokenizer, HFBackend(model, tokenizer), ["t-0", "t-1"], seed=5)
    assert [e.turns for e in first.episodes] == [e.turns for e in again.episodes]
    responses = [t.response_ids for e in first.episodes for t in e.turns]
    assert responses != [t.response_ids for e in other.episodes for t in e.turns]


def test_turns_hold_exactly_the_sampled_tokens_and_batch_masks_them(tiny):
    model, tokenizer = tiny
    backend = RecordingBackend(HFBackend(model, tokenizer))
    rollout = run(tokenizer, backend, ["t-0", "t-1"])
    turns = [turn for episode in rollout.episodes for turn in episode.turns]
    assert len(turns) == len(backend.generations) == 2 * 2 * 3  # random replies never win: 3 turns each
    by_turn = sorted(turns, key=lambda t: (t.turn_index, t.episode_index))  # the order they were generated
    for turn, generation in zip(by_turn, backend.generations, strict=True):
        assert turn.response_ids == generation.token_ids and turn.sampling_logprobs == generation.logprobs
        assert turn.response_text == tokenizer.decode(turn.response_ids, skip_special_tokens=True)
        assert turn.finish_reason == generation.finish_reason
    batch = rows_to_batch(turns, tokenizer.pad_token_id)
    start = batch.response_start
    for row, turn in enumerate(turns):
        length = len(turn.response_ids)
        assert batch.response_mask[row].sum().item() == length and batch.response_mask[row, :length].all()
        assert batch.input_ids[row, start : start + length].tolist() == turn.response_ids
        assert batch.input_ids[row, start - len(turn.prompt_ids) : start].tolist() == turn.prompt_ids
    # End to end: the sampling log-probs stored in the rows equal the model's log-probs of the batch (T = 1).
    with torch.no_grad():
        logprobs, _ = token_logprobs(model, batch.input_ids, batch.attention_mask, start=start)
    mask = batch.response_mask
    torch.testing.assert_close(logprobs[:, start:][mask], batch.sampling_logprobs[mask], atol=1e-4, rtol=0)


def test_one_generate_call_per_turn_over_active_episodes(tiny):
    _, tokenizer = tiny

    def script(prompt, call):  # task t-0 wins on turn 1; t-1 never does
        return reply(WIN if "t-0" in prompt and call == 1 else "look")

    backend = ScriptedBackend(tokenizer, script)
    seen = []
    rollout_settings = settings(max_turns=4, seed=9)
    with pool_for(4) as pool:
        rollout = collect_episodes(
            pool,
            SPEC,
            backend,
            tokenizer,
            ["t-0", "t-1"],
            rollout_settings,
            on_turn=lambda *a: seen.append(a),
        )
    assert [len(call["prompts"]) for call in backend.calls] == [4, 4, 2, 2]
    assert [call["seed"] for call in backend.calls] == [turn_seed(9, k) for k in range(4)]
    assert all(call["stop_strings"] == ("</action>",) for call in backend.calls)
    assert seen == [(0, 4), (1, 2), (2, 2), (3, 0)]
    assert rollout.stats.generate_calls == 4
    won, lost = rollout.episodes[0], rollout.episodes[2]
    assert (won.won, won.episode_return, len(won.turns)) == (True, 10.0, 2)
    assert (lost.won, lost.episode_return, len(lost.turns)) == (False, 0.0, 4)  # stopped at max_turns
    assert [e.group_index for e in rollout.episodes] == [0, 0, 1, 1]
    assert [e.episode_index for e in rollout.episodes] == [0, 1, 2, 3]
    assert all(t.reward == 10.0 for t in won.turns) and all(t.reward == 0.0 for t in lost.turns)
    stats = rollout.stats
    assert (stats.episodes, stats.won_rate, stats.return_mean, stats.turns) == (4, 0.5, 5.0, 12)
    assert stats.valid_action_ratio == 1.0 and stats.finish_reasons == {"eos": 12}
    logged = stats.as_dict()
    assert (logged["finish_eos"], logged["finish_stop"], logged["finish_length"]) == (12, 0, 0)
    assert all(isinstance(value, int | float) for value in logged.values())  # scalars only, for loggers
    assert stats.generated_tokens == sum(len(t.response_ids) for e in rollout.episodes for t in e.turns)


def test_invalid_reply_steps_the_no_op_and_is_penalised(tiny):
    _, tokenizer = tiny

    def script(prompt, call):
        return "I will just open it" if call == 0 else reply(WIN)

    rollout = run(tokenizer, ScriptedBackend(tokenizer, script), ["t-0"], group_size=1, invalid_penalty=0.25)
    first, second = rollout.episodes[0].turns
    assert (first.valid, first.invalid_reason, first.action) == (False, "missing_think", NO_OP_ACTION)
    assert first.observation_after.startswith(f"You did: {NO_OP_ACTION}")  # the no-op was stepped
    assert second.valid and second.action == WIN and rollout.episodes[0].won
    assert (first.reward, second.reward) == (10.0 - 0.25, 10.0)
    assert f"Action 1: '{NO_OP_ACTION}'" in second.prompt_text  # history shows what was executed
    assert rollout.stats.valid_action_ratio == 0.5


def test_admissible_counts_the_action_as_the_env_reads_it(tiny):
    _, tokenizer = tiny
    replies = ["no tags here", reply("go to the moon"), reply("LOOK"), reply(WIN)]
    rollout = run(tokenizer, ScriptedBackend(tokenizer, lambda prompt, call: replies[call]), ["t-0"],
                  group_size=1, max_turns=4)  # fmt: skip
    turns = rollout.episodes[0].turns
    assert [turn.valid for turn in turns] == [False, True, True, True]
    assert [turn.admissible for turn in turns] == [False, False, True, True]  # "LOOK" was stepped as "look"
    assert rollout.stats.admissible_action_ratio == 0.5 and rollout.stats.valid_action_ratio == 0.75
    assert rollout.stats.as_dict()["admissible_action_ratio"] == 0.5


class ListlessDoorEnv(DoorEnv):
    """DoorEnv without an admissible-action list (like WebShop or Search-QA)."""

    def reset(self, task_id):
        task, result = super().reset(task_id)
        return task, dataclasses.replace(result, admissible_actions=None)

    def step(self, action):
        return dataclasses.replace(super().step(action), admissible_actions=None)


def test_no_admissible_ratio_where_the_env_lists_no_actions(tiny):
    _, tokenizer = tiny
    backend = ScriptedBackend(tokenizer, lambda prompt, call: reply("look"))
    with EnvPool(ListlessDoorEnv, num_slots=1, num_workers=0) as pool:
        rollout = collect_episodes(pool, SPEC, backend, tokenizer, ["t-0"], settings(group_size=1))
    assert all(turn.admissible is None for turn in rollout.episodes[0].turns)
    assert rollout.stats.admissible_action_ratio is None
    assert "admissible_action_ratio" not in rollout.stats.as_dict()  # loggers get scalars only


def test_failing_env_ends_only_its_episode(tiny):
    _, tokenizer = tiny

    def script(prompt, call):
        return reply("explode" if "t-1" in prompt and call == 1 else "look")

    rollout = run(tokenizer, ScriptedBackend(tokenizer, script), ["t-0", "t-1", "broken-2"], group_size=1)
    healthy, exploded, broken = rollout.episodes
    assert not healthy.error and len(healthy.turns) == 3
    assert "engine exploded" in exploded.error and len(exploded.turns) == 2 and not exploded.won
    assert "cannot be loaded" in broken.error and broken.turns == []
    assert rollout.stats.failed_episodes == 2


def test_history_budget_leaves_room_for_the_reserve(tiny):
    _, tokenizer = tiny
    backend = ScriptedBackend(tokenizer, lambda prompt, call: reply("look"))

    def history_shown(rollout):
        return [len(re.findall(r"\[Observation \d+", t.prompt_text)) for t in rollout.episodes[0].turns]

    options = dict(group_size=1, max_turns=4, history_length=2, max_prompt_tokens=1600)
    free = run(tokenizer, backend, ["long-0"], **options)
    reserved = run(tokenizer, backend, ["long-0"], prompt_budget_reserve=300, **options)
    assert history_shown(free) == [0, 1, 2, 2]
    assert history_shown(reserved) == [0, 1, 1, 1]  # the oldest pair was dropped to keep the reserve free
    assert all(len(t.prompt_ids) <= 1600 - 300 for t in reserved.episodes[0].turns)
    assert max(len(t.prompt_ids) for t in free.episodes[0].turns) > 1600 - 300  # the reserve mattered
    assert reserved.stats.prompts_over_budget == 0


def test_the_rollout_counts_the_prompts_whose_history_was_cut(tiny):
    _, tokenizer = tiny
    backend = ScriptedBackend(tokenizer, lambda prompt, call: reply("look"))
    options = dict(group_size=1, max_turns=4, history_length=2, max_prompt_tokens=1600)
    free = run(tokenizer, backend, ["long-0"], **options)
    reserved = run(tokenizer, backend, ["long-0"], prompt_budget_reserve=300, **options)
    # History shown [0, 1, 2, 2] without the reserve, [0, 1, 1, 1] with it: turns 3 and 4 lost a pair, and
    # without the reserve they kept it, so the reserve alone cut them.
    assert (free.stats.prompts_history_cut, free.stats.prompts_history_cut_by_reserve) == (0, 0)
    assert (reserved.stats.prompts_history_cut, reserved.stats.prompts_history_cut_by_reserve) == (2, 2)
    assert reserved.stats.as_dict()["prompts_history_cut"] == 2
    # A budget too small even without the reserve: every turn with history cuts it, none by the reserve alone.
    tight = run(tokenizer, backend, ["long-0"], **{**options, "max_prompt_tokens": 1000})
    turns_with_history = len(tight.episodes[0].turns) - 1
    assert tight.stats.prompts_history_cut == turns_with_history == 3
    assert tight.stats.prompts_history_cut_by_reserve == 0


def test_student_skills_go_into_the_prompt_and_count_against_the_budget(tiny):
    _, tokenizer = tiny
    backend = ScriptedBackend(tokenizer, lambda prompt, call: reply("look"))
    skills = "1. Doors open when you say so." * 10
    rollout_settings = settings(group_size=1, max_turns=3, max_prompt_tokens=1400)
    with pool_for(2) as pool:
        rollout = collect_episodes(
            pool,
            SPEC,
            backend,
            tokenizer,
            ["long-0", "t-1"],
            rollout_settings,
            skills_for=lambda task: skills if task.task_id == "long-0" else None,
        )
    with_skills, without = rollout.episodes
    assert all(t.prompt_text.startswith(f"{SKILLS_HEADER}\n{skills}\n\n") for t in with_skills.turns)
    assert not any(SKILLS_HEADER in t.prompt_text for t in without.turns)
    assert "[Observation 1" in without.turns[-1].prompt_text
    assert all(len(t.prompt_ids) <= 1400 for t in with_skills.turns)
    assert rollout.stats.prompts_over_budget == 0
    assert "[Observation 1" not in with_skills.turns[-1].prompt_text  # history went first
    assert add_skills_to_message(" a ", "b") == f"{SKILLS_HEADER}\na\n\nb"


def test_skills_prompt_builds_the_ids_of_a_prompt_with_skills(tiny):
    """The teacher's own prompt as the policy's (eval.skills_placement: teacher): the ids come from it."""
    from sdar.teacher.prompts import teacher_prompt_of

    _, tokenizer = tiny
    backend = ScriptedBackend(tokenizer, lambda prompt, call: reply("look"))

    def as_teacher(skills: str, message: str) -> list[int]:
        return teacher_prompt_of(tokenizer, chat_prompt_ids(tokenizer, message), message, skills).prompt_ids

    with pool_for(1) as pool:
        rollout = collect_episodes(
            pool,
            SPEC,
            backend,
            tokenizer,
            ["t-1"],
            settings(group_size=1, max_turns=2),
            skills_for=lambda task: "1. Doors open when you say so.",
            skills_prompt=as_teacher,
        )
    for turn in rollout.episodes[0].turns:
        plain = chat_prompt_ids(tokenizer, turn.prompt_text)
        assert SKILLS_HEADER not in turn.prompt_text  # the user message itself carries no skills
        assert turn.prompt_ids == as_teacher("1. Doors open when you say so.", turn.prompt_text) != plain
        assert tokenizer.decode(turn.prompt_ids).startswith("[Privileged Skill Information]")


def test_too_few_slots_and_bad_settings(tiny):
    model, tokenizer = tiny
    with pool_for(3) as pool, pytest.raises(ValueError, match="need 4 env slots; the pool has 3"):
        collect_episodes(pool, SPEC, HFBackend(model, tokenizer), tokenizer, ["a", "b"], settings())
    with pytest.raises(ValueError, match="prompt_budget_reserve"):
        settings(prompt_budget_reserve=1024)
    with pytest.raises(ValueError, match="top_p"):
        settings(top_p=0.0)


def test_settings_from_config():
    config = Config()
    rollout_settings = RolloutSettings.from_config(config, prompt_budget_reserve=256)
    assert rollout_settings.group_size == config.rollout.group_size
    assert rollout_settings.max_turns == config.env.max_turns
    assert rollout_settings.prompt_budget == config.rollout.max_prompt_tokens - 256


HAS_ENGINE = all(importlib.util.find_spec(name) for name in ("alfworld", "textworld"))


@pytest.mark.slow
@pytest.mark.skipif(not HAS_ENGINE, reason="needs the alfworld extra")
def test_generated_alfworld_games_in_worker_processes(tiny, tmp_path):
    from sdar.envs.alfworld.env import AlfworldEnv
    from sdar.envs.alfworld.generator import generate_games

    model, tokenizer = tiny
    games = [str(path.parent) for path in generate_games(2, seed=0, cache_dir=tmp_path / "games")]
    alfworld = EnvSpec(
        "alfworld-test", AlfworldEnv, "", build_alfworld_prompt, parse_action_reply, ("</action>",)
    )
    factory = functools.partial(AlfworldEnv, game_dirs=games, plan_cache_dir=str(tmp_path / "plans"))
    with EnvPool(factory, num_slots=4, num_workers=2) as pool:
        rollout = collect_episodes(
            pool, alfworld, HFBackend(model, tokenizer), tokenizer, games, settings(max_turns=2)
        )
    assert [len(e.turns) for e in rollout.episodes] == [2, 2, 2, 2] and not any(
        e.error for e in rollout.episodes
    )
    for episode in rollout.episodes:
        first = episode.turns[0]
        assert episode.task.goal and episode.task.goal.rstrip(".") in first.prompt_text
        assert first.action == NO_OP_ACTION and first.observation_after == "Nothing happens."
    assert rollout.stats.valid_action_ratio == 0.0  # a random tiny model never writes the tags
