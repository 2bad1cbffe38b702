"""Run the teacher-reliability experiment in resumable pieces: the warm start, its precondition, every run.

    python experiments/teacher_reliability/run.py --status                          # what is done and left
    python experiments/teacher_reliability/run.py --budget-minutes 150              # next stages, in order
    python experiments/teacher_reliability/run.py --runs 'sdar-l*-half' grpo --seeds 0
    python experiments/teacher_reliability/run.py --lam 0.1                         # λ of claim 2, by hand

Stages, each skipped once done (README.md, Design and Order):
(a) the shared warm start (`sdar sft config.yaml`), then its fingerprint (warm_start_fingerprint.py) in
    warm_start.json with the torch version and thread count. A warm start whose fingerprint differs from the
    recorded one is refused (`--new-warm-start` records it instead); a warm start made again here uses the
    recorded thread count.
(b) criterion 0: the warm start on the valid panel without the line (warm_start/plain) and acting with the
    reliable line (warm_start/reliable: `eval.student_skills=true eval.skills_placement=teacher`), and its
    first-turn probe (probes/warm-start.json). No run starts unless criterion 0 holds.
(c) each run of the table (run_table.py) and seed: `sdar train config.yaml <overrides> seed=S --output
    results/<setting>-s<S>` (or `sdar train --resume` from its checkpoint), then first_turn_probe.py on its
    final checkpoint (probes/<setting>-s<S>.json). In the running order of README.md: seed 0 of the
    settings of claims 1 and 2, then seeds 1 and 2 of those criteria.later_seeds names, then seed 0 of the
    rest. GRPO+OPSD with the half teacher is made only when `--runs` names it: it repeats its reliable twin
    (run_table.TEACHER_BLIND_TWINS), and the report takes the twin's outcome. So is an exploratory setting
    (run_table.EXPLORATORY), outside the design. The settings at the λ of claim 2 wait until it is chosen:
    chosen_lambda.json (report.py writes it once seed 0's claim-1 runs are in) or `--lam`.

Every run and evaluation names the warm start's folder as its model (`model.name=<warm start>
sft.warm_start=false`) instead of letting `sdar train` find it by its cache key: the key includes
teacher.skill_library, so the half teacher's runs would otherwise train a warm start of their own.

A run records the commit it was made at (run_info.json); a run with a checkpoint is not resumed under another
commit unless `--allow-new-commit`. Probes read checkpoints, which stay on the machine that trained the run
(.gitignore): a finished run without them here cannot be probed here ("cannot run here"). `--workers N` plays
N stages at a time with cores / N threads each; a stage past the budget is killed and resumes next time.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import functools
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the siblings below, also when this file is loaded by path (tests)

import criteria  # noqa: E402
import outcomes  # noqa: E402
import warm_start_fingerprint as fingerprint  # noqa: E402
from pieces import Scheduler, Stage, cpu_driver, sdar, work  # noqa: E402
from run_table import (  # noqa: E402
    EXPLORATORY,
    LAMBDAS,
    ONLY_WHEN_NAMED,
    SEEDS,
    SETTING_NAMES,
    TEACHER_BLIND_TWINS,
    Setting,
    run_name,
    run_table,
)

from sdar.evaluation.runs import run_info  # noqa: E402
from sdar.models.trained import checkpoint_path  # noqa: E402

CONFIG = HERE / "config.yaml"
RESULTS = outcomes.RESULTS
PROBES = outcomes.PROBES
WARM_START_EVALS = outcomes.WARM_START_EVALS
CHOSEN_LAMBDA = outcomes.CHOSEN_LAMBDA
WARM_START_RECORD = HERE / "warm_start.json"
PROBE_SCRIPT = HERE / "first_turn_probe.py"
WARM_START = "warm-start"
# Criterion 0's evaluations of the warm start (warm_start/<name>): without the line, acting with it
PRECONDITION = {"plain": (), "reliable": ("eval.student_skills=true", "eval.skills_placement=teacher")}
SFT_KEY, RECORD_KEY = f"{WARM_START}: sft", f"{WARM_START}: fingerprint"
WARM_START_KEYS = (SFT_KEY, RECORD_KEY)  # what every stage that reads the warm start waits for
EVALUATION_NAMES = {"plain": "valid panel without the line", "reliable": "valid panel acting with the line"}
PRECONDITION_KEYS = tuple(f"{WARM_START}: {EVALUATION_NAMES[name]}" for name in PRECONDITION)
WARM_START_LOG = WARM_START_EVALS / "pieces.log"


def run_log(run: str) -> Path:
    return RESULTS / run / "pieces.log"


@functools.cache
def warm_start_directory() -> Path:
    """Where `sdar sft config.yaml` caches the warm start (the cache key the trainer computes)."""
    from sdar.config import load_config
    from sdar.training.sft import cache_root, warm_start_key

    config = load_config(str(CONFIG))
    return cache_root(config) / warm_start_key(config)


@functools.cache
def final_step() -> int:
    from sdar.config import load_config

    return load_config(str(CONFIG)).trainer.steps


def pinned_model() -> tuple[str, ...]:
    """The overrides that make a command use the warm start itself (see the module docstring)."""
    return (f"model.name={warm_start_directory()}", "sft.warm_start=false")


@dataclass(frozen=True)
class Allowed:
    """What the command line allows beyond the default refusals."""

    new_warm_start: bool = False  # record a warm start whose fingerprint differs, and go on from it
    new_commit: bool = False  # resume a run under another commit


def fingerprint_problem(allowed: Allowed = Allowed()) -> str:
    """Why nothing may start from the warm start here; "" when it is the recorded one (or, allowed, has
    just been recorded in its place)."""
    directory = warm_start_directory()
    if not (directory / fingerprint.SUMMARY).is_file():
        return f"the warm start {directory} is not here"
    recorded = fingerprint.read_record(WARM_START_RECORD)
    if recorded is None:
        return "the warm start's fingerprint is not recorded yet (warm_start.json)"
    problem = fingerprint.mismatch(recorded, directory)
    if problem and allowed.new_warm_start:
        return record_fingerprint(replace=True)
    return problem


def record_fingerprint(replace: bool = False) -> str:
    """Write warm_start.json for the warm start here (`replace`: over a different recorded one); "" when
    done, else why not."""
    import torch

    directory = warm_start_directory()
    recorded = fingerprint.read_record(WARM_START_RECORD)
    problem = fingerprint.mismatch(recorded, directory)
    if recorded is not None and not problem:
        return ""
    if problem and not replace:
        return problem
    record = fingerprint.warm_start_record(directory, torch.__version__)
    fingerprint.write_record(WARM_START_RECORD, record, replaced=recorded if problem else None)
    return ""


def recorded_threads() -> int | None:
    recorded = fingerprint.read_record(WARM_START_RECORD) or {}
    return recorded.get("threads")


def precondition_problem() -> str:
    """Why no run may start: criterion 0 does not hold (or is not measured); "" when it holds."""
    verdict = criteria.criterion_0(outcomes.read_warm_start(WARM_START_EVALS, PROBES))
    if verdict.status == criteria.HOLDS:
        return ""
    return f"criterion 0 {verdict.status}: {verdict.detail}. No run starts (README: redesign the warm start)"


def run_commit(run_dir: Path) -> str | None:
    """The commit of the last process that trained the run (run_info.json); None when not recorded."""
    info = run_info(run_dir)
    processes = [info, *info.get("resumed", [])]
    commits = [(process.get("code") or {}).get("commit") for process in processes]
    return next((commit for commit in reversed(commits) if commit), None)


def current_commit() -> str | None:
    from sdar.training.logging import source_revision

    return (source_revision() or {}).get("commit")


def commit_problem(run_dir: Path, allowed: Allowed = Allowed()) -> str:
    """Why a run must not be resumed here: its checkpoint was made under another commit."""
    if allowed.new_commit or not (run_dir / "checkpoints" / "latest").is_file():
        return ""
    recorded, here = run_commit(run_dir), current_commit()
    if not recorded or not here or recorded == here:
        return ""
    return (
        f"{run_dir.name} was trained at commit {recorded[:10]}, this checkout is at {here[:10]}: resuming "
        "would mix code in one run (check out that commit, or pass --allow-new-commit)"
    )


def warm_start_stages(allowed: Allowed = Allowed()) -> list[Stage]:
    """(a) and (b): the warm start, its fingerprint, criterion 0's two evaluations, its probe."""
    check = functools.partial(fingerprint_problem, allowed)
    threads = recorded_threads() or os.cpu_count() or 1  # made again: as the recorded one was
    summary = warm_start_directory() / fingerprint.SUMMARY
    stages = [
        Stage(WARM_START, "sft", summary, tuple(sdar("sft", str(CONFIG))), threads=threads),
        Stage(WARM_START, "fingerprint", WARM_START_RECORD, needs=(SFT_KEY,), action=record_fingerprint),
    ]
    for name, arguments in PRECONDITION.items():
        folder = WARM_START_EVALS / name
        command = tuple(sdar("eval", str(CONFIG), *pinned_model(), *arguments, "--output", str(folder)))
        done = folder / "summary.json"
        stages.append(Stage(WARM_START, EVALUATION_NAMES[name], done, command, WARM_START_KEYS, check))
    output = PROBES / f"{outcomes.WARM_START_PROBE}.json"
    probe = (sys.executable, str(PROBE_SCRIPT), "--output", str(output), *pinned_model())
    stages.append(Stage(WARM_START, "first-turn probe", output, probe, WARM_START_KEYS, check))
    return [dataclasses.replace(stage, log=WARM_START_LOG) for stage in stages]


