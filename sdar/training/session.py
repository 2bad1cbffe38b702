"""What a training run holds besides the optimiser: env workers, the generation backend, the task sampler,
the teachers' weights, and the fixed validation panel. The trainer calls it once per line of docs/method.md
§5.

Several teachers (`teacher.contexts`, docs/method.md §9): each context scores the student's tokens, and
the batch's teacher log-probs are, per token, those of the context the method's distillation term routes
to (`DistillTerm.route_teachers`); the K contexts' log-probs stay for `teacher_context_stats`."""

from __future__ import annotations

import contextlib
import itertools
import random
from collections import Counter
from collections.abc import Callable

import torch

from sdar.algorithms import METHODS, ObjectiveSettings, get_method, teacher_routing_totals
from sdar.algorithms.distill import DISTILL_TERMS
from sdar.config import Config
from sdar.envs import get_env_spec
from sdar.envs.executors import make_env_pool
from sdar.errors import ActionableError, ConfigError
from sdar.models.backends import make_backend
from sdar.models.sharding import full_weights
from sdar.records import Batch, Episode, Turn
from sdar.rollout.engine import RolloutSettings, collect_episodes
from sdar.skills import library_name, teacher_context
from sdar.teacher import (
    TeacherWeights,
    skill_token_reserve,
    student_prompt_budget,
    student_prompts,
    teacher_logprobs,
)
from sdar.teacher_contexts import section_contexts, teacher_weight_kinds
from sdar.training.distributed import DataParallel


def sample_tasks(task_ids: list[str], step: int, count: int, seed: int) -> list[str]:
    """The B tasks of a step: walk a seeded permutation of the split, reshuffled every epoch (resume-safe)."""
    chosen = []
    for position in range(step * count, (step + 1) * count):
        epoch, index = divmod(position, len(task_ids))
        order = list(range(len(task_ids)))
        random.Random(seed * 100_003 + epoch).shuffle(order)
        chosen.append(task_ids[order[index]])
    return chosen


