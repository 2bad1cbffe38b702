"""Run configuration: frozen dataclasses, the only home of defaults.

`Config` holds the top-level fields and one section per part of a run: model, env, rollout, algorithm and
teacher (`sdar.config_sections`), trainer, sft and eval (`sdar.config_training`); every field states its
meaning and allowed values in its metadata (`sdar.config_fields`, docs/configuration.md). A config is built
from a preset name or a YAML file, then dotted `section.field=value` overrides (`sdar.config_files`), and is
validated when constructed: a bad field raises `ConfigError` naming the field, the bad value and what is
allowed. A field's choices that name registry entries (methods, gates, advantage estimators, ...) are read
from that registry. `None` in an algorithm field means "the method's default" (see `sdar.algorithms.methods`),
in env.max_turns "the env's turn limit" (its registry entry); `resolve()` fills those in so a saved config
states every value the run used.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from sdar.config_fields import ValidatedSection, setting
from sdar.config_files import from_dict, merge_overrides, parse_override, preset_names, read_source, to_dict
from sdar.config_sections import (
    AlgorithmConfig,
    EnvConfig,
    ModelConfig,
    RolloutConfig,
    TeacherConfig,
    VLLMConfig,
)
from sdar.config_training import EvalConfig, SFTConfig, TrainerConfig
from sdar.errors import ConfigError
from sdar.plugins import anchor_plugin_paths, import_plugins
from sdar.teacher_contexts import teacher_contexts

# The names a caller imports from here: the config, its sections, and building, resolving and saving one.
__all__ = [
    "AlgorithmConfig",
    "Config",
    "EnvConfig",
    "EvalConfig",
    "ModelConfig",
    "RolloutConfig",
    "SFTConfig",
    "TeacherConfig",
    "TrainerConfig",
    "VLLMConfig",
    "check_rollout_correction",
    "from_dict",
    "load_config",
    "merge_overrides",
    "parse_override",
    "preset_names",
    "read_source",
    "resolve",
    "save_config",
    "to_dict",
]


@dataclass(frozen=True)
class Config(ValidatedSection):
    _section = "config"
    seed: int = setting(
        0, "the run's seed: LoRA initialisation, task draws, sampling and mini-batch order derive from it"
    )
    output_dir: str = setting("runs", "the folder in which each run and evaluation gets its own directory")
    plugins: tuple = setting(
        (),
        "modules or .py files imported before the config resolves, registering your own envs and skill "
        "libraries (sdar/plugins.py)",
    )
    model: ModelConfig = field(default_factory=ModelConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_rollout_correction(self)
        check_eval_teacher_context(self)  # also checks every teacher context, by its name


def check_eval_teacher_context(config: Config) -> None:
    """A policy that reads the teacher's skills (eval.student_skills) under several teachers reads those of
    one named context (eval.teacher_context), which has skills to read."""
    evaluation, contexts = config.eval, {c.name: c for c in teacher_contexts(config.teacher)}
    named = evaluation.teacher_context
    if not named:
        if evaluation.student_skills and contexts:
            raise ConfigError(
                "eval.student_skills=true with several teachers (teacher.contexts): name the one whose "
                f"skills the policy reads, eval.teacher_context=NAME (one of: {', '.join(contexts)})"
            )
        return
    if not evaluation.student_skills:
        raise ConfigError(
            f"eval.teacher_context={named!r} names whose skills the policy reads, which it does only with "
            "eval.student_skills=true: set it, or leave eval.teacher_context empty"
        )
    if named not in contexts:
        known = f"one of: {', '.join(contexts)}" if contexts else "teacher.contexts names none"
        raise ConfigError(f"eval.teacher_context={named!r} is not a context of teacher.contexts ({known})")
    if not contexts[named].skills:
        raise ConfigError(
            f"eval.teacher_context={named!r}: that context reads no skills (skills: false); name one that "
            "does"
        )


def check_rollout_correction(config: Config) -> None:
    """TIS compares pi_old with the sampler's log-probs, which are those of the temperature-scaled and
    nucleus-filtered distribution: away from temperature 1 and top_p 1 their ratio measures that deliberate
    change, not a mismatch, so `tis` is refused there."""
    rollout = config.rollout
    if config.algorithm.rollout_correction == "tis" and (rollout.temperature != 1.0 or rollout.top_p < 1.0):
        raise ConfigError(
            f"algorithm.rollout_correction='tis' needs rollout.temperature=1 and rollout.top_p=1 (got "
            f"rollout.temperature={rollout.temperature}, rollout.top_p={rollout.top_p}): the sampler's "
            "log-probs are those of the temperature-scaled, nucleus-filtered distribution, so the TIS ratio "
            "would weigh that change, not the sampler-trainer mismatch. Sample at temperature 1 and top_p 1, "
            "or set algorithm.rollout_correction=none"
        )


def load_config(source: str | None = None, overrides: list[str] | tuple = ()) -> Config:
    """Preset name / YAML path (or None: the defaults) + dotted overrides -> a validated, resolved Config,
    with its plugins imported."""
    data = read_source(source) if source else {}
    data = merge_overrides(data, list(overrides))
    config = from_dict(Config, data)
    # files named in an override are relative to the working directory (those of YAML files already absolute)
    config = dataclasses.replace(config, plugins=tuple(anchor_plugin_paths(config.plugins, Path.cwd())))
    import_plugins(config.plugins)
    return resolve(config)


def resolve(config: Config) -> Config:
    """Fill every `None` algorithm field with the chosen method's default (`AlgorithmConfig.resolved`), and an
    unset env.max_turns with the env's turn limit (`EnvConfig.resolved`)."""
    return dataclasses.replace(config, env=config.env.resolved(), algorithm=config.algorithm.resolved())


def save_config(config: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
