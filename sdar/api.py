"""The Python API: `sdar.train(...)` does what `sdar train` does and hands back the run.

    import sdar

    run = sdar.train("smoke", "algorithm.method=grpo", output="runs/grpo")
    run.run_dir                      # Path("runs/grpo"): config.yaml, metrics.jsonl, eval/, checkpoints/
    run.history[-1]["train/won_rate"]  # one metrics dict per step, as metrics.jsonl holds them
    run.evaluations["after"]          # the eval panel's summary.json after the last step

`config` is a preset name, a YAML path or a `sdar.config.Config`; `overrides` are dotted `section.field=value`
strings applied on top. The SFT warm start (`sft.warm_start`), the trainer with its progress display and the
run directory's lock and refusal rules are exactly the command's; `sdar train` prints `TrainResult`'s summary.
Heavy imports (torch, transformers) happen inside `train`, so `import sdar` stays light.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from sdar.config import (
    Config,
    from_dict,
    load_config,
    merge_overrides,
    preset_names,
    resolve,
    to_dict,
)
from sdar.errors import ConfigError


@dataclass(frozen=True)
class TrainResult:
    """What a training run leaves: where it is, its per-step metrics and its panel evaluations."""

    run_dir: Path
    history: list[dict]  # one metrics dict per step trained by this call (metrics.jsonl's lines)
    evaluations: dict = field(default_factory=dict)  # "before" / "after": the eval panel's summary.json
    is_main: bool = True  # False on the other processes of `accelerate launch` (process 0 logs and evaluates)


def config_from(config: str | Path | Config | None, overrides: tuple[str, ...] | list[str] = ()) -> Config:
    """A validated, resolved Config from a preset name, a YAML path or a Config, plus dotted overrides; the
    config's plugins imported (as `load_config` does for a file). The overrides apply to a Config's values as
    they stand: a `None` algorithm coefficient becomes the final method's default, a resolved one stays."""
    if not isinstance(config, Config):
        return load_config(None if config is None else str(config), list(overrides))
    if not overrides:
        from sdar.plugins import import_plugins

        import_plugins(config.plugins)
        return resolve(config)
    from sdar.plugins import anchor_plugin_paths, import_plugins

    rebuilt = from_dict(Config, merge_overrides(to_dict(config), list(overrides)))
    rebuilt = dataclasses.replace(rebuilt, plugins=tuple(anchor_plugin_paths(rebuilt.plugins, Path.cwd())))
    import_plugins(rebuilt.plugins)
    return resolve(rebuilt)


def default_run_dir(config: Config, name: str) -> Path:
    """output_dir/<name>-<method>-<YYYYmmdd-HHMMSS>: where a run goes when no output is given."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(config.output_dir) / f"{name}-{config.algorithm.method}-{stamp}"


def train(
    config: str | Path | Config | None = None,
    *overrides: str,
    output: str | Path | None = None,
    resume: str | Path | None = None,
) -> TrainResult:
    """Train with the configured method (docs/method.md §5) into a run directory and return the run.

    config: a preset name, a YAML path or a Config (None with `resume`); overrides: `section.field=value`.
    output: the run directory (default: `output_dir/<config name>-<method>-<time>`; "run" names a Config).
    resume: a run directory to continue (a killed or finished run): its saved config.yaml plus `overrides`;
    `config` and `output` must then be None. Raises ConfigError for a bad config or run directory.
    """
    from sdar.training.distributed import DataParallel
    from sdar.training.logging import check_wandb, logging_note
    from sdar.training.progress import TrainingProgress
    from sdar.training.trainer import Trainer

    if resume is not None:
        if config is not None or output is not None:
            raise ConfigError(
                "resume continues a run with its own config and directory: give no config or output"
            )
        run_dir = Path(resume)
        if not (run_dir / "config.yaml").exists():
            raise ConfigError(f"--resume {run_dir}: no config.yaml there; is it a run directory?")
        config = load_config(str(run_dir / "config.yaml"), list(overrides))
    else:
        if config is None:
            raise ConfigError(
                f"sdar train needs a CONFIG (a preset: {', '.join(preset_names())}, or a YAML file)"
            )
        name = "run" if isinstance(config, Config) else Path(config).stem
        config = config_from(config, overrides)
        run_dir = Path(output) if output else default_run_dir(config, name)
    parallel = DataParallel.from_environment()
    run_dir = Path(parallel.gather(str(run_dir))[0])  # one directory, named by process 0
    if resume is None:
        from sdar.models.vllm_backend import check_installed
        from sdar.training.checkpoint import refuse_a_used_run_dir
        from sdar.training.sft import with_warm_start

        refuse_a_used_run_dir(run_dir)  # before a warm start that may take a while to train
        check_wandb(config.trainer.wandb_project)  # likewise
        check_installed(config.rollout.backend)

        if parallel.is_main:  # process 0 trains (or finds) the cached warm start; the others then load it
            config = with_warm_start(config)
        parallel.barrier()
        if not parallel.is_main:
            config = with_warm_start(config)
    trainer = Trainer(config, run_dir, resume=resume is not None, parallel=parallel)
    try:
        if parallel.is_main:
            print(logging_note(config.trainer, run_dir), file=sys.stderr)
            with TrainingProgress(config.trainer.steps, trainer.start_step) as progress:
                trainer.progress = progress
                history = trainer.train()
        else:
            history = trainer.train()
    finally:
        trainer.close()
        parallel.close()
    return TrainResult(run_dir, history, dict(trainer.evaluations), is_main=parallel.is_main)
