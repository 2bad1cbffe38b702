"""Evaluation records and their summary: success and env metrics, mean ± std over seeds, per task type.

`EpisodeRecord` is one evaluated episode (a line of episodes.jsonl); `summarize` reduces records to the
summary.json dict; `write_results` writes both files; `print_summary` shows the rich table.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from sdar.envs.base import metric_means
from sdar.evaluation.panels import TASK_TYPE_LABELS, Panel, portable_task_id


@dataclass(frozen=True)
class EpisodeRecord:
    """One evaluated episode, as written to episodes.jsonl."""

    seed: int
    task_id: str
    task_type: str
    won: bool
    turns: int
    actions: list[str]
    error: str = ""
    valid: list[bool] | None = None  # model policy: per turn, was the reply well-formed
    # model policy, envs that list admissible actions: per turn, was the stepped action one of them
    admissible: list[bool] | None = None
    replies: list[str] | None = None  # model policy: the raw replies
    first_prompt: str | None = None  # model policy: the user message of the first turn (skills included)
    observations: list[str] | None = None  # model policy: the env's reply to each turn's action
    metrics: dict = dataclasses.field(default_factory=dict)  # the env's episode metrics, e.g. {"score": 0.75}

    def as_dict(self) -> dict:
        record = {**dataclasses.asdict(self), "task_key": portable_task_id(self.task_id)}
        return {key: value for key, value in record.items() if value is not None}


AVERAGES = ("episodes", "task_types")


def env_average(records: list[EpisodeRecord], over: str) -> float:
    """The env's "Avg" success (docs/method.md §7): over all episodes (ALFWorld, WebShop), or the plain mean
    of the per-task-type rates (Search-QA: the mean of the 7 datasets, whatever their sizes)."""
    if not records:
        return 0.0
    if over == "episodes":
        return sum(r.won for r in records) / len(records)
    by_type: dict[str, list[bool]] = {}
    for record in records:
        by_type.setdefault(record.task_type, []).append(record.won)
    return statistics.fmean(sum(won) / len(won) for won in by_type.values())


def summarize(
    records: list[EpisodeRecord], seeds: list[int], panel: Panel, task_types=(), average: str = "episodes"
) -> dict:
    """Success (and each env metric) mean and population std over seeds, per seed, per task type; the env's
    Avg (`average`: "episodes" or "task_types", see `env_average`); turns; valid and admissible action
    ratios (admissible: None where no episode's env lists admissible actions)."""
    if average not in AVERAGES:
        raise ValueError(f"average={average!r}; choose one of {', '.join(AVERAGES)}")
    per_seed = []
    for seed in seeds:
        mine = [r for r in records if r.seed == seed]
        won = sum(r.won for r in mine)
        per_seed.append(
            {
                "seed": seed,
                "success_rate": won / max(len(mine), 1),
                "average": env_average(mine, average),
                "won": won,
                "episodes": len(mine),
                "metrics": metric_means([r.metrics for r in mine]),
            }
        )
    rates = [entry["success_rate"] for entry in per_seed]
    averages = [entry["average"] for entry in per_seed]
    metric_names = sorted({name for entry in per_seed for name in entry["metrics"]})
    metrics = {
        name: {
            "mean": statistics.fmean(entry["metrics"].get(name, 0.0) for entry in per_seed),
            "std": statistics.pstdev([entry["metrics"].get(name, 0.0) for entry in per_seed]),
        }
        for name in metric_names
    }
    seen = {r.task_type for r in records}
    order = [t for t in task_types if t in seen] + sorted(seen - set(task_types))
    per_type = {}
    for task_type in order:
        mine = [r for r in records if r.task_type == task_type]
        won = sum(r.won for r in mine)
        per_type[task_type] = {
            "label": TASK_TYPE_LABELS.get(task_type, task_type),
            "tasks": len(mine) // len(seeds),
            "episodes": len(mine),
            "won": won,
            "success_rate": won / len(mine),
            "metrics": metric_means([r.metrics for r in mine]),
        }
    valid = [flag for r in records if r.valid is not None for flag in r.valid]
    has_valid = any(r.valid is not None for r in records)
    admissible = [flag for r in records if r.admissible is not None for flag in r.admissible]
    return {
        "panel": panel.describe(),
        "seeds": list(seeds),
        "success_rate": statistics.fmean(rates),
        "success_rate_std": statistics.pstdev(rates),
        # The paper's "Avg" column: equal to success_rate for ALFWorld/WebShop, the mean over datasets for
        # Search-QA.
        "average": {"over": average, "mean": statistics.fmean(averages), "std": statistics.pstdev(averages)},
        "metrics": metrics,  # env metrics (WebShop "score", Search-QA "f1"): mean and std over seeds
        "per_seed": per_seed,
        "per_task_type": per_type,
        "episodes": len(records),
        "won": sum(r.won for r in records),
        "mean_turns": statistics.fmean([r.turns for r in records]) if records else 0.0,
        "valid_action_ratio": (sum(valid) / max(len(valid), 1)) if has_valid else None,
        "admissible_action_ratio": (sum(admissible) / len(admissible)) if admissible else None,
        "failed_episodes": sum(bool(r.error) for r in records),
    }


def print_summary(summary: dict, console=None) -> None:
    """A small rich table: success per task type and overall (mean ± std over seeds)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    panel, seeds = summary["panel"], summary["seeds"]
    title = f"{summary['policy']} on {panel['name']} ({panel['size']} tasks x {len(seeds)} seed(s))"
    table = Table(title=title, title_justify="left")
    table.add_column("task type")
    table.add_column("tasks", justify="right")
    table.add_column("success %", justify="right")
    names = list(summary.get("metrics", {}))
    for name in names:
        table.add_column(f"{name} %", justify="right")
    for task_type, entry in summary["per_task_type"].items():
        label = entry["label"] if entry["label"] == task_type else f"{entry['label']} ({task_type})"
        values = [f"{100 * entry['metrics'].get(name, 0.0):.1f}" for name in names]
        table.add_row(label, str(entry["tasks"]), f"{100 * entry['success_rate']:.1f}", *values)

    def spread(std: float) -> str:
        return f" ± {100 * std:.1f}" if len(seeds) > 1 else ""

    overall = [
        f"{100 * summary['metrics'][name]['mean']:.1f}{spread(summary['metrics'][name]['std'])}"
        for name in names
    ]
    average = summary.get("average") or {"mean": summary["success_rate"], "std": summary["success_rate_std"]}
    success = f"{100 * average['mean']:.1f}{spread(average['std'])}"
    table.add_row("Avg", str(panel["size"]), success, *overall, style="bold")
    console.print(table)
    details = [f"panel {panel['fingerprint']}", f"mean turns {summary['mean_turns']:.1f}"]
    if summary.get("valid_action_ratio") is not None:
        details.append(f"valid actions {summary['valid_action_ratio']:.2f}")
    if summary.get("admissible_action_ratio") is not None:
        details.append(f"admissible actions {summary['admissible_action_ratio']:.2f}")
    if summary["failed_episodes"]:
        details.append(f"failed episodes {summary['failed_episodes']}")
    if summary.get("checkpoint"):
        details.append(f"checkpoint step {summary['checkpoint']['step']}")
    details.append(f"{summary['timing']['total_s']:.1f} s")
    console.print(", ".join(details))


def write_results(output_dir: str | Path, summary: dict, records: list[EpisodeRecord]) -> None:
    """summary.json and episodes.jsonl (one line per episode) in `output_dir`."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    with open(output_dir / "episodes.jsonl", "w") as handle:
        for record in records:
            handle.write(json.dumps(record.as_dict()) + "\n")
