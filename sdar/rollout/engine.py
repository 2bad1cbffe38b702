"""The batched multi-turn rollout (docs/method.md §5, steps 1-3): B tasks x G episodes -> Episodes of Turns.

`collect_episodes` launches G episodes of each of B tasks (group g = task g; every episode of a group starts
from the identical task), one env slot per episode (episode e uses slot `first_slot + e`). At each turn:
1. for every ACTIVE episode, the user message is built by the env's `build_prompt` from the task, step count,
   last H (observation, action) pairs, current observation and admissible actions, under a token budget of
   `max_prompt_tokens - prompt_budget_reserve` measured on the chat-templated prompt (the reserve is room for
   the teacher's skill text, so skills + prompt always fit; only history is ever dropped to fit), then the
   chat template is applied (one user message, generation prompt added);
2. ONE `backend.generate` call samples a reply for every active episode;
3. each reply is parsed by the env's `parse_reply`; ONE `step_many` call steps every active env with the
   parsed action (an invalid reply steps the parser's no-op action and its row is marked invalid);
4. one Turn per active episode records the prompt ids, the response ids exactly as sampled, their sampling
   log-probs, the stepped action, validity, env reward and the next observation, and whether the action was
   among the admissible ones listed (a valid reply can still name a receptacle the room does not have).
An episode ends when the env says done (won or lost), when the env fails (`info["error"]`: the episode ends
as failed with the error recorded; nothing else stops), or at `max_turns`.

Rewards: the episode return is the SUM of the env's step rewards (ALFWorld: 10 on the winning step, else 0,
so the return is 10 if won else 0), `won` is the env's own flag, and `assign_row_rewards` then gives every
row the return minus the invalid-action penalty of that turn (docs/method.md §1).

Skills for the student (Skill-GRPO): `skills_for(task) -> str | None`; a non-empty text is put into the
student's user message by `student_message(skills, message)` (default `add_skills_to_message`), and the
budget measures the message WITH the skills, so history is cut before anything else. `skills_prompt(skills,
message) -> ids` replaces that composition where the skills do not fit in a user message (the teacher's raw
prefix: the teacher's own prompt as the policy's, `eval.skills_placement: teacher`).

Reproducibility: turn k of a rollout calls the backend with seed `turn_seed(settings.seed, k)`; the same
seed, model, tasks and (deterministic) envs give identical episodes.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields

from sdar.config import Config, EnvConfig, RolloutConfig
from sdar.env_records import StepResult, Task
from sdar.envs.base import EnvSpec, episode_metrics, metric_means, turn_limit
from sdar.envs.history import EpisodeMemory
from sdar.models.generation import GenerationBackend
from sdar.records import Episode, Turn, assign_row_rewards

logger = logging.getLogger(__name__)

SKILLS_HEADER = "Skills that may help with this task:"
FINISH_REASONS = ("eos", "stop", "length")


@dataclass(frozen=True)
class RolloutSettings:
    """Everything the rollout loop needs besides the envs, model and tasks. Each field but the last two is the
    config field of the same name in the `rollout` or `env` section, default included (the paper's ALFWorld
    settings, docs/method.md §6); `from_config` reads them by name."""

    group_size: int = RolloutConfig.group_size  # G: episodes per task
    max_turns: int | None = EnvConfig.max_turns  # T_max; None = the env's limit (EnvSpec.default_max_turns)
    history_length: int = EnvConfig.history_length  # H
    invalid_penalty: float = EnvConfig.invalid_penalty
    max_prompt_tokens: int = RolloutConfig.max_prompt_tokens
    max_new_tokens: int = RolloutConfig.max_new_tokens
    temperature: float = RolloutConfig.temperature
    top_p: float = RolloutConfig.top_p
    seed: int = Config.seed
    prompt_budget_reserve: int = 0  # tokens kept free in the student prompt for the teacher's skill text

    def __post_init__(self) -> None:
        problems = []
        turns_below_one = self.max_turns is not None and self.max_turns < 1
        if self.group_size < 1 or turns_below_one or self.max_new_tokens < 1:
            problems.append("group_size, max_turns and max_new_tokens must be >= 1")
        if self.history_length < 0 or self.invalid_penalty < 0 or self.temperature < 0:
            problems.append("history_length, invalid_penalty and temperature must be >= 0")
        if not 0.0 < self.top_p <= 1.0:
            problems.append(f"top_p must lie in (0, 1], got {self.top_p}")
        if not 0 <= self.prompt_budget_reserve < self.max_prompt_tokens:
            problems.append(
                f"prompt_budget_reserve must lie in [0, max_prompt_tokens={self.max_prompt_tokens}), "
                f"got {self.prompt_budget_reserve}"
            )
        if problems:
            raise ValueError("invalid RolloutSettings: " + "; ".join(problems))

    @property
    def prompt_budget(self) -> int:
        """Tokens the chat-templated student prompt may use."""
        return self.max_prompt_tokens - self.prompt_budget_reserve

    @classmethod
    def from_config(cls, config: Config, *, prompt_budget_reserve: int = 0) -> RolloutSettings:
        """From a `sdar.config.Config`: every field from its `rollout` or `env` section by name, the seed."""
        values = {"seed": config.seed, "prompt_budget_reserve": prompt_budget_reserve}
        for name in (f.name for f in fields(cls) if f.name not in values):
            values[name] = getattr(config.rollout if hasattr(config.rollout, name) else config.env, name)
        return cls(**values)


@dataclass(frozen=True)
class RolloutStats:
    """Aggregates of one rollout, for logging (`as_dict`)."""

    episodes: int
    won_rate: float
    return_mean: float
    valid_action_ratio: float  # valid turns / turns (replies in the env's format)
    turns: int  # training rows
    turns_per_episode: float
    generated_tokens: int
    prompt_tokens: int
    tokens_per_s: float  # generated tokens per second of generation time
    time_s: float  # the whole rollout, resets included
    generate_time_s: float
    env_time_s: float
    generate_calls: int
    failed_episodes: int  # ended by an env error
    prompts_over_budget: int  # prompts longer than the budget even with no history shown
    # prompts that showed fewer history pairs than env.history_length allowed, to fit the budget; of them,
    # those whose whole history fit rollout.max_prompt_tokens: cut only for the teacher's skill reserve
    prompts_history_cut: int = 0
    prompts_history_cut_by_reserve: int = 0
    finish_reasons: dict[str, int] = field(default_factory=dict)  # "eos" / "stop" / "length" -> turns
    metric_means: dict[str, float] = field(default_factory=dict)  # env episode metrics, e.g. "score"
    # admissible turns / turns, over the turns whose env listed admissible actions; None where none did
    admissible_action_ratio: float | None = None

    def as_dict(self) -> dict[str, float | int]:
        """Flat scalars for loggers: `finish_reasons` becomes finish_eos / finish_stop / finish_length and
        each env metric `<name>_mean`; a ratio the env cannot give (None) is left out."""
        values = {key: value for key, value in asdict(self).items() if value is not None}
        reasons = values.pop("finish_reasons")
        values.update({f"finish_{reason}": reasons.get(reason, 0) for reason in FINISH_REASONS})
        values.update({f"{name}_mean": mean for name, mean in values.pop("metric_means").items()})
        return values


@dataclass
class Rollout:
    episodes: list[Episode]
    stats: RolloutStats


def turn_seed(seed: int, turn_index: int) -> int:
    """The backend seed of turn `turn_index` of a rollout seeded `seed` (distinct for turn < 1,000,003)."""
    return (seed * 1_000_003 + turn_index) % (2**63)


def add_skills_to_message(skills: str, message: str) -> str:
    """Default placement of the student's skills (Skill-GRPO): a headed section before the user message."""
    return f"{SKILLS_HEADER}\n{skills.strip()}\n\n{message}"


