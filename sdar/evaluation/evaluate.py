"""`evaluate(config, output_dir=..., checkpoint=...)`: one policy on a fixed panel over seeds
(docs/method.md §7, §5.9).

Policies (`eval.policy`):
- model: `config.model`, plus a checkpoint's trained weights, plays one episode per task per seed through the
  training rollout loop (`collect_episodes`, G = 1, temperature `eval.temperature` (0 = greedy), top-p and
  token limits of `rollout`, seed = the eval seed) on at most B x G env slots at a time (B x G =
  rollout.tasks_per_step x rollout.group_size, the batch the trainer already fits in memory): the settings,
  chunking and per-turn seeds of `RolloutSession.validate`, except that no room is reserved in the prompt
  for teacher skills and the student sees skills only with `eval.student_skills` (the Skill-Prompt
  baseline; Skill-GRPO is reported without skills, docs/method.md §3);
- expert: the env's expert (ALFWorld: the PDDL planner): an upper bound, and a check that the panel is
  solvable; like every env call it gets `env.step_timeout_s` (ALFWorld's planner can take minutes on a few
  games before its plan is cached: raise it there, e.g. env.step_timeout_s=600);
- random: uniform over the admissible actions; each episode has its own stream seeded by (eval seed, task),
  so results do not depend on worker or slot counts;
- no_search (Search-QA): the closed-book baseline, answering at once without retrieval.
An env's own policy (`EnvSpec.policies`, e.g. no_search) on another env, or an `env.max_turns` below the env's
shortest won episode (`EnvSpec.min_turns`), is refused before anything is loaded.
Expert and greedy-model play ignore the seed: they are played once and stand for every seed (std 0), which
the summary records as `seed_independent`.

Writes `summary.json` (rates, per-seed and per-task-type success, panel fingerprint, resolved config) and
`episodes.jsonl` (one line per episode: seed, task id, type, won, turns, actions; replies for the model).
While it plays, `evaluate` journals each finished chunk of episodes (`sdar.evaluation.journal`): a killed
evaluation rerun with the same output directory plays only what is left, with the same results, and a
second evaluation into a directory that one is writing into is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable
from pathlib import Path

from sdar.config import Config, load_config, to_dict
from sdar.envs import ENVS, get_env_spec, make_env
from sdar.envs.executors import make_env_pool
from sdar.envs.policies import ExpertPolicy, RandomAdmissiblePolicy, run_episodes
from sdar.envs.pool import EnvPool
from sdar.errors import ActionableError, ConfigError
from sdar.evaluation.journal import Journal, resume_key
from sdar.evaluation.panels import Panel, build_panel, portable_task_id
from sdar.evaluation.summary import EpisodeRecord, print_summary, summarize, write_results
from sdar.models.trained import WEIGHTS, latest_checkpoint, load_trainable_weights

WEIGHT_FIELDS = ("name", "lora_rank", "lora_alpha", "lora_target_modules")  # model fields a checkpoint fixes
UNKNOWN_TYPE = "unknown"  # the type of an episode whose reset failed


# ---- policies ----------------------------------------------------------------------------------------------
def episode_seed(seed: int, task_id: str) -> int:
    """The random stream of one episode: a hash of (eval seed, portable task id)."""
    digest = hashlib.sha256(f"{seed}/{portable_task_id(task_id)}".encode()).hexdigest()
    return int(digest[:15], 16)


class PerEpisodeRandomPolicy:
    """RandomAdmissiblePolicy with one stream per task (`episode_seed`): independent of the call order."""

    needs_expert = False

    def __init__(self, seed: int):
        self.seed = seed
        self._streams: dict[str, RandomAdmissiblePolicy] = {}

    def act(self, task, step_result, history) -> str:
        if task.task_id not in self._streams:
            self._streams[task.task_id] = RandomAdmissiblePolicy(episode_seed(self.seed, task.task_id))
        return self._streams[task.task_id].act(task, step_result, history)


def play_scripted(pool: EnvPool, policy: str, panel: Panel, seed: int, max_turns: int, timeout_s: float):
    """One episode per panel task with the expert, the seeded random or the no-search policy."""
    if policy == "expert":
        player = ExpertPolicy()
    elif policy == "no_search":  # Search-QA's closed-book baseline: answers at once, never retrieves
        from sdar.envs.search_qa.policies import NoSearchPolicy

        player = NoSearchPolicy()
    else:
        player = PerEpisodeRandomPolicy(seed)
    outcomes = run_episodes(pool, player, panel.task_ids, max_turns=max_turns, timeout_s=timeout_s)
    return [
        EpisodeRecord(
            seed=seed,
            task_id=task_id,
            task_type=outcome.task.task_type or UNKNOWN_TYPE,
            won=bool(outcome.won),
            turns=outcome.steps,
            actions=list(outcome.actions),
            error=outcome.error or "",
            metrics=dict(outcome.metrics),
        )
        for task_id, outcome in zip(panel.task_ids, outcomes, strict=True)
    ]


def model_slots(panel_size: int, tasks_per_step: int, group_size: int) -> int:
    """Env slots of a model evaluation (one training step's B x G, at most the panel): its wave size."""
    return min(panel_size, tasks_per_step * group_size)


def play_model(
    pool,
    env_spec,
    backend,
    tokenizer,
    panel: Panel,
    settings,
    seed: int,
    on_turn=None,
    skills_for=None,
    skills_prompt=None,
    journal: Journal | None = None,
):
    """One episode per panel task with the model, in chunks of the pool's slot count. `skills_for`: skills in
    the student's prompt (`eval.student_skills`; the trainer's validation of Skill-GRPO); `skills_prompt`:
    how they enter it when not as the student's section (collect_episodes). `journal`: chunks it holds are
    taken from it, chunks played are added to it."""
    from sdar.rollout.engine import collect_episodes

    records = []
    settings = dataclasses.replace(settings, seed=seed)
    for begin in range(0, len(panel.task_ids), pool.num_slots):
        chunk = list(panel.task_ids[begin : begin + pool.num_slots])
        unit = f"seed {seed}, tasks {begin + 1}-{begin + len(chunk)} of {len(panel.task_ids)}"
        if journal is not None and (played := journal.played(unit)) is not None:
            records += played
            continue
        played = []
        report = None if on_turn is None else (lambda turn, active, b=begin: on_turn(b, turn, active))
        rollout = collect_episodes(
            pool,
            env_spec,
            backend,
            tokenizer,
            chunk,
            settings,
            on_turn=report,
            skills_for=skills_for,
            skills_prompt=skills_prompt,
        )
        for task_id, episode in zip(chunk, rollout.episodes, strict=True):
            admissible = [turn.admissible for turn in episode.turns]
            played.append(
                EpisodeRecord(
                    seed=seed,
                    task_id=task_id,
                    task_type=episode.task.task_type or UNKNOWN_TYPE,
                    won=bool(episode.won),
                    turns=len(episode.turns),
                    actions=[turn.action for turn in episode.turns],
                    error=episode.error,
                    valid=[turn.valid for turn in episode.turns],
                    admissible=admissible if None not in admissible else None,
                    replies=[turn.response_text for turn in episode.turns],
                    first_prompt=episode.turns[0].prompt_text if episode.turns else None,
                    observations=[turn.observation_after for turn in episode.turns],
                    metrics=dict(episode.metrics),
                )
            )
        if journal is not None and not every_reset_failed(played):  # a rerun plays them again
            journal.add(unit, played)
        records += played
    return records


def every_reset_failed(records: list[EpisodeRecord]) -> bool:
    """Did every episode fail before its first turn (the env could not load any task: data, engine)?"""
    return bool(records) and all(record.error and not record.turns for record in records)


def stop_if_every_reset_failed(records: list[EpisodeRecord], panel: Panel) -> None:
    """A panel with no task reset measured nothing: stop with the first error, not with a 0 % table."""
    if every_reset_failed(records):
        raise ActionableError(
            f"every episode of {panel.name} ({len(records)}) failed at reset, the first with: "
            f"{records[0].error}; check the env's data (env.data_dir) and engine, e.g. with `sdar play`"
        )


# ---- checkpoints -------------------------------------------------------------------------------------------
def resolve_checkpoint(path: str | Path) -> Path:
    """A run directory (its checkpoints/latest) or a checkpoint directory -> the checkpoint directory."""
    path = Path(path)
    if (path / WEIGHTS).is_file():
        return path
    if (path / "checkpoints").is_dir():
        found = latest_checkpoint(path)
        if found is None:
            raise FileNotFoundError(f"--checkpoint {path}: the run has no complete checkpoint yet")
        return found
    raise FileNotFoundError(
        f"--checkpoint {path}: neither a run directory (with checkpoints/latest) nor a checkpoint "
        f"directory (with {WEIGHTS})"
    )


def checkpoint_run_config(checkpoint: Path) -> Config | None:
    """The config.yaml of the run that wrote `checkpoint` (run/checkpoints/step_N), if it is there."""
    path = checkpoint.parent.parent / "config.yaml"
    return load_config(str(path)) if path.is_file() else None


def check_model_matches(config: Config, checkpoint: Path) -> None:
    """The eval model must be built like the trained one (same base model and LoRA shape)."""
    trained = checkpoint_run_config(checkpoint)
    if trained is None:
        return
    differences = [
        f"model.{name}={getattr(trained.model, name)!r} (eval config: {getattr(config.model, name)!r})"
        for name in WEIGHT_FIELDS
        if getattr(trained.model, name) != getattr(config.model, name)
    ]
    if differences:
        raise ConfigError(
            f"checkpoint {checkpoint} was trained with {', '.join(differences)}; evaluate with the run's "
            f"config (sdar eval {checkpoint.parent.parent / 'config.yaml'} ...) or override those fields"
        )


def checkpoint_step(checkpoint: Path) -> int | None:
    prefix, _, number = checkpoint.name.partition("_")
    return int(number) if prefix == "step" and number.isdigit() else None


# ---- the evaluation ----------------------------------------------------------------------------------------
def _seeds(values) -> list[int]:
    seeds = list(values)
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ConfigError(f"eval.seeds={seeds!r} must be a non-empty list of integers, e.g. [0, 1, 2]")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"eval.seeds={seeds!r} repeats a seed")
    return seeds


