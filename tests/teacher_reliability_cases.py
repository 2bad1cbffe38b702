"""What the experiments/teacher_reliability tests share: its scripts importable, and outcomes written as
games won of the panel's 24."""

import experiment_scripts

EXPERIMENT = experiment_scripts.importable("teacher_reliability")

from criteria import Outcome  # noqa: E402  (a script of the experiment's folder, importable from here on)


def load_script(name: str):
    """experiments/teacher_reliability/<name>.py as the module `teacher_reliability_<name>`."""
    return experiment_scripts.load_script(name, "teacher_reliability")


def games(count: int) -> float:
    """A success rate of `count` of the panel's 24 games."""
    return count / 24


def seeds(setting: str, *counts: int, **fields) -> dict:
    """Outcomes of seeds 0, 1, ... of a setting: final success of `counts` games each."""
    return {(setting, seed): Outcome(final=games(count), **fields) for seed, count in enumerate(counts)}