class RolloutSession:
    def __init__(
        self,
        config: Config,
        model,
        tokenizer,
        *,
        teacher_needed: bool,
        parallel: DataParallel | None = None,
        base_model=None,
    ):
        """base_model: a frozen copy of the initial model the caller already holds (the KL reference), which a
        `base` teacher then shares instead of copying the model again."""
        self.config = config
        self.parallel = parallel = parallel or DataParallel()
        self.model, self.tokenizer = model, tokenizer
        self.method = get_method(config.algorithm.method)
        self.env_spec = get_env_spec(config.env.name)
        teacher = config.teacher
        self.skill_library = library_name(self.env_spec, teacher.skill_library, teacher.skills_dir)
        self.contexts = section_contexts(teacher) if teacher_needed else ()
        # Each context's skill library; None: no privileged text (the student's own prompt).
        self.context_libraries = [
            library_name(self.env_spec, context.skill_library, context.skills_dir) if context.skills else None
            for context in self.contexts
        ]
        self.route_teachers = self._router() if teacher_needed and teacher.contexts else None
        self.context_logprobs: torch.Tensor | None = None  # [K, N, T] of the last teacher pass
        self.context_choice: torch.Tensor | None = None  # [N, T]: each token's context
        rollout, env = config.rollout, config.env
        self.pool = make_env_pool(
            env, num_slots=len(parallel.shard(list(range(rollout.tasks_per_step)))) * rollout.group_size
        )
        try:
            self.train_tasks = self.pool.task_ids(env.split)
        except (KeyError, ValueError, RuntimeError) as error:  # an unknown split or option; a worker's error
            self.pool.close()
            reason = error.args[0] if error.args else error
            raise ConfigError(f"env {env.name!r} cannot list env.split={env.split!r}: {reason}") from None
        if not self.train_tasks:
            self.pool.close()
            raise ConfigError(f"env.split={env.split!r}: env {env.name!r} has no tasks in that split")
        libraries = [self.skill_library] if self.method.student_sees_skills else []
        libraries = list(dict.fromkeys([*libraries, *filter(None, self.context_libraries)]))
        reserve = max(
            (
                skill_token_reserve(tokenizer, library, self.env_spec.task_types or None, teacher.placement)
                for library in libraries
            ),
            default=0,
        )
        student_prompt_budget(rollout.max_prompt_tokens, reserve)  # an over-long skill text fails here
        self.settings = RolloutSettings.from_config(config, prompt_budget_reserve=reserve)
        # One set of weights per kind the contexts score with (two `ema` contexts share one average).
        self.teachers = {
            kind: TeacherWeights(kind, model, base_model=base_model, ema_decay=teacher.ema_decay)
            for kind in (teacher_weight_kinds(teacher) if teacher_needed else ())
        }
        self.teacher = next(iter(self.teachers.values()), None)  # the first context's (the one teacher's)
        # Last: a vLLM engine takes the most time and memory to start, so what can fail fast fails first.
        try:
            with full_weights(model):  # an engine starts with the whole weights, also of a sharded model
                self.backend = make_backend(config, model, tokenizer)
        except BaseException:
            self.pool.close()
            raise

    def _router(self):
        """The method's way to learn from several teachers; ConfigError for a method without one."""
        if not self.method.routes_teachers:
            routing = ", ".join(name for name, method in METHODS.items() if method.routes_teachers)
            raise ConfigError(
                f"teacher.contexts routes each token to one of its teachers, but algorithm.method="
                f"{self.method.name!r} learns from one teacher's log-probs; methods whose distillation term "
                f"routes teachers: {routing}"
            )
        return DISTILL_TERMS[self.method.distill].route_teachers

    def _skills_for(self, task) -> str:
        return teacher_context(self.skill_library, task)

    def _teacher_skills_for(self, task) -> str:
        """The teachers' privileged contexts of `task`, for the viewer: each under its name when several."""
        if self.route_teachers is None:
            return self._skills_for(task)
        return "\n\n".join(
            f"[{context.name}]\n"
            + (teacher_context(library, task) if library else "(no privileged text: the student's prompt)")
            for context, library in zip(self.contexts, self.context_libraries, strict=True)
        )

    def rollout(self, step: int, *, seed: int) -> tuple[list[Episode], dict]:
        """Spec §5 steps 1-3: B sampled tasks x G episodes, rewards per row.

        Episodes that an env failure ended (engine crash, timeout) are left out of training: an engine fault
        is not the policy's failure. They are counted in `train/failed_episodes`.
        """
        rollout = self.config.rollout
        tasks = sample_tasks(self.train_tasks, step, rollout.tasks_per_step, self.config.seed)
        tasks = self.parallel.shard(tasks)  # data parallelism: this process's groups
        with self.sampling_weights():
            result = collect_episodes(
                self.pool,
                self.env_spec,
                self.backend,
                self.tokenizer,
                tasks,
                _with_seed(self.settings, seed),
                skills_for=self._skills_for if self.method.student_sees_skills else None,
            )
        self.backend.release_memory()  # a separate engine's memory is the update's until `after_update`
        stats = {f"train/{key}": value for key, value in result.stats.as_dict().items()}
        episodes = [episode for episode in result.episodes if not episode.error]
        if not episodes:  # nothing to learn from: a step of zeros would hide that the env is broken
            raise ActionableError(
                f"step {step + 1}: every episode ended in an env failure, the first with: "
                f"{result.episodes[0].error}; check the env's data (env.data_dir), engine and "
                f"env.step_timeout_s, e.g. with `sdar play {self.config.env.name}`"
            )
        return episodes, stats

    def teacher_logprobs(self, turns: list[Turn], batch: Batch) -> torch.Tensor:
        """Spec §5 step 5: teacher log-probs of the student's tokens, [N, T] like batch.response_mask; with
        `teacher.contexts`, those of the context each token is routed to (module docstring)."""
        scores: list[torch.Tensor | None] = [None] * len(self.contexts)
        for kind, weights in self.teachers.items():
            with weights.scoring_model() as model, full_weights(model):
                for index, context in enumerate(self.contexts):
                    if context.weights == kind:
                        scores[index] = self._score(model, self.context_libraries[index], turns, batch)
        if self.route_teachers is None:
            return scores[0]
        self.context_logprobs = torch.stack(scores)  # [K, N, T]
        routed, self.context_choice = self.route_teachers(self.context_logprobs)
        return routed

    def _score(self, model, library: str | None, turns: list[Turn], batch: Batch) -> torch.Tensor:
        """One context's log-probs [N, T]: under its library's skills, or the student's own prompt (None)."""
        teacher = self.config.teacher
        return teacher_logprobs(
            model,
            self.tokenizer,
            turns,
            env_name=library or self.skill_library,
            placement=teacher.placement,
            share_prefix=teacher.share_prefix,
            micro_batch_rows=self.config.trainer.micro_batch_rows,
            response_length=batch.response_mask.shape[1],
            prompts=None if library else student_prompts(turns),
        )

    def teacher_context_stats(self, batch: Batch) -> dict[str, float]:
        """Per context of `teacher.contexts`, over every process's response tokens of the last teacher pass:
        `distill/teacher_<name>/share`, the share routed to it, and `/gap_mean`, the mean of its log π_T −
        log π_old (batch.old_logprobs, so after the update where it gives π_old); {} with one teacher."""
        if self.context_logprobs is None:
            return {}
        routed, gap_sum, tokens = teacher_routing_totals(
            self.context_logprobs, self.context_choice, batch.old_logprobs, batch.response_mask
        )
        count = len(self.contexts)
        totals = self.parallel.sum([*routed.tolist(), *gap_sum.tolist(), float(tokens)])
        tokens = max(totals[-1], 1.0)
        stats = {}
        for index, context in enumerate(self.contexts):
            stats[f"distill/teacher_{context.name}/share"] = totals[index] / tokens
            stats[f"distill/teacher_{context.name}/gap_mean"] = totals[count + index] / tokens
        return stats

    def after_update(self) -> None:
        """After the optimizer step: the teachers' EMA weights move, and a separate generation engine (vLLM)
        takes the new weights. The teacher is only scored, never sampled, so no engine needs its weights."""
        for weights in self.teachers.values():
            weights.update()
        self.sync_weights()

    def sync_weights(self) -> None:
        """A separate generation engine (vLLM) takes the trainer model's current weights (collective for a
        sharded model: every process calls it)."""
        if not self.backend.runs_trainer_model:
            with full_weights(self.model):
                self.backend.load_weights(self.model)

    def sampling_weights(self):
        """The block in which the backend samples: a sharded trainer model sampled in this process is whole
        there (sdar/models/sharding.py); collective, so every process enters it. A no-op otherwise."""
        return full_weights(self.model) if self.backend.runs_trainer_model else contextlib.nullcontext()

    def samples(self, episodes: list[Episode], batch: Batch, settings, *, limit: int) -> list[dict]:
        """`sampled_episodes` of this step, with the teacher's skill context of each task."""
        skills_for = self._teacher_skills_for if self.teachers else None
        return sampled_episodes(
            episodes, batch, settings, limit=limit, decode=self.tokenizer.decode, skills_for=skills_for
        )

    def state(self) -> dict:
        """What resuming needs: each teacher weights' state (an EMA's shadow) by its kind."""
        return {"teachers": {kind: weights.state_dict() for kind, weights in self.teachers.items()}}

    def load_state(self, state: dict) -> None:
        if self.teacher is not None and state.get("teacher") is not None:  # a one-teacher checkpoint's form
            self.teacher.load_state_dict(state["teacher"])
        saved = state.get("teachers") or {}
        unknown = sorted(set(saved) - set(self.teachers)) if self.teachers else []
        if unknown:
            raise ValueError(
                f"the checkpoint holds teacher weights {unknown}; this run scores with {list(self.teachers)}"
            )
        for kind, weights in self.teachers.items():
            if kind in saved:
                weights.load_state_dict(saved[kind])

    def close(self) -> None:
        self.backend.close()
        self.pool.close()


