"""Reading run and evaluation directories from disk: the file edge of `sdar report` and `sdar view`.

A run directory holds `config.yaml`, `metrics.jsonl` (one JSON line per step), `samples.jsonl` and, by
convention, its evaluations in `eval/<label>/summary.json` (the trainer writes `eval/step_0` and `eval/final`;
users may add more, at any depth). An evaluation directory is what `sdar eval --output DIR` writes:
`summary.json` and `episodes.jsonl`. Everything here only reads; the reports are computed by pure functions
in `report.py` and `viewer.py`.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from sdar.errors import ConfigError
from sdar.models.trained import is_warm_start

SUMMARY = "summary.json"
EPISODES = "episodes.jsonl"
METRICS = "metrics.jsonl"
SAMPLES = "samples.jsonl"
RUN_CONFIG = "config.yaml"
RUN_INFO = "run_info.json"


@dataclass(frozen=True)
class Evaluation:
    """One evaluation: its label (e.g. `final`, `step_0`, `heldout/valid_seen`) and its summary.json."""

    label: str
    summary: dict
    path: str = ""

    @property
    def checkpoint_step(self) -> int | None:
        checkpoint = self.summary.get("checkpoint") or {}
        step = checkpoint.get("step")
        return step if isinstance(step, int) and not isinstance(step, bool) else None

    @property
    def panel(self) -> dict:
        return self.summary.get("panel") or {}


@dataclass(frozen=True)
class Run:
    """One training run (or one standalone evaluation, with no metrics) as the report sees it."""

    name: str
    method: str
    env: str
    model: str
    seed: int | None
    metrics: list[dict] = field(default_factory=list)
    evaluations: list[Evaluation] = field(default_factory=list)
    path: str = ""
    code: str = ""  # the git commit(s) the run was made at, from run_info.json ("" when not recorded)
    base_model: str = ""  # what its SFT warm start was trained from, from run_info.json ("" when unknown)
    recipe: str = ""  # its SFT warm start's settings without the seed, from run_info.json ("" when unknown)

    @property
    def model_label(self) -> str:
        """The model as reports name and group it. A cached SFT warm start is a path on the machine that
        trained it; it is named by its base model (when the run recorded it) and its recipe key (base model
        and SFT settings, so that runs whose warm starts differ only in their seed share one row), or by its
        cache key (the same plus the seed) when the run recorded no recipe."""
        if not is_warm_start(self.model):
            return self.model
        if self.recipe:
            return f"{self.base_model or 'base model'} + SFT recipe {self.recipe}"
        key = Path(self.model).name
        return f"{self.base_model} + SFT {key}" if self.base_model else f"SFT warm start {key}"


def parse_jsonl(lines, source: str = "") -> tuple[list[dict], list[str]]:
    """JSON objects of the lines (blank lines ignored) and a note per line that is torn or not an object."""
    records, problems = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            problems.append(f"{source}:{number}: not valid JSON (a torn line?), skipped")
            continue
        if not isinstance(record, dict):
            problems.append(f"{source}:{number}: not a JSON object, skipped")
            continue
        records.append(record)
    return records, problems


def parse_metrics(lines, source: str = "") -> tuple[list[dict], list[str]]:
    """Step records of metrics.jsonl: torn lines and lines without an integer `step` are skipped with a note;
    a step logged twice keeps its last line (a resumed run rewrote it)."""
    records, problems = parse_jsonl(lines, source)
    by_step: dict[int, dict] = {}
    for record in records:
        step = record.get("step")
        if not isinstance(step, int) or isinstance(step, bool):
            problems.append(f"{source}: a line without an integer step, skipped")
            continue
        by_step[step] = record
    return [by_step[step] for step in sorted(by_step)], problems


def metric_value(record: dict, key: str) -> float | None:
    """A finite number logged under `key`, else None (the logger writes NaN/inf as strings)."""
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8", errors="replace").splitlines()


def _warn(problems: list[str]) -> None:
    for problem in problems:
        warnings.warn(problem, stacklevel=3)


def read_summary(path: Path) -> dict:
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(summary, dict) or "success_rate" not in summary or "panel" not in summary:
        raise ConfigError(
            f"{path}: not an evaluation summary (no success_rate/panel); was it written by sdar eval?"
        )
    return summary


def read_evaluations(run_dir: Path) -> list[Evaluation]:
    """Every summary.json under `run_dir/eval/`, labelled by its folder relative to eval/, in label order."""
    root = run_dir / "eval"
    if not root.is_dir():
        return []
    evaluations = []
    for path in sorted(root.rglob(SUMMARY)):
        label = path.parent.relative_to(root).as_posix()
        evaluations.append(
            Evaluation(label if label != "." else "eval", read_summary(path), str(path.parent))
        )
    return evaluations


def _config_fields(config: dict) -> tuple[str, str, str, int | None]:
    algorithm, env, model = config.get("algorithm") or {}, config.get("env") or {}, config.get("model") or {}
    seed = config.get("seed")
    return (
        str(algorithm.get("method", "unknown")),
        str(env.get("name", "unknown")),
        str(model.get("name", "unknown")),
        seed if isinstance(seed, int) else None,
    )


def read_run(run_dir: str | Path) -> Run:
    """A run directory: config, metrics (torn lines skipped with a warning) and its evaluations."""
    import yaml

    run_dir = Path(run_dir)
    try:
        config = yaml.safe_load((run_dir / RUN_CONFIG).read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{run_dir / RUN_CONFIG}: not valid YAML ({error})") from None
    metrics_path = run_dir / METRICS
    metrics, problems = (
        parse_metrics(_read_lines(metrics_path), str(metrics_path)) if metrics_path.is_file() else ([], [])
    )
    _warn(problems)
    if not metrics:
        raise ConfigError(
            f"{run_dir}: the run has no metrics ({METRICS} is missing or has no complete step line); "
            f"has it finished a training step?"
        )
    method, env, model, seed = _config_fields(config)
    evaluations = read_evaluations(run_dir)
    info = run_info(run_dir)
    warm_start = info.get("warm_start") or {}
    return Run(
        run_dir.name,
        method,
        env,
        model,
        seed,
        metrics,
        evaluations,
        str(run_dir),
        code_of(info),
        str(warm_start.get("base_model", "")),
        str(warm_start.get("recipe", "")),
    )


def run_info(run_dir: Path) -> dict:
    """The run's run_info.json (sdar.training.logging.record_process); {} when missing or unreadable."""
    path = run_dir / RUN_INFO
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except json.JSONDecodeError:
        _warn([f"{path}: not valid JSON, the run's code and warm start are not shown"])
        return {}


