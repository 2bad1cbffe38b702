"""How run.py plays its stages: a Stage record, one stage played (a command or an in-process action, after its
check), and workers handing stages out through experiments/cpu_reproduction/run.py's Scheduler.

A stage that runs past the budget is killed ("out of time") and resumes next time; one that fails or is
refused stops the hand-out and is kept as a failure.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CPU_DRIVER = Path(__file__).resolve().parent.parent / "cpu_reproduction" / "run.py"


def load_cpu_driver():
    """experiments/cpu_reproduction/run.py under a name of its own: its Scheduler and `sdar` serve here."""
    spec = importlib.util.spec_from_file_location("teacher_reliability_cpu_driver", CPU_DRIVER)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


cpu_driver = load_cpu_driver()
sdar = cpu_driver.sdar  # [python, -m, sdar.cli, *arguments]


@dataclass(frozen=True)
class Stage:
    """A piece of work: a command (or an in-process `action` returning "" when done, else why not), done once
    `done` exists. `check` runs first: "" to go on, else why it must not. `reads`: a checkpoint it needs."""

    run: str  # the run folder's name, or "warm-start"
    name: str
    done: Path
    command: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()  # keys of the stages that must be done first
    check: Callable[[], str] | None = None
    reads: Path | None = None
    action: Callable[[], str] | None = None
    threads: int | None = None  # a fixed thread count instead of cores / workers
    log: Path | None = None  # where the command's output goes (appended)

    @property
    def key(self) -> str:
        return f"{self.run}: {self.name}"


def play(stage: Stage, threads: int, seconds_left: float | None) -> str:
    """Run one stage: 'done', 'failed; see LOG', 'out of time' (killed; resumes later) or 'refused: why'."""
    if stage.check and (problem := stage.check()):
        return f"refused: {problem}"
    if stage.action is not None:
        problem = stage.action()
        return f"refused: {problem}" if problem else "done"
    log = stage.log or Path(os.devnull)
    code = cpu_driver.run_logged(stage.command, log, threads, seconds_left)
    return "out of time" if code is None else "done" if code == 0 else f"failed; see {log}"


class Scheduler(cpu_driver.Scheduler):
    """cpu_reproduction's: stages in order, each once the stages it needs are done. Any outcome but done stops
    the hand-out; all but running out of time are kept as failures."""

    def finished(self, stage: Stage, outcome: str) -> None:
        with self.lock:
            self.running.discard(stage.key)
            if outcome != "done":
                self.stopped = True
                if outcome != "out of time":
                    self.failures.append(f"{stage.key}: {outcome}")
            self.lock.notify_all()


def work(scheduler: Scheduler, threads: int) -> None:
    """One worker: play the stages the scheduler hands out until it hands out none."""
    while (stage := scheduler.next()) is not None:
        started = time.monotonic()
        outcome = play(stage, stage.threads or threads, scheduler.seconds_left())
        print(f"{stage.key}: {outcome} after {(time.monotonic() - started) / 60:.1f} min", flush=True)
        scheduler.finished(stage, outcome)
