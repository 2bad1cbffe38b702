"""Terminal progress for training: a rich progress bar over steps and one summary line per step."""

from __future__ import annotations

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

    def __enter__(self) -> TrainingProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._progress.stop()

    def advance_update(self) -> None:
        self._progress.update(self._task, description="updating")

    def status(self, text: str) -> None:
        """Show what the run is doing now (e.g. the panel evaluation's seed, tasks and turn)."""
        self._progress.update(self._task, description=text)

    def step_done(self, metrics: dict) -> None:
        self._progress.console.print(format_metrics(metrics), soft_wrap=True)  # one line, even at 80 columns
        self._progress.update(self._task, advance=1, description="rollout")
