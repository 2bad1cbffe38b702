"""Training progress without a terminal: plain lines name the step's phase, a few seconds apart."""

import io

from rich.console import Console

import sdar.training.progress as progress_module
from sdar.training.progress import PLAIN_INTERVAL_S, TrainingProgress


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lines_of(console: Console) -> list[str]:
    """The printed lines, less the bar rich draws once when it stops."""
    return [line for line in console.file.getvalue().splitlines() if not line.startswith("train ")]


def test_without_a_terminal_each_phase_prints_a_plain_line_at_most_every_few_seconds(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(progress_module.time, "monotonic", clock)
    console = Console(file=io.StringIO(), force_terminal=False, width=120)
    with TrainingProgress(20, first_step=2, console=console) as progress:
        progress.phase("step")  # the whole step is not a phase
        progress.phase("rollout")
        clock.now += 1.0
        progress.phase("old")  # too soon after the last line
        clock.now += PLAIN_INTERVAL_S
        progress.phase("update")
        for _ in range(50):  # one call per micro-batch
            progress.advance_update()
        progress.step_done({"step": 3, "train/won_rate": 0.5})
        clock.now += PLAIN_INTERVAL_S
        progress.phase("rollout")
        for step in range(4, 21):
            progress.step_done({"step": step})
        clock.now += PLAIN_INTERVAL_S
        progress.status("eval final: seed 0")
    assert lines_of(console)[:4] == [
        "step 3/20: rollout",
        "step 3/20: update",
        "step 3  won 0.50",
        "step 4/20: rollout",
    ]
    assert lines_of(console)[-1] == "after step 20/20: eval final: seed 0"


def test_on_a_terminal_the_live_bar_shows_the_phase_and_no_plain_line_is_printed(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(progress_module.time, "monotonic", clock)
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    with TrainingProgress(20, console=console) as progress:
        progress.phase("rollout")
    assert "step 1/20: rollout" not in console.file.getvalue()
