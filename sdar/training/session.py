"""What a training run holds besides the optimiser: env workers, the generation backend, the task sampler,
the teacher's weights, and the fixed validation panel. The trainer calls it once per line of spec §5."""

from __future__ import annotations

import contextlib
import itertools
import random
from collections import Counter
from collections.abc import Callable

import torch

from sdar.algorithms import ObjectiveSettings, get_method
from sdar.config import Config
from sdar.envs import get_env_spec
from sdar.envs.executors import make_env_pool
from sdar.errors import ActionableError, ConfigError
from sdar.models.backends import make_backend
from sdar.models.sharding import full_weights
from sdar.records import Batch, Episode, Turn
from sdar.rollout.engine import RolloutSettings, collect_episodes
from sdar.skills import library_name, teacher_context
from sdar.teacher import TeacherWeights, skill_token_reserve, student_prompt_budget, teacher_logprobs
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
        uses_skills = teacher_needed or self.method.student_sees_skills
        reserve = (
            skill_token_reserve(
                tokenizer, self.skill_library, self.env_spec.task_types or None, config.teacher.placement
            )
            if uses_skills
            else 0
        )
        student_prompt_budget(rollout.max_prompt_tokens, reserve)  # an over-long skill text fails here
        self.settings = RolloutSettings.from_config(config, prompt_budget_reserve=reserve)
        self.teacher = None
        if teacher_needed:
            self.teacher = TeacherWeights.from_config(config.teacher, model, base_model=base_model)
        # Last: a vLLM engine takes the most time and memory to start, so what can fail fast fails first.
        try:
            with full_weights(model):  # an engine starts with the whole weights, also of a sharded model
                self.backend = make_backend(config, model, tokenizer)
        except BaseException:
            self.pool.close()
            raise

    def _skills_for(self, task) -> str:
        return teacher_context(self.skill_library, task)

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
        """Spec §5 step 5: teacher log-probs of the student's tokens, [N, T] like batch.response_mask."""
        teacher = self.config.teacher
        with self.teacher.scoring_model() as model, full_weights(model):
            return teacher_logprobs(
                model,
                self.tokenizer,
                turns,
                env_name=self.skill_library,
                placement=teacher.placement,
                share_prefix=teacher.share_prefix,
                micro_batch_rows=self.config.trainer.micro_batch_rows,
                response_length=batch.response_mask.shape[1],
            )

    def after_update(self) -> None:
        """After the optimizer step: the teacher's EMA weights move, and a separate generation engine (vLLM)
        takes the new weights. The teacher is only scored, never sampled, so no engine needs its weights."""
        if self.teacher is not None:
            self.teacher.update()
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
        skills_for = self._skills_for if self.teacher is not None else None
        return sampled_episodes(
            episodes, batch, settings, limit=limit, decode=self.tokenizer.decode, skills_for=skills_for
        )

    def state(self) -> dict:
        return {"teacher": self.teacher.state_dict() if self.teacher is not None else None}

    def load_state(self, state: dict) -> None:
        if self.teacher is not None and state.get("teacher") is not None:
            self.teacher.load_state_dict(state["teacher"])

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
