"""The terminal play loop, driven by injected input."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdar.envs.alfworld.env import AlfworldEnv
from sdar.envs.alfworld.prompts import build_alfworld_prompt
from sdar.envs.play import play

from .fakes import FAKE_PLAN, FakeEngine, write_fake_game


@pytest.fixture
def env(tmp_path: Path) -> AlfworldEnv:
    write_fake_game(tmp_path / "json_2.1.1" / "valid_seen", "pick_and_place_simple-Mug-None-Table-1/trial_a")
    return AlfworldEnv(tmp_path, engine_factory=FakeEngine, plan_cache_dir="")


def scripted(*lines: str):
    queue = list(lines)

    def input_fn(prompt: str) -> str:
        if not queue:
            raise EOFError
        return queue.pop(0)

    return input_fn


def test_play_shows_observation_commands_and_wins(env):
    printed: list[str] = []
    task_id = env.task_ids("valid_seen")[0]
    outcome = play(
        env,
        task_id,
        scripted("help", "expert", "4", "!look", FAKE_PLAN[1], "QUIT"),
        lambda *a: printed.append(" ".join(a)),
    )
    text = "\n".join(printed)
    assert "Your task is to: put a mug in table" in text and "Admissible actions:" in text
    assert f"   4. {FAKE_PLAN[0]}" in text  # numbered admissible actions
    assert "expert  " in text and f"expert: {FAKE_PLAN[0]}" in text  # help text, then the expert's advice
    assert outcome.actions == (FAKE_PLAN[0], "look", FAKE_PLAN[1]) and not outcome.won and outcome.steps == 3
    assert f"You did: {FAKE_PLAN[1]}." in text and "not won after 3 steps" in text

    printed.clear()
    outcome = play(env, task_id, scripted(*FAKE_PLAN, "never read"), printed.append)
    assert outcome.won and outcome.reward == 10.0 and "won in 3 steps" in printed[-1]


def test_play_ends_on_end_of_input_and_renders_the_model_prompt(env):
    printed: list[str] = []
    task_id = env.task_ids("valid_seen")[0]
    outcome = play(env, task_id, scripted("look"), printed.append, render_prompt=build_alfworld_prompt)
    assert outcome.steps == 1 and not outcome.won
    assert any(p.startswith("You are an expert agent acting in ALFWorld") for p in printed)
    assert any("Before this step you have already taken 1 step(s)" in p for p in printed)
    outcome = play(env, task_id, scripted("look", "look", "look"), printed.append, max_turns=2)
    assert outcome.steps == 2