def train_stage(setting: Setting, seed: int, allowed: Allowed = Allowed()) -> Stage:
    """`sdar train` of one run (resumed from its checkpoint when it has one), once criterion 0 holds."""
    run = run_name(setting.name, seed)
    run_dir = RESULTS / run
    if (run_dir / "checkpoints" / "latest").is_file():
        command = sdar("train", "--resume", str(run_dir))
    else:
        overrides = (*setting.overrides, *pinned_model(), f"seed={seed}")
        command = sdar("train", str(CONFIG), *overrides, "--output", str(run_dir))

    def check() -> str:
        return fingerprint_problem(allowed) or precondition_problem() or commit_problem(run_dir, allowed)

    done = run_dir / "eval" / outcomes.FINAL / "summary.json"
    needs = (*WARM_START_KEYS, *PRECONDITION_KEYS)
    return Stage(run, "train", done, tuple(command), needs, check, log=run_log(run))


def probe_stage(setting: Setting, seed: int, allowed: Allowed = Allowed()) -> Stage:
    """first_turn_probe.py on the run's final checkpoint."""
    run = run_name(setting.name, seed)
    checkpoint = checkpoint_path(RESULTS / run, final_step())
    output = PROBES / f"{run}.json"
    command = (sys.executable, str(PROBE_SCRIPT), "--checkpoint", str(checkpoint), "--output", str(output))
    check = functools.partial(fingerprint_problem, allowed)
    needs = (*WARM_START_KEYS, f"{run}: train")
    return Stage(run, "first-turn probe", output, command, needs, check, checkpoint, log=run_log(run))


