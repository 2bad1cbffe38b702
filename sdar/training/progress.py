"""Terminal progress for training: a rich progress bar over steps and one summary line per step. When the
output is not a terminal (nohup, SLURM, `| tee`), rich draws no bar; plain lines then say what the run is
doing ("step 3/20: rollout"), at most one every PLAIN_INTERVAL_S seconds."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

SHOWN = (
    ("train/won_rate", "won", "{:.2f}"),
    ("train/valid_action_ratio", "valid", "{:.2f}"),
    ("train/admissible_action_ratio", "adm", "{:.2f}"),
    ("loss/policy", "pg", "{:+.4f}"),
    ("loss/kl", "kl", "{:.4f}"),
    ("distill/gate_mean", "gate", "{:.3f}"),
    ("distill/gap_mean", "gap", "{:+.3f}"),
    ("val/won_rate", "val", "{:.2f}"),
    ("time/step_s", "s", "{:.1f}"),
)
PLAIN_INTERVAL_S = 5.0


def format_metrics(metrics: dict) -> str:
    parts = [f"step {metrics['step']}"]
    for key, label, pattern in SHOWN:
        value = metrics.get(key)
        if isinstance(value, (int, float)):
            parts.append(f"{label} {pattern.format(value)}")
    return "  ".join(parts)


class TrainingProgress:
    """Use as a context manager; the trainer calls `step_done(metrics)` and `advance_update()`."""

    def __init__(self, total_steps: int, first_step: int = 0, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self._progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=self.console,
            transient=False,
        )
        self._task = self._progress.add_task("", total=total_steps, completed=first_step)
        self.total_steps, self._done = total_steps, first_step
        self.plain = not self.console.is_terminal  # no live bar: print plain lines instead
        self._last_line = -float("inf")

    def __enter__(self) -> TrainingProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._progress.stop()

    def advance_update(self) -> None:
        self.status("updating")

    def phase(self, name: str) -> None:
        """A phase of the step begins (the trainer's StepTimer names: rollout, old, teacher, ref, update)."""
        if name != "step":  # the whole step: its phases say more
            self.status(name)

    def status(self, text: str) -> None:
        """Show what the run is doing now (e.g. the panel evaluation's seed, tasks and turn)."""
        self._progress.update(self._task, description=text)
        now = time.monotonic()
        if self.plain and now - self._last_line >= PLAIN_INTERVAL_S:
            self._last_line = now
            done, total = self._done, self.total_steps
            where = f"step {done + 1}/{total}" if done < total else f"after step {done}/{total}"  # final eval
            self.console.print(f"{where}: {text}", soft_wrap=True)

    def step_done(self, metrics: dict) -> None:
        self._progress.console.print(format_metrics(metrics), soft_wrap=True)  # one line, even at 80 columns
        self._done += 1
        self._progress.update(self._task, advance=1, description="rollout")
