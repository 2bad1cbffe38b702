"""Run logging: one JSON line per step in metrics.jsonl, sample episodes in samples.jsonl, optional
TensorBoard (if the `tensorboard` package is installed) and wandb (if enabled and installed)."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import time
import warnings
from contextlib import contextmanager
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path

from sdar.errors import ActionableError

WANDB_INSTALL = "pip install wandb"
TENSORBOARD_INSTALL = "pip install tensorboard (or sdar[plots])"


def check_wandb(project: str) -> None:
    """`trainer.wandb_project` needs the wandb package: checked at start-up, before a model loads."""
    if project and find_spec("wandb") is None:
        raise ActionableError(
            f"trainer.wandb_project={project!r} but wandb is not installed: {WANDB_INSTALL}, "
            "or set trainer.wandb_project='' to log without wandb"
        )


def tensorboard_state(enabled: bool) -> str:
    """What `trainer.tensorboard` does here: "on", "off" (the config), or "missing" (package absent)."""
    if not enabled:
        return "off"
    return "on" if find_spec("tensorboard") is not None else "missing"


def logging_note(trainer, run_dir: Path) -> str:
    """One start-up line: where the run's metrics go besides metrics.jsonl (TensorBoard, wandb)."""
    state = tensorboard_state(trainer.tensorboard)
    if state == "on":
        tensorboard = f"TensorBoard events in {Path(run_dir) / 'tensorboard'}"
    elif state == "off":
        tensorboard = "TensorBoard off (trainer.tensorboard=false)"
    else:
        tensorboard = f"TensorBoard not written: the tensorboard package is missing: {TENSORBOARD_INSTALL}"
    wandb = f"wandb project {trainer.wandb_project!r}" if trainer.wandb_project else "wandb off"
    return f"logging: {Path(run_dir) / 'metrics.jsonl'}; {tensorboard}; {wandb}"


class StepTimer:
    """Named wall-clock timers for one step: `with timer("rollout"): ...` -> {"time/rollout_s": ...}.
    `on_start(name)` is told each timer's start (the progress display names the phase)."""

    def __init__(self, on_start=None) -> None:
        self.seconds: dict[str, float] = {}
        self.on_start = on_start

    @contextmanager
    def __call__(self, name: str):
        if self.on_start is not None:
            self.on_start(name)
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[f"time/{name}_s"] = self.seconds.get(f"time/{name}_s", 0.0) + (
                time.perf_counter() - started
            )


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf; keep the fact visible
    return value


