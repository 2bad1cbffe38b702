"""Scripted policies for evaluation over any TextEnv, episode runners, and expert demonstration export.

A policy answers `act(task, step_result, history) -> action string`, where `history` holds the (observation,
action) pairs of the steps already taken. `ExpertPolicy` asks the env's expert (or reads the expert action the
pool attached to the result, see `EnvPool.step_many(with_expert=True)`); `RandomAdmissiblePolicy` picks
uniformly among the admissible actions with its own seeded `random.Random`, so a run is reproducible given
the order of calls (the runners below call in a fixed order; for per-episode streams use one policy per
episode).

`expert_demonstrations` turns expert play into per-turn records for a supervised warm start; rendering is a
parameter so any env's prompt builder fits (for ALFWorld pass
`sdar.envs.alfworld.prompts.build_alfworld_prompt`, whose signature matches `render_prompt`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from sdar.env_records import StepResult, Task
from sdar.envs.base import TextEnv, episode_metrics
from sdar.envs.pool import EnvPool

History = Sequence[tuple[str, str]]


@runtime_checkable
class Policy(Protocol):
    def act(self, task: Task, step_result: StepResult, history: History) -> str:
        """The action to step after seeing `step_result` (the latest observation) of `task`."""


class ExpertPolicy:
    """The env's expert: `step_result.info["expert_action"]` when a pool attached it, else `env`'s."""

    needs_expert = True  # runners ask the pool to compute expert actions next to each step, in parallel

    def __init__(self, env: TextEnv | None = None, fallback: str = "look"):
        self.env = env
        self.fallback = fallback  # stepped when the expert has no answer (planner failure); a harmless no-op

    def act(self, task: Task, step_result: StepResult, history: History) -> str:
        if "expert_action" in step_result.info:
            action = step_result.info["expert_action"]
        elif self.env is not None:
            action = self.env.expert_action()
        else:
            raise ValueError("ExpertPolicy needs an env, or results carrying info['expert_action']")
        return self.fallback if action is None else action


class RandomAdmissiblePolicy:
    """Uniform over the admissible actions (`fallback` where the env lists none), seeded."""

    needs_expert = False

    def __init__(self, seed: int = 0, fallback: str = "look"):
        self.seed = seed
        self.fallback = fallback
        self._random = random.Random(seed)

    def act(self, task: Task, step_result: StepResult, history: History) -> str:
        actions = step_result.admissible_actions
        return self._random.choice(actions) if actions else self.fallback


@dataclass(frozen=True)
class EpisodeOutcome:
    task: Task
    won: bool
    reward: float  # summed over the episode
    steps: int
    actions: tuple[str, ...]
    error: str | None = None  # set when the env failed and ended the episode
    metrics: dict = field(default_factory=dict)  # the env's episode metrics (`episode_metrics`)


def run_episode(env: TextEnv, policy: Policy, task_id: str, max_turns: int = 50) -> EpisodeOutcome:
    """Play one episode of `task_id` for at most `max_turns` steps."""
    task, result = env.reset(task_id)
    history: list[tuple[str, str]] = []
    reward = 0.0
    while not result.done and len(history) < max_turns:
        action = policy.act(task, result, history)
        observation = result.observation
        result = env.step(action)
        history.append((observation, action))
        reward += result.reward
    actions = tuple(action for _, action in history)
    error = result.info.get("error")
    return EpisodeOutcome(task, result.won, reward, len(history), actions, error, episode_metrics(result))


@dataclass
class _Running:
    index: int
    task: Task
    result: StepResult
    history: list[tuple[str, str]] = field(default_factory=list)
    reward: float = 0.0


def run_episodes(
    pool: EnvPool,
    policy: Policy,
    task_ids: Sequence[str],
    max_turns: int = 50,
    timeout_s: float | None = None,
) -> list[EpisodeOutcome]:
    """One episode per task id over the pool's slots (a freed slot takes the next task); outcomes in order.

    `timeout_s` overrides the pool's per-call timeout (raise it for the ALFWorld planner expert, which can
    take minutes on a few games before its plan is cached).
    """
    with_expert = bool(getattr(policy, "needs_expert", False))
    queue = list(enumerate(task_ids))[::-1]
    outcomes: list[EpisodeOutcome | None] = [None] * len(task_ids)
    running: dict[int, _Running] = {}

    def finish(slot: int) -> None:
        run = running.pop(slot)
        actions = tuple(action for _, action in run.history)
        error = run.result.info.get("error")
        outcomes[run.index] = EpisodeOutcome(
            run.task, run.result.won, run.reward, len(actions), actions, error, episode_metrics(run.result)
        )

    while queue or running:
        free = [slot for slot in range(pool.num_slots) if slot not in running]
        starts = [(slot, queue.pop()) for slot in free[: len(queue)]]
        if starts:
            requests = [(slot, task_id) for slot, (_, task_id) in starts]
            answers = pool.reset_many(requests, with_expert=with_expert, timeout_s=timeout_s)
            for (slot, (index, _)), (task, result) in zip(starts, answers, strict=True):
                running[slot] = _Running(index, task, result)
        for slot in [s for s, run in running.items() if run.result.done or len(run.history) >= max_turns]:
            finish(slot)
        if not running:
            continue
        slots = sorted(running)
        actions = [policy.act(running[s].task, running[s].result, running[s].history) for s in slots]
        answers = pool.step_many(
            list(zip(slots, actions, strict=True)), with_expert=with_expert, timeout_s=timeout_s
        )
        for slot, action, result in zip(slots, actions, answers, strict=True):
            run = running[slot]
            run.history.append((run.result.observation, action))
            run.result = result
            run.reward += result.reward
    return outcomes


# ---- demonstrations --------------------------------------------------------------------------------------
PromptRenderer = Callable[[Task, str, Sequence[str] | None, History, int], str]


def default_reply(task: Task, action: str) -> str:
    """The target reply in the spec's format: `<think>...</think><action>...</action>`."""
    thought = f"My task is to {task.goal.rstrip('.')}. The next step is to {action}."
    return f"<think>{thought}</think><action>{action}</action>"