def chosen_lambda(given: float | None) -> float | None:
    """`--lam`, else chosen_lambda.json's λ, else None (not chosen yet)."""
    return given if given is not None else outcomes.read_chosen_lambda(CHOSEN_LAMBDA)


def selected(patterns: list[str] | None) -> list[str]:
    """The settings `--runs` names (names or shell globs), in table order; every setting without it. A
    GRPO+OPSD half-teacher setting, which repeats its reliable twin (README.md, Amendment), and an
    exploratory one (run_table.EXPLORATORY) only when named exactly."""
    if not patterns:
        return [name for name in SETTING_NAMES if name not in ONLY_WHEN_NAMED]
    unmatched = [pattern for pattern in patterns if not fnmatch.filter(SETTING_NAMES, pattern)]
    if unmatched:
        raise SystemExit(
            f"--runs {' '.join(unmatched)}: no such setting; the settings: {', '.join(SETTING_NAMES)}"
        )
    return [
        name
        for name in SETTING_NAMES
        if name in patterns
        or (name not in ONLY_WHEN_NAMED and any(fnmatch.fnmatch(name, p) for p in patterns))
    ]


def planned_runs(
    seeds, patterns, lam: float | None
) -> tuple[list[tuple[Setting, int]], list[tuple[str, str]]]:
    """([(setting, seed)] to run, in order, [(what, what it waits for)]), in the running order of README.md:
    seed 0 of claims 1 and 2's settings (GRPO, both methods at λ ∈ {0.1, 1} with the reliable teacher and at
    the λ of claim 2 with both), then seeds 1 and 2 of those criteria.later_seeds names, then seed 0 of the
    other selected settings."""
    table, names = run_table(lam), selected(patterns)
    first = {*criteria.CLAIM_1_SEED0, *(criteria.claim_2_settings(lam) if lam is not None else ())}
    seed_0 = {True: [], False: []}  # first or not -> [(setting, 0)]
    runs, waiting = [], []
    if 0 in seeds:
        for name in names:
            if table[name].waits_for_lambda:
                waiting.append((run_name(name, 0), "the λ of claim 2 (chosen_lambda.json, or --lam)"))
            else:
                seed_0[name in first].append((table[name], 0))
    runs += seed_0[True]
    later = [seed for seed in seeds if seed != 0]
    if later:
        due, wait = criteria.later_seeds(outcomes.read_outcomes(RESULTS, PROBES), lam)
        runs += [(table[name], seed) for seed in later for name in names if name in due]
        seeds_text = ", ".join(map(str, later))
        waiting += [
            (f"{what}, seeds {seeds_text}", why)
            for what, why in wait
            if what not in SETTING_NAMES or what in names
        ]
    return runs + seed_0[False], waiting


def stages_not_done(seeds, patterns, lam, allowed: Allowed = Allowed()) -> list[Stage]:
    runs, _ = planned_runs(seeds, patterns, lam)
    stages = warm_start_stages(allowed)
    for setting, seed in runs:
        stages += [train_stage(setting, seed, allowed), probe_stage(setting, seed, allowed)]
    return [stage for stage in stages if not stage.done.is_file()]


