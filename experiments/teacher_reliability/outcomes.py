"""The committed results read into the records criteria.py judges: per run its success at steps 6 and 12, its
gate and its first-turn probe; the warm start's evaluations and probe; the chosen λ; and what the student
does in the final panel's games (Behaviour).

Files read (all committed): results/<setting>-s<seed>/{config.yaml, metrics.jsonl, eval/*/summary.json,
eval/final/episodes.jsonl}, probes/<run>.json and probes/warm-start.json (first_turn_probe.py),
warm_start/{plain,reliable}/{summary.json, episodes.jsonl} (`sdar eval` of the warm start without the line
and acting with the reliable line), chosen_lambda.json.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from criteria import PANEL_TASKS, Outcome, WarmStart
from run_table import parse_run_name

from sdar.evaluation.gate_stats import GATE_OFF_HALF_KEY, series_summary
from sdar.evaluation.runs import Run, read_eval_episodes, read_run, read_summary

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PROBES = HERE / "probes"
WARM_START_EVALS = HERE / "warm_start"  # plain/ and reliable/: criterion 0's two evaluations
CHOSEN_LAMBDA = HERE / "chosen_lambda.json"
WARM_START_PROBE = "warm-start"  # probes/warm-start.json
FINAL, STEP_6 = "final", "step_6"  # the trainer's evaluation labels (eval/<label>/summary.json)


def finished_run_dirs(results: Path = RESULTS) -> list[Path]:
    """The run folders of the table whose training ended (eval/final written), in name order."""
    return sorted(
        path
        for path in results.glob("*-s[0-9]*")
        if parse_run_name(path.name) and (path / "eval" / FINAL / "summary.json").is_file()
    )


def success(run: Run, label: str) -> tuple[float | None, int]:
    """(success rate, panel size) of the run's evaluation `label`; (None, PANEL_TASKS) without it."""
    for evaluation in run.evaluations:
        if evaluation.label == label:
            size = evaluation.panel.get("size") or PANEL_TASKS
            return float(evaluation.summary["success_rate"]), int(size)
    return None, PANEL_TASKS


def read_probe(path: Path) -> dict:
    """first_turn_probe.py's means over all the panel's games; {} when the probe is not in."""
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8")).get("all_games") or {}


def run_outcome(run: Run, probes: Path = PROBES) -> Outcome:
    final, tasks = success(run, FINAL)
    step6, _ = success(run, STEP_6)
    gate = series_summary(run.metrics, GATE_OFF_HALF_KEY)
    probe = read_probe(probes / f"{run.name}.json")
    return Outcome(
        final=final,
        step6=step6,
        tasks=tasks,
        gate_off_half=gate.mean if gate else None,
        goal_p=probe.get("student_goal_p"),
        object_p=probe.get("student_object_p"),
    )


@dataclass(frozen=True)
class Behaviour:
    """What the student did in the final panel's games (eval/final/episodes.jsonl): how a run that wins
    nothing fails."""

    games: int
    won: int
    took: int  # games with an admissible `take` (the object picked up)
    put: int  # games with an admissible `put`
    admissible: float  # share of the panel's actions that were admissible
    distinct: float  # distinct actions per game, mean


def acted(episode: dict, verb: str) -> bool:
    """Whether the episode has an admissible action starting with `verb`."""
    pairs = zip(episode.get("actions") or [], episode.get("admissible") or [], strict=False)
    return any(action.startswith(f"{verb} ") and admissible for action, admissible in pairs)


def final_behaviour(run_dir: Path, label: str = FINAL) -> Behaviour | None:
    """The Behaviour of a run's evaluation `label` (or of an evaluation folder, `label` its name); None
    without its episodes."""
    episodes = dict(read_eval_episodes(run_dir)).get(label)
    if not episodes:
        return None
    flags = [flag for episode in episodes for flag in episode.get("admissible") or []]
    return Behaviour(
        games=len(episodes),
        won=sum(bool(episode.get("won")) for episode in episodes),
        took=sum(acted(episode, "take") for episode in episodes),
        put=sum(acted(episode, "put") for episode in episodes),
        admissible=sum(flags) / len(flags) if flags else 0.0,
        distinct=statistics.fmean(len(set(episode.get("actions") or [])) for episode in episodes),
    )


def read_runs(results: Path = RESULTS) -> list[Run]:
    """Every finished run of the table as sdar's report reads it."""
    return [read_run(path) for path in finished_run_dirs(results)]


def read_outcomes(results: Path = RESULTS, probes: Path = PROBES) -> dict[tuple[str, int], Outcome]:
    """(setting, seed) -> outcome of every finished run."""
    return {parse_run_name(run.name): run_outcome(run, probes) for run in read_runs(results)}


def evaluation_success(folder: Path) -> tuple[float | None, int]:
    path = folder / "summary.json"
    if not path.is_file():
        return None, PANEL_TASKS
    summary = read_summary(path)
    return float(summary["success_rate"]), int((summary.get("panel") or {}).get("size") or PANEL_TASKS)


def read_warm_start(evaluations: Path = WARM_START_EVALS, probes: Path = PROBES) -> WarmStart:
    plain, tasks = evaluation_success(evaluations / "plain")
    reliable, _ = evaluation_success(evaluations / "reliable")
    probe = read_probe(probes / f"{WARM_START_PROBE}.json")
    return WarmStart(plain, reliable, tasks, probe.get("student_goal_p"), probe.get("student_object_p"))


def read_chosen_lambda(path: Path = CHOSEN_LAMBDA) -> float | None:
    """The λ of claim 2 report.py wrote after seed 0; None before."""
    if not path.is_file():
        return None
    return float(json.loads(path.read_text(encoding="utf-8"))["lambda"])