def sampled_episodes(
    episodes: list[Episode],
    batch: Batch,
    settings: ObjectiveSettings,
    *,
    limit: int,
    decode: Callable[[list[int]], str],
    skills_for: Callable | None = None,
) -> list[dict]:
    """`limit` episodes for samples.jsonl, turn by turn: the first episode of every task, then the second of
    every task, and so on, in the order they were played. With a teacher, each reply token carries its gap
    Δ = teacher − old log-prob, and, for a gated distillation term whose gate reads the gap alone (SDAR's
    σ(βΔ)), the gate the update weighs it with (`ObjectiveSettings.gate_of_gap`; an entropy gate depends on
    the update's own forward pass, so it is not logged). `skills_for(task)`: the teacher's privileged
    context, shown on demand by `sdar view`."""
    first_rows = list(itertools.accumulate((len(episode.turns) for episode in episodes), initial=0))
    place, played = [], Counter()  # each episode's place among its task's episodes
    for episode in episodes:
        place.append(played[episode.group_index])
        played[episode.group_index] += 1
    chosen = sorted(sorted(range(len(episodes)), key=place.__getitem__)[:limit])
    samples = []
    for index in chosen:
        episode, row = episodes[index], first_rows[index]
        turns = []
        for turn in episode.turns:
            length = len(turn.response_ids)
            record = {
                "turn": turn.turn_index,
                "prompt": turn.prompt_text,
                "response": turn.response_text,
                "tokens": [decode([token]) for token in turn.response_ids],
                "action": turn.action,
                "observation": turn.observation_after,  # the env's reply to the action (viewer)
                "env_reward": turn.env_reward,
                "valid": turn.valid,
                "admissible": turn.admissible,
                "reward": turn.reward,
                "advantage": float(batch.advantages[row]) if batch.advantages is not None else None,
            }
            if batch.teacher_logprobs is not None:
                gap = batch.teacher_logprobs[row, :length] - batch.old_logprobs[row, :length]
                record["gap"] = [round(value, 4) for value in gap.tolist()]
                gate = settings.gate_of_gap(gap)
                if gate is not None:
                    record["gate"] = [round(value, 4) for value in gate.tolist()]
            turns.append(record)
            row += 1
        samples.append(
            {
                "task_id": episode.task.task_id,
                "task_type": episode.task.task_type,
                "goal": episode.task.goal,
                "skills": skills_for(episode.task) if skills_for is not None else None,
                "won": episode.won,
                "return": episode.episode_return,
                "error": episode.error,
                "turns": turns,
            }
        )
    return samples


def _with_seed(settings: RolloutSettings, seed: int) -> RolloutSettings:
    from dataclasses import replace

    return replace(settings, seed=seed)