@dataclass(frozen=True)
class DemoTurn:
    """One expert turn: what the agent saw, what the expert did, and (with renderers) the SFT pair."""

    task: Task
    step_count: int  # steps taken before this turn
    observation: str
    admissible_actions: tuple[str, ...] | None
    history: tuple[tuple[str, str], ...]  # every earlier (observation, action) pair, oldest first
    expert_action: str
    prompt: str | None = None
    reply: str | None = None


def expert_demonstrations(
    env: TextEnv,
    task_ids: Sequence[str],
    *,
    max_turns: int = 50,
    render_prompt: PromptRenderer | None = None,
    render_reply: Callable[[Task, str], str] | None = default_reply,
    only_won: bool = True,
) -> Iterator[DemoTurn]:
    """Play each task with the env's expert and yield its turns (only from won episodes when `only_won`).

    `render_prompt(task, observation, admissible_actions, history_pairs, step_count)`, e.g.
    `build_alfworld_prompt`, fills `DemoTurn.prompt`; `render_reply(task, action)` fills `DemoTurn.reply`.
    """
    for task_id in task_ids:
        task, result = env.reset(task_id)
        history: list[tuple[str, str]] = []
        turns: list[DemoTurn] = []
        while not result.done and len(history) < max_turns:
            action = env.expert_action()
            if action is None:
                break
            prompt = None
            if render_prompt is not None:
                prompt = render_prompt(
                    task, result.observation, result.admissible_actions, history, len(history)
                )
            turns.append(
                DemoTurn(
                    task,
                    len(history),
                    result.observation,
                    result.admissible_actions,
                    tuple(history),
                    action,
                    prompt,
                    render_reply(task, action) if render_reply else None,
                )
            )
            history.append((result.observation, action))
            result = env.step(action)
        if result.won or not only_won:
            yield from turns