def _step_of(line: str) -> float:
    """The step of a JSON line; a torn line (the run was killed while writing it) counts as after any step."""
    try:
        return json.loads(line)["step"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return math.inf


class RunLogger:
    def __init__(self, run_dir: Path, *, tensorboard: bool = True, wandb_project: str = "", config: dict):
        self.run_dir = Path(run_dir)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.samples_path = self.run_dir / "samples.jsonl"
        self._tensorboard = self._open_tensorboard() if tensorboard else None
        self._wandb = None
        if wandb_project:
            check_wandb(wandb_project)
            import wandb

            self._wandb = wandb.init(project=wandb_project, config=config, dir=str(self.run_dir))

    def _open_tensorboard(self, purge_step: int | None = None):
        """A SummaryWriter on RUN/tensorboard, or None when the `tensorboard` package is not installed.
        purge_step: TensorBoard hides the events of this step and later ones already in the files (a resumed
        run rewrites them), so resumed curves have no duplicate points."""
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return None
        return SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=purge_step)

    def truncate_after(self, step: int) -> None:
        """On resume: drop lines (and TensorBoard events) of steps after the checkpoint: they will be
        recomputed identically."""
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = self._open_tensorboard(purge_step=step + 1)
        for path in (self.metrics_path, self.samples_path):
            if not path.exists():
                continue
            kept = [line for line in path.read_text().splitlines() if _step_of(line) <= step]
            # Rewritten beside and renamed: a kill during the rewrite must not lose the kept lines.
            staging = path.with_name(f".{path.name}.tmp")
            staging.write_text("".join(line + "\n" for line in kept))
            os.replace(staging, path)

    def log_step(self, metrics: dict) -> None:
        line = json.dumps({key: _finite(value) for key, value in metrics.items()})
        with open(self.metrics_path, "a") as handle:
            handle.write(line + "\n")
        step = metrics["step"]
        if self._tensorboard is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and key != "step":
                    self._tensorboard.add_scalar(key, value, step)
            self._tensorboard.flush()
        if self._wandb is not None:
            self._wandb.log({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, step=step)

    def log_samples(self, step: int, samples: list[dict]) -> None:
        with open(self.samples_path, "a") as handle:
            for sample in samples:
                handle.write(json.dumps({"step": step, **sample}) + "\n")

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()
        if self._wandb is not None:
            self._wandb.finish()


class NullLogger:
    """The logger of a data-parallel process other than process 0: it writes nothing."""

    def truncate_after(self, step: int) -> None: ...

    def log_step(self, metrics: dict) -> None: ...

    def log_samples(self, step: int, samples: list[dict]) -> None: ...

    def close(self) -> None: ...


# ---- run_info.json: what ran, so that it can be rerun exactly ----------------------------------------------
def sdar_version() -> str:
    """The installed sdar's version, from its distribution metadata: `import sdar` here would import the
    public facade (sdar.api), which imports the trainer that imports this module."""
    try:
        return metadata.version("sdar")
    except metadata.PackageNotFoundError:  # a source tree run without `pip install`
        return "not installed"


def versions() -> dict:
    import peft
    import torch
    import transformers

    return {
        "sdar": sdar_version(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "platform": platform.platform(),
    }


def machine() -> dict:
    """What a run's floating-point results depend on besides the versions: the CPU model and the kernels torch
    picks for it (its vector ISA: AVX2 and AVX-512 machines round differently), torch's thread count, and the
    GPU where one is used. Two processes agree bit for bit only where these agree too."""
    import torch

    info = {
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux; what `platform` knows elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def source_revision() -> dict | None:
    """{"commit", "dirty"} of the git checkout this sdar runs from; None when it is not one (pip install)."""
    root = Path(__file__).resolve().parents[2]

    def git(*arguments: str) -> str:
        command = ["git", "-C", str(root), *arguments]
        return subprocess.run(command, capture_output=True, text=True, timeout=30, check=True).stdout.strip()

    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() != root:  # e.g. a venv inside another repo
            return None
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "-uno"))}
    except (OSError, subprocess.SubprocessError):
        return None


def record_process(run_dir: Path, config, start_step: int) -> None:
    """run_info.json: seed, versions, machine, source revision and command line of the process that started
    the run, plus one entry per process that resumed it (a run made in pieces may span several revisions),
    and whether it writes TensorBoard events (`tensorboard_state`)."""
    path = run_dir / "run_info.json"
    process = {"versions": versions(), "machine": machine(), "code": source_revision(), "argv": sys.argv}
    process["tensorboard"] = tensorboard_state(config.trainer.tensorboard)
    if start_step == 0 or not path.is_file():
        info = {"seed": config.seed, **process}
        warm_start = warm_start_record(config.model.name)
        if warm_start:
            info["warm_start"] = warm_start
    else:
        info = json.loads(path.read_text())
        info.setdefault("resumed", []).append({"from_step": start_step, **process})
    path.write_text(json.dumps(info, indent=2))


def warm_start_record(model_name: str) -> dict:
    """What a run's model is when it is a cached SFT warm start: the config names only its cache path on this
    machine, its sft_summary.json what it was trained from and on. {} for any other model."""
    from sdar.models.trained import WARM_START_SUMMARY, is_warm_start  # sdar.models loads torch: on use

    summary_path = Path(model_name) / WARM_START_SUMMARY
    if not is_warm_start(model_name) or not summary_path.is_file():
        return {}
    try:
        summary = json.loads(summary_path.read_text())
    except json.JSONDecodeError as error:
        warnings.warn(
            f"{summary_path}: not valid JSON ({error}); run_info.json records the warm start's key only",
            stacklevel=2,
        )
        summary = {}
    kept = ("base_model", "recipe", "tasks", "pairs", "epochs", "loss_last", "seconds", "machine")
    kept += ("rebuilt_from",)
    return {"key": Path(model_name).name, **{name: summary[name] for name in kept if name in summary}}