def chat_prompt_ids(tokenizer, message: str) -> list[int]:
    """The chat-templated prompt of one user message, generation prompt added, as token ids."""
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": message}], add_generation_prompt=True, tokenize=True, return_dict=False
    )
    return [int(i) for i in ids]


@dataclass
class _Running:
    """The state of one episode between turns."""

    episode: Episode
    slot: int
    skills: str | None
    observation: str = ""
    admissible_actions: tuple[str, ...] | None = None
    memory: EpisodeMemory = field(default_factory=EpisodeMemory)
    done: bool = False


@dataclass(frozen=True)
class _Prompt:
    text: str  # the user message (skills included, chat template not applied)
    ids: list[int]
    over_budget: bool
    history_cut: bool = False  # history pairs were dropped to fit the budget
    history_cut_by_reserve: bool = False  # ... that the whole max_prompt_tokens would have held


def build_student_prompt(
    running: _Running,
    env_spec: EnvSpec,
    tokenizer,
    settings: RolloutSettings,
    student_message: Callable[[str, str], str],
    skills_prompt: Callable[[str, str], list[int]] | None = None,
) -> _Prompt:
    """The user message under the token budget (history dropped oldest first), and its chat-templated ids;
    whether history was cut, and whether only the reserve cut it (the prompt with every pair of the last H,
    rendered without a budget, is longer than the budget but fits max_prompt_tokens)."""
    encoded: dict[str, tuple[str, list[int]]] = {}

    def measure(text: str) -> int:  # tokens of the whole chat-templated prompt; remembered for reuse
        if text not in encoded:
            if running.skills and skills_prompt is not None:
                encoded[text] = (text, skills_prompt(running.skills, text))
            else:
                message = student_message(running.skills, text) if running.skills else text
                encoded[text] = (message, chat_prompt_ids(tokenizer, message))
        return len(encoded[text][1])

    memory, history_length = running.memory, settings.history_length
    pairs = memory.recent(history_length)

    def render(budget: int | None) -> str:
        task, observation, admissible = running.episode.task, running.observation, running.admissible_actions
        arguments = (task, observation, admissible, pairs, memory.step_count, history_length)
        return env_spec.build_prompt(*arguments, budget=budget, measure=measure)

    text = render(settings.prompt_budget)
    measure(text)
    message, ids = encoded[text]
    cut = by_reserve = False
    if pairs:  # the whole history's prompt: measured already while fitting (remembered), else once here
        whole = render(None)
        cut = whole != text
        by_reserve = cut and measure(whole) <= settings.max_prompt_tokens
    return _Prompt(message, ids, len(ids) > settings.prompt_budget, cut, by_reserve)