def check_playable(config: Config) -> None:
    """Refuse an evaluation that cannot score: another env's own policy (`EnvSpec.policies`), or an
    env.max_turns below the env's shortest won episode (`EnvSpec.min_turns`)."""
    spec, policy = get_env_spec(config.env.name), config.eval.policy
    owners = sorted(name for name, other in ENVS.items() if policy in other.policies)
    if owners and policy not in spec.policies:
        choices = next(f.metadata["choices"] for f in dataclasses.fields(config.eval) if f.name == "policy")
        usable = [p for p in choices if p in spec.policies or not any(p in s.policies for s in ENVS.values())]
        raise ConfigError(
            f"eval.policy={policy} works only on env {', '.join(owners)}, not on {spec.name!r}; "
            f"choose one of: {', '.join(usable)}"
        )
    if config.env.max_turns < spec.min_turns:
        raise ConfigError(
            f"env.max_turns={config.env.max_turns} is below {spec.min_turns}, the fewest turns in which a "
            f"{spec.name!r} task can be won, so no episode could be won; set env.max_turns={spec.min_turns} "
            "or more"
        )


def _student_skills(config: Config):
    """task -> the routed skill text the teacher would see, for the student's own prompt: the teacher
    section's, or under several teachers that of the context eval.teacher_context names."""
    from sdar.skills import library_name, teacher_context
    from sdar.teacher_contexts import teacher_contexts

    teacher = config.teacher
    named = [c for c in teacher_contexts(teacher) if c.name == config.eval.teacher_context]
    source = named[0] if named else teacher  # both have skill_library and skills_dir
    library = library_name(get_env_spec(config.env.name), source.skill_library, source.skills_dir)
    return lambda task: teacher_context(library, task)