def stranded(stage: Stage) -> bool:
    """A probe of a run trained elsewhere: its checkpoint is not here (checkpoints stay out of git)."""
    if stage.reads is None:
        return False
    trained = (RESULTS / stage.run / "eval" / outcomes.FINAL / "summary.json").is_file()
    return trained and not stage.reads.exists()


def progress(stage: Stage) -> str:
    latest = RESULTS / stage.run / "checkpoints" / "latest"
    if stage.name != "train" or not latest.is_file():
        return ""
    return f" (resumes after step {int(latest.read_text().strip().removeprefix('step_'))})"


def status_lines(seeds, patterns, lam, stages: list[Stage]) -> list[str]:
    _, waiting = planned_runs(seeds, patterns, lam)
    lines = [f"left: {stage.key}{progress(stage)}" for stage in stages]
    lines += [f"waiting: {what}: for {why}" for what, why in waiting]
    twins = ", ".join(TEACHER_BLIND_TWINS)
    lines.append(f"not made unless named: {twins} (each repeats its reliable twin; README.md, Amendment)")
    lines += [f"not made unless named: {name} (exploratory: {what})" for name, what in EXPLORATORY.items()]
    commits = {}
    for run_dir in outcomes.finished_run_dirs(RESULTS):
        commits.setdefault((run_commit(run_dir) or "not recorded")[:10], []).append(run_dir.name)
    if len(commits) > 1:
        lines.append(
            "finished runs span commits: " + "; ".join(f"{c} ({len(r)})" for c, r in commits.items())
        )
    return lines


def precondition_fails() -> str:
    """Why no run may start when criterion 0 has been measured and does not hold; "" otherwise (holds, or
    not measured yet: the runs then wait for its evaluations and check it when they start)."""
    verdict = criteria.criterion_0(outcomes.read_warm_start(WARM_START_EVALS, PROBES))
    return precondition_problem() if verdict.status == criteria.FAILS else ""


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS), choices=SEEDS)
    parser.add_argument(
        "--runs", nargs="+", metavar="SETTING", help="settings, names or globs (default: all)"
    )
    parser.add_argument(
        "--lam", type=float, choices=LAMBDAS, help="λ of claim 2 (default: chosen_lambda.json)"
    )
    cpu_driver.add_piece_arguments(parser)
    parser.add_argument(
        "--new-warm-start", action="store_true", help="record a warm start of another fingerprint"
    )
    parser.add_argument("--allow-new-commit", action="store_true", help="resume runs made at another commit")
    args = cpu_driver.parse_piece_arguments(parser)
    return args


def main() -> int:
    args = parse_arguments()
    allowed = Allowed(args.new_warm_start, args.allow_new_commit)
    lam, recorded_lam = chosen_lambda(args.lam), outcomes.read_chosen_lambda(CHOSEN_LAMBDA)
    if args.lam is not None and recorded_lam is not None and recorded_lam != args.lam:
        print(f"--lam {args.lam:g} overrides chosen_lambda.json's λ = {recorded_lam:g}", file=sys.stderr)
    here = warm_start_directory()
    problem = ""
    if (here / fingerprint.SUMMARY).is_file():
        problem = fingerprint.mismatch(fingerprint.read_record(WARM_START_RECORD), here)
    not_done = stages_not_done(args.seeds, args.runs, lam, allowed)
    for stage in filter(stranded, not_done):
        print(f"cannot run here: {stage.key}: {stage.reads} is not on this machine", file=sys.stderr)
    stages = [stage for stage in not_done if not stranded(stage)]
    blocked = precondition_fails()
    if blocked:
        stages = [stage for stage in stages if stage.run == WARM_START]
    if args.status or not stages:
        lines = status_lines(args.seeds, args.runs, lam, stages) + (
            [f"blocked: {blocked}"] if blocked else []
        )
        print("\n".join([*lines, f"{len(stages)} stage(s) left" + (f"; but {problem}" if problem else "")]))
        return 0
    if problem and not args.new_warm_start:
        print(problem, file=sys.stderr)
        return 2
    if problem:
        record_fingerprint(replace=True)
        print(f"warm_start.json: recorded the warm start here ({here}); the earlier one is under 'replaced'")
    deadline = None if args.budget_minutes is None else time.monotonic() + 60 * args.budget_minutes
    scheduler = Scheduler(stages, deadline)
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.workers)
    cpu_driver.play_stages(scheduler, args.workers, threads, work)
    left = [stage for stage in stages_not_done(args.seeds, args.runs, chosen_lambda(args.lam), allowed)]
    print(f"{len(left)} stage(s) left" + ("; run again to continue" if left else ""))
    return 1 if scheduler.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