def collect_episodes(
    envs,
    env_spec: EnvSpec,
    backend: GenerationBackend,
    tokenizer,
    task_ids: Sequence[str],
    settings: RolloutSettings,
    *,
    skills_for: Callable[[Task], str | None] | None = None,
    student_message: Callable[[str, str], str] = add_skills_to_message,
    skills_prompt: Callable[[str, str], list[int]] | None = None,
    on_turn: Callable[[int, int], None] | None = None,
    first_slot: int = 0,
) -> Rollout:
    """Play G = settings.group_size episodes of each task; see the module docstring.

    envs: anything with `reset_many([(slot, task_id)])` and `step_many([(slot, action)])` (an EnvPool with
    at least first_slot + B*G slots). on_turn(turn_index, active_count) is called after each turn with the
    number of episodes that will play the next turn (0 after the last). Episodes come back ordered by
    episode index (group-major).
    """
    started = time.perf_counter()
    group_size = settings.group_size
    count = len(task_ids) * group_size
    num_slots = getattr(envs, "num_slots", None)
    if num_slots is not None and first_slot + count > num_slots:
        raise ValueError(
            f"{len(task_ids)} tasks x {group_size} episodes from slot {first_slot} need "
            f"{first_slot + count} env slots; the pool has {num_slots}"
        )
    env_time = generate_time = 0.0
    requests = [(first_slot + e, task_ids[e // group_size]) for e in range(count)]
    clock = time.perf_counter()
    resets = envs.reset_many(requests) if requests else []
    env_time += time.perf_counter() - clock

    running: list[_Running] = []
    for index, ((slot, _), (task, result)) in enumerate(zip(requests, resets, strict=True)):
        episode = Episode(
            task=task, group_index=index // group_size, episode_index=index, info={"slot": slot}
        )
        state = _Running(episode, slot, None)
        running.append(state)
        if "error" in result.info:
            episode.error, state.done = str(result.info["error"]), True
            continue
        state.skills = skills_for(task) if skills_for is not None else None
        state.observation, state.admissible_actions = result.observation, result.admissible_actions

    generate_calls = over_budget = history_cut = history_cut_by_reserve = 0
    max_turns = turn_limit(env_spec, settings.max_turns)
    for turn_index in range(max_turns):
        active = [state for state in running if not state.done]
        if not active:
            break
        prompts = [
            build_student_prompt(s, env_spec, tokenizer, settings, student_message, skills_prompt)
            for s in active
        ]
        over_budget += sum(prompt.over_budget for prompt in prompts)
        history_cut += sum(prompt.history_cut for prompt in prompts)
        history_cut_by_reserve += sum(prompt.history_cut_by_reserve for prompt in prompts)
        clock = time.perf_counter()
        generations = backend.generate(
            [prompt.ids for prompt in prompts],
            max_new_tokens=settings.max_new_tokens,
            temperature=settings.temperature,
            top_p=settings.top_p,
            stop_strings=env_spec.stop_strings,
            seed=turn_seed(settings.seed, turn_index),
        )
        generate_time += time.perf_counter() - clock
        generate_calls += 1
        if len(generations) != len(prompts):
            raise RuntimeError(
                f"the backend returned {len(generations)} generations for {len(prompts)} prompts"
            )
        replies = [env_spec.parse_reply(generation.text) for generation in generations]
        clock = time.perf_counter()
        results = envs.step_many([(s.slot, reply.action) for s, reply in zip(active, replies, strict=True)])
        env_time += time.perf_counter() - clock
        for state, prompt, generation, reply, result in zip(
            active, prompts, generations, replies, results, strict=True
        ):
            admissible = _admissible(env_spec, reply, state.admissible_actions)
            _record_turn(state, turn_index, prompt, generation, reply, result, admissible)
        if on_turn is not None:
            last = turn_index + 1 == max_turns
            on_turn(turn_index, 0 if last else sum(not state.done for state in running))

    if over_budget:
        logger.warning(
            "%d prompt(s) exceeded the %d-token budget even without history (kept whole, never cut)",
            over_budget,
            settings.prompt_budget,
        )
    episodes = [state.episode for state in running]
    assign_row_rewards(episodes, settings.invalid_penalty)
    stats = rollout_stats(
        episodes,
        time_s=time.perf_counter() - started,
        generate_time_s=generate_time,
        env_time_s=env_time,
        generate_calls=generate_calls,
        prompts_over_budget=over_budget,
        prompts_history_cut=history_cut,
        prompts_history_cut_by_reserve=history_cut_by_reserve,
    )
    return Rollout(episodes, stats)


def _record_turn(
    state: _Running, turn_index: int, prompt: _Prompt, generation, reply, result: StepResult, admissible
):
    """Append the Turn and advance the episode: memory, return, and whether it ended (won, lost, failed)."""
    episode = state.episode
    episode.turns.append(
        Turn(
            task=episode.task,
            group_index=episode.group_index,
            episode_index=episode.episode_index,
            turn_index=turn_index,
            prompt_text=prompt.text,
            prompt_ids=prompt.ids,
            response_ids=list(generation.token_ids),
            response_text=generation.text,
            action=reply.action,
            valid=bool(reply.valid),
            invalid_reason="" if reply.valid else reply.reason,
            admissible=admissible,
            sampling_logprobs=list(generation.logprobs),
            finish_reason=generation.finish_reason,
            env_reward=float(result.reward),
            observation_after=result.observation,
        )
    )
    state.memory.add(state.observation, reply.action)
    episode.episode_return += float(result.reward)
    episode.metrics = episode_metrics(result)
    if "error" in result.info:
        episode.error, episode.won, state.done = str(result.info["error"]), False, True
    elif result.done:
        episode.won, state.done = bool(result.won), True
    else:
        state.observation, state.admissible_actions = result.observation, result.admissible_actions


def _admissible(env_spec: EnvSpec, reply, shown: tuple[str, ...] | None) -> bool | None:
    """Is the stepped action among the admissible actions listed for this turn (`env_spec.admits`)? None where
    the env lists none; False for an invalid reply."""
    if shown is None:
        return None
    return bool(reply.valid) and env_spec.admits(reply.action, shown)


def admissible_ratio(turns) -> float | None:
    """The share of admissible turns among those whose env listed admissible actions (None: no such turn)."""
    flags = [turn.admissible for turn in turns if turn.admissible is not None]
    return sum(flags) / len(flags) if flags else None


def rollout_stats(
    episodes: list[Episode],
    *,
    time_s: float,
    generate_time_s: float,
    env_time_s: float,
    generate_calls: int,
    prompts_over_budget: int = 0,
    prompts_history_cut: int = 0,
    prompts_history_cut_by_reserve: int = 0,
) -> RolloutStats:
    """Won rate, return mean, valid- and admissible-action ratios, token counts and speeds of episodes."""
    turns = [turn for episode in episodes for turn in episode.turns]
    generated = sum(len(turn.response_ids) for turn in turns)
    count = max(len(episodes), 1)
    return RolloutStats(
        episodes=len(episodes),
        won_rate=sum(episode.won for episode in episodes) / count,
        return_mean=sum(episode.episode_return for episode in episodes) / count,
        valid_action_ratio=sum(turn.valid for turn in turns) / max(len(turns), 1),
        turns=len(turns),
        turns_per_episode=len(turns) / count,
        generated_tokens=generated,
        prompt_tokens=sum(len(turn.prompt_ids) for turn in turns),
        tokens_per_s=generated / generate_time_s if generate_time_s > 0 else 0.0,
        time_s=time_s,
        generate_time_s=generate_time_s,
        env_time_s=env_time_s,
        generate_calls=generate_calls,
        failed_episodes=sum(bool(episode.error) for episode in episodes),
        prompts_over_budget=prompts_over_budget,
        prompts_history_cut=prompts_history_cut,
        prompts_history_cut_by_reserve=prompts_history_cut_by_reserve,
        finish_reasons=dict(Counter(turn.finish_reason for turn in turns)),
        metric_means=metric_means([episode.metrics for episode in episodes]),
        admissible_action_ratio=admissible_ratio(turns),
    )
