"""The TextEnv protocol every environment (ALFWorld, WebShop, Search-QA, yours) implements, and its registry.

An env is a stateful text game: `reset(task_id)` starts one task, `step(action)` applies one action string
(already extracted from the model's reply; an invalid reply is stepped as a no-op, docs/method.md §1).
Everything that crosses the boundary is plain text plus two small records (Task, StepResult:
`sdar.env_records`, the ground floor every layer imports), so envs can live in worker processes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from sdar.env_records import StepResult, Task


def episode_metrics(result: StepResult) -> dict[str, float]:
    """The env's per-episode metrics, read from the LAST result of an episode: `info["metrics"]`, a dict of
    floats (WebShop's attribute "score", Search-QA's "f1"). Evaluation and training average them; an episode
    whose env reports none counts as 0 for every metric other episodes report."""
    return {str(name): float(value) for name, value in result.info.get("metrics", {}).items()}


def metric_means(per_episode: list[dict[str, float]]) -> dict[str, float]:
    """The mean of every metric any episode reports; an episode without a metric counts as 0 for it."""
    names = sorted({name for metrics in per_episode for name in metrics})
    count = max(len(per_episode), 1)
    return {name: sum(metrics.get(name, 0.0) for metrics in per_episode) / count for name in names}


@runtime_checkable
class TextEnv(Protocol):
    def task_ids(self, split: str) -> list[str]:
        """Task ids of a split, in a fixed deterministic order."""

    def reset(self, task_id: str) -> tuple[Task, StepResult]:
        """Start `task_id`; returns the task and the first observation."""

    def step(self, action: str) -> StepResult:
        """Apply one action string; never raises on bad text (an unknown command is a no-op)."""

    def expert_action(self) -> str | None:
        """The next action of the env's expert, or None where there is no expert."""

    def close(self) -> None: ...


class ParsedReply(Protocol):
    """What an env's reply parser returns: the action to step and whether the reply was well-formed."""

    action: str
    valid: bool
    reason: str


def data_dir_and_options(env_config) -> dict:
    """An env factory's usual keyword arguments: `data_dir` (env.data_dir, None when unset) and every entry of
    env.options as a keyword of its own."""
    return {"data_dir": env_config.data_dir or None, **dict(env_config.options)}


@dataclass(frozen=True)
class EnvSpec:
    """A registry entry: how to build the env, how the agent talks to it, and what it needs installed.

    build_prompt(task, observation, admissible_actions, history_pairs, step_count, history_length, *,
    budget=None, measure=len) -> the user message; parse_reply(text) -> ParsedReply; generation stops at
    any of `stop_strings` (the closing action tag), which stay part of the response. render_reply(task,
    action) -> the reply in the env's format that steps `action` (SFT targets from expert actions); None =
    `<think>...</think><action>...</action>` (sdar.envs.policies.default_reply).
    """

    name: str
    factory: Callable[..., TextEnv]
    description: str
    build_prompt: Callable[..., str]
    parse_reply: Callable[[str], ParsedReply]
    stop_strings: tuple[str, ...] = ()
    render_reply: Callable[[Task, str], str] | None = None
    skill_library: str = ""  # the skill library's name (sdar.skills); "" = the env's own name
    task_types: tuple[str, ...] = ()  # all task types the router knows; () = unknown (reserve for all skills)
    requires: str = ""  # the pip extra, e.g. "alfworld"
    # The paper's "Avg": success over all "episodes" (ALFWorld, WebShop), or the plain mean over "task_types"
    # (Search-QA: the mean of the datasets, docs/method.md §7).
    average: str = "episodes"
    # check(data_dir=None): why the env cannot run here (with env.data_dir when set), or None
    check: Callable[..., str | None] = lambda data_dir=None: None
    # admits(action, admissible_actions): is the stepped action one of those the env listed for the turn, as
    # the env reads actions (`train/admissible_action_ratio`)? Default: listed verbatim.
    admits: Callable[[str, tuple[str, ...]], bool] = lambda action, admissible_actions: (
        action in admissible_actions
    )
    # The fewest turns in which any task of the env can be won (WebShop: search, click a product, buy): an
    # evaluation with env.max_turns below it cannot win an episode and is refused up front.
    min_turns: int = 1
    # The turn limit of the env's protocol (docs/method.md §6: ALFWorld 50, WebShop 15, Search-QA 4): the
    # env.max_turns of a config that leaves it unset (`sdar.config.resolve` writes the number into the
    # config). An env that states none gets 50.
    default_max_turns: int = 50
    # The env's own scripted eval policies (eval.policy values beyond model, expert and random, which every
    # env plays), e.g. Search-QA's no_search; an evaluation of another env refuses them.
    policies: tuple[str, ...] = ()
    # factory_arguments(env_config) -> the keyword arguments `factory` is called with, from the config's env
    # section; a `data_dir` among them is the folder `check` is asked about.
    factory_arguments: Callable[..., dict] = data_dir_and_options
    # The factory keyword that receives env.max_turns, for an env that ends its episodes and words its prompt
    # by the turn limit (Search-QA: "max_turns", WebShop: "max_steps"); env.options may not set it, so the
    # limit has one knob. "" = the env keeps no turn limit of its own (the rollout's env.max_turns still ends
    # episodes).
    turn_limit_argument: str = ""


def turn_limit(spec: EnvSpec, max_turns: int | None) -> int:
    """The most turns an episode of `spec`'s env may take: env.max_turns when set, else the env's protocol
    limit (`EnvSpec.default_max_turns`)."""
    return spec.default_max_turns if max_turns is None else max_turns


ENVS: dict[str, EnvSpec] = {}


def register_env(spec: EnvSpec) -> EnvSpec:
    if spec.name in ENVS:
        raise ValueError(f"env {spec.name!r} is registered twice")
    if spec.default_max_turns < max(spec.min_turns, 1):
        raise ValueError(
            f"env {spec.name!r}: default_max_turns={spec.default_max_turns} is below its min_turns="
            f"{spec.min_turns}, so no episode under the default limit could be won"
        )
    ENVS[spec.name] = spec
    return spec


def get_env_spec(name: str) -> EnvSpec:
    if name not in ENVS:
        raise KeyError(f"unknown env {name!r}; registered envs: {', '.join(sorted(ENVS)) or '(none)'}")
    return ENVS[name]


def missing_package_or_data(
    package_problem: str | None, resolve_data_dir: Callable, data_dir=None
) -> str | None:
    """An `EnvSpec.check` answer: the missing package, else the missing data folder (`resolve_data_dir`
    raises FileNotFoundError naming the path and how to set it), else None."""
    if package_problem:
        return package_problem
    try:
        resolve_data_dir(data_dir)
    except FileNotFoundError as error:
        return str(error)
    return None