def _as_the_teacher_sees_them(config: Config, tokenizer):
    """(skills, user message) -> the teacher's prompt ids (teacher.placement): the teacher as the policy."""
    from sdar.rollout.engine import chat_prompt_ids
    from sdar.teacher.prompts import teacher_prompt_of

    placement = config.teacher.placement
    return lambda skills, message: (
        teacher_prompt_of(
            tokenizer, chat_prompt_ids(tokenizer, message), message, skills, placement
        ).prompt_ids
    )


def _model_settings(config: Config):
    from sdar.rollout.engine import RolloutSettings

    settings = RolloutSettings.from_config(config)
    return dataclasses.replace(settings, group_size=1, temperature=config.eval.temperature)


def evaluate(
    config: Config,
    *,
    output_dir: str | Path,
    checkpoint: str | Path | None = None,
    device=None,
    on_progress: Callable[[str], None] | None = None,
) -> dict:
    """Play `config.eval.policy` on the panel, once per seed; write summary.json + episodes.jsonl; return the
    summary. device (model policy): None = "cuda" when available, else the CPU. on_progress(text) receives
    short status lines."""
    started = time.perf_counter()
    evaluation, env = config.eval, config.env
    seeds = _seeds(evaluation.seeds)
    check_playable(config)
    checkpoint_dir = resolve_checkpoint(checkpoint) if checkpoint is not None else None
    if checkpoint_dir is not None:
        if evaluation.policy != "model":
            raise ConfigError(f"a checkpoint is only used by eval.policy=model, not {evaluation.policy!r}")
        check_model_matches(config, checkpoint_dir)

    lister = make_env(env)  # list the panel before loading a model or spawning workers: fail fast
    try:
        panel = build_panel(
            lister.task_ids, env.name, evaluation.split, evaluation.num_tasks, evaluation.spread
        )
    finally:
        lister.close()
    checkpoint_info = None
    if checkpoint_dir is not None:
        checkpoint_info = {
            "path": checkpoint_dir.resolve().as_posix(),
            "step": checkpoint_step(checkpoint_dir),
        }
    key = resume_key(config, panel, checkpoint_info)
    with Journal(output_dir, key) as journal:  # before the model: fail fast; holds --output's lock
        if journal.episodes and on_progress is not None:
            on_progress(f"resuming: {journal.episodes} episode(s) already played ({journal.path})")

        backend = tokenizer = None
        if evaluation.policy == "model":
            import torch

            from sdar.models import load_model
            from sdar.models.backends import make_backend

            if device is None and torch.cuda.is_available():
                device = "cuda"
            model, tokenizer = load_model(config.model, device=device)
            if checkpoint_dir is not None:
                load_trainable_weights(checkpoint_dir, model)
            model.eval()
            backend = make_backend(config, model, tokenizer)
            slots = model_slots(len(panel.task_ids), config.rollout.tasks_per_step, config.rollout.group_size)
        else:
            slots = min(len(panel.task_ids), max(env.workers, 1))
        loaded = time.perf_counter()
        try:
            with make_env_pool(env, slots) as pool:
                records = play_panel(config, pool, panel, seeds, backend, tokenizer, on_progress, journal)
        finally:
            if backend is not None:
                backend.close()
        summary = summary_of(config, records, seeds, panel, checkpoint_info, started, loaded)
        write_results(output_dir, summary, records)
        journal.close()
    return summary