def code_of(info: dict) -> str:
    """The commits of the processes that made the run (its run_info.json), short, `+` when the checkout had
    uncommitted changes, joined by ` → ` where a resumed piece ran other code; "" when not recorded."""
    commits = []
    for process in [info, *info.get("resumed", [])]:
        code = process.get("code") or {}
        if code.get("commit"):
            commits.append(code["commit"][:10] + ("+" if code.get("dirty") else ""))
    return " → ".join(dict.fromkeys(commits))


def evaluation_as_run(eval_dir: Path) -> Run:
    """A standalone `sdar eval --output DIR`: a run with no metrics and one evaluation.

    Its row is the trained method when a checkpoint was evaluated, else the policy (`expert`, `random`),
    `warm start` (an SFT warm-start model, see `sdar.models.trained.is_warm_start`) or `untrained`; a model
    that saw the skills in its prompt (`eval.student_skills`) gets ` + skills in prompt`, or ` + skills as the
    teacher` when they came in the teacher's prompt (`eval.skills_placement: teacher`)."""
    summary = read_summary(eval_dir / SUMMARY)
    config = summary.get("config") or {}
    method, env, model, seed = _config_fields(config)
    policy = summary.get("policy", "model")
    if policy != "model":
        method = str(policy)
    elif not summary.get("checkpoint"):
        method = "warm start" if is_warm_start(model) else "untrained"
    evaluation = config.get("eval") or {}
    if policy == "model" and evaluation.get("student_skills"):
        as_teacher = evaluation.get("skills_placement") == "teacher"
        method += " + skills as the teacher" if as_teacher else " + skills in prompt"
    env = (summary.get("panel") or {}).get("env", env)
    return Run(
        eval_dir.name,
        method,
        env,
        model,
        seed,
        [],
        [Evaluation(eval_dir.name, summary, str(eval_dir))],
        str(eval_dir),
    )


def read_inputs(paths) -> list[Run]:
    """Run directories and/or evaluation directories -> runs. A directory that is neither is a clear error
    when it is the only one given; among several (a glob such as results/*) it is skipped with a warning."""
    paths = [Path(given) for given in paths]
    runs, skipped = [], []
    for path in paths:
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: no such directory")
        if (path / RUN_CONFIG).is_file():
            runs.append(read_run(path))
        elif (path / SUMMARY).is_file():
            runs.append(evaluation_as_run(path))
        else:
            inside = any(
                (child / RUN_CONFIG).is_file() or (child / SUMMARY).is_file() for child in path.iterdir()
            )
            hint = f"; it holds runs: pass them, e.g. {path}/*" if inside else ""
            skipped.append(
                f"{path}: neither a run directory (with {RUN_CONFIG} and {METRICS}) nor an evaluation "
                f"directory (with {SUMMARY}, written by sdar eval --output){hint}"
            )
    if skipped and (len(paths) == 1 or not runs):
        raise ConfigError("\n".join(skipped))
    _warn([f"skipped {problem}" for problem in skipped])
    if not runs:
        raise ConfigError("no run or evaluation directories given")
    return runs


def read_samples(run_dir: Path) -> list[dict]:
    """Training sample episodes of samples.jsonl (torn lines skipped with a warning)."""
    path = run_dir / SAMPLES
    if not path.is_file():
        return []
    samples, problems = parse_jsonl(_read_lines(path), str(path))
    _warn(problems)
    return samples


def read_eval_episodes(run_dir: Path) -> list[tuple[str, list[dict]]]:
    """(label, episodes) of each episodes.jsonl under run_dir/eval/ (or of run_dir itself, an eval dir)."""
    found = []
    if (run_dir / EPISODES).is_file():
        candidates = [(run_dir.name, run_dir / EPISODES)]
    else:
        root = run_dir / "eval"
        candidates = (
            [(p.parent.relative_to(root).as_posix(), p) for p in sorted(root.rglob(EPISODES))]
            if root.is_dir()
            else []
        )
    for label, path in candidates:
        episodes, problems = parse_jsonl(_read_lines(path), str(path))
        _warn(problems)
        found.append((label, episodes))
    return found