def evaluate_loaded(
    config: Config,
    pool: EnvPool,
    backend,
    tokenizer,
    *,
    output_dir: str | Path,
    checkpoint: dict | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> dict:
    """`evaluate` of the model policy with a model already loaded (`backend`) and an open pool of B x G
    slots: what the trainer runs before its first and after its last step. It plays exactly what
    `sdar eval --checkpoint` plays on the saved weights. `checkpoint` = {"path", "step"} for the summary."""
    started = time.perf_counter()
    seeds = _seeds(config.eval.seeds)
    evaluation = config.eval
    panel = build_panel(
        pool.task_ids, config.env.name, evaluation.split, evaluation.num_tasks, evaluation.spread
    )
    records = play_panel(config, pool, panel, seeds, backend, tokenizer, on_progress)
    summary = summary_of(config, records, seeds, panel, checkpoint, started, started)
    write_results(output_dir, summary, records)
    return summary


def _seed_independent(evaluation) -> bool:
    scripted = evaluation.policy in ("expert", "no_search")  # deterministic: one seed stands for all
    return scripted or (evaluation.policy == "model" and evaluation.temperature == 0)


def play_panel(
    config: Config, pool, panel, seeds, backend=None, tokenizer=None, on_progress=None, journal=None
):
    """Every seed's episode records; a seed-independent policy is played once and stands for every seed.
    `journal`: units it holds are not played again, units played are added to it."""
    evaluation, env = config.eval, config.env
    say = on_progress or (lambda text: None)
    env_spec = get_env_spec(env.name)
    records: list[EpisodeRecord] = []
    for seed in seeds[:1] if _seed_independent(evaluation) else seeds:
        say(f"seed {seed}: {evaluation.policy} on {panel.name} ({len(panel.task_ids)} tasks)")
        if evaluation.policy == "model":

            def on_turn(first: int, turn: int, active: int, seed=seed) -> None:
                total = len(panel.task_ids)
                say(f"seed {seed}: tasks {first + 1}.. of {total}, turn {turn + 1}, {active} active")

            settings = _model_settings(config)
            skills_for = _student_skills(config) if evaluation.student_skills else None
            as_teacher = evaluation.student_skills and evaluation.skills_placement == "teacher"
            records += play_model(
                pool,
                env_spec,
                backend,
                tokenizer,
                panel,
                settings,
                seed,
                on_turn,
                skills_for=skills_for,
                skills_prompt=_as_the_teacher_sees_them(config, tokenizer) if as_teacher else None,
                journal=journal,
            )
        elif journal is not None and (played := journal.played(f"seed {seed}")) is not None:
            records += played
        else:
            played = play_scripted(pool, evaluation.policy, panel, seed, env.max_turns, env.step_timeout_s)
            if journal is not None and not every_reset_failed(played):  # a rerun plays them again
                journal.add(f"seed {seed}", played)
            records += played
    stop_if_every_reset_failed(records, panel)
    if _seed_independent(evaluation):  # the same episodes stand for every seed
        records = [dataclasses.replace(r, seed=seed) for seed in seeds for r in records]
    return records


def summary_of(config: Config, records, seeds, panel, checkpoint, started: float, loaded: float) -> dict:
    """`summarize` plus what was evaluated and how long it took."""
    evaluation = config.eval
    spec = get_env_spec(config.env.name)
    summary = summarize(records, seeds, panel, spec.task_types, spec.average)
    now = time.perf_counter()
    summary.update(
        policy=evaluation.policy,
        seed_independent=_seed_independent(evaluation),
        temperature=evaluation.temperature if evaluation.policy == "model" else None,
        model=config.model.name if evaluation.policy == "model" else None,
        checkpoint=checkpoint,
        config=to_dict(config),
        timing={
            "total_s": round(now - started, 3),
            "load_s": round(loaded - started, 3),
            "play_s": round(now - loaded, 3),
        },
    )
    return summary


__all__ = [
    "EpisodeRecord",
    "PerEpisodeRandomPolicy",
    "evaluate",
    "evaluate_loaded",
    "load_trainable_weights",
    "print_summary",
    "resolve_checkpoint",
    "summarize",
]
