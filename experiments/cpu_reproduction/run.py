"""Run the CPU-scale reproduction in resumable pieces: every (method, seed) run, then its ALFWorld evaluation.

    python experiments/cpu_reproduction/run.py --workers 2 --budget-minutes 150   # what is left, 2 at a time
    python experiments/cpu_reproduction/run.py --methods sdar grpo --seeds 0      # a subset
    python experiments/cpu_reproduction/run.py --status                           # what is done, what is left

First the shared SFT warm start (`sdar sft config.yaml` on every core, since every other stage needs it;
cached; 39-68 min with 2 threads when it is not), and the
teacher-vs-student measurement of it (teacher_vs_student/: the valid panel without the skills and with them
in the teacher's prompt, and skill_reading.py). Then every run lives in results/<method>-s<seed>/ and has
three stages, each skipped once done:
1. train: `sdar train config.yaml algorithm.method=M seed=S` (checkpoint every step), or `sdar train --resume`
   when the run has a checkpoint; the trainer evaluates the generated valid panel at steps 6 and 12
   (eval/step_6, eval/final);
2. skill reading: skill_reading.py on the checkpoints of steps 6 and 12, the evaluated ones
   (teacher_vs_student/skill_reading-<run>-step<N>.json): during RL, does the student, without the line, go
   where the line points more than the warm start did, and does the teacher still read it? Distilling the
   teacher teaches the student that directly; GRPO can learn it only from the rewards of its episodes;
3. valid_seen: the final checkpoint on ALFWorld valid_seen (the official games; 36 of its 140 games evenly
   spread over its fixed order, so all six task types, 20 turns each, see VALID_SEEN_GAMES; skipped when
   ../shared/data/alfworld is missing).
The warm start every run starts from is evaluated once: on the valid panel by the teacher-vs-student
measurement (teacher_vs_student/plain is what eval/step_0 of every run would be) and on valid_seen in
results/warm-start-valid_seen/, after every run.

A run's probes and valid_seen come right after its training, before the next run's training: they read its
checkpoints, and checkpoints live only on the machine that trained the run. A driver run that ends on a
machine whose disk is not kept thus leaves every run it trained complete, not trained but unevaluable. The
warm start does not survive such a machine either, and training it again gives a different model
(replica_warm_start/): under finished runs, the driver refuses to (unless --new-warm-start).

`--workers N` plays N stages at a time, each with cores / N threads (decoding a small batch uses a second
thread poorly, so two 1-thread processes on 2 cores can beat one 2-thread process). A stage that runs past
the budget is killed; its run resumes from its last checkpoint next time, bit-identical to an
uninterrupted run (tests/training/test_resume.py), and a killed valid_seen goes on from the episodes its
journal holds (`sdar eval` resumes into the same --output; tests/evaluation/test_journal.py). Checkpoints
and TensorBoard files stay out of git (.gitignore), and so do samples.jsonl, episodes.jsonl and pieces.log
(experiments/.gitignore); config.yaml, run_info.json, metrics.jsonl, eval/*/summary.json and the
samples_digest.json that report.py writes from samples.jsonl are the committed raw results. So a clone
holding a finished run's results but not its probes or valid_seen cannot make them: it says so ("cannot run
here") and goes on with the rest.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "config.yaml"
RESULTS = HERE / "results"
TEACHER_VS_STUDENT = HERE / "teacher_vs_student"
METHODS = ("grpo", "sdar", "grpo_opsd")  # the order runs start in: the headline comparison first
SEEDS = (0, 1, 2)
ALFWORLD_DATA = HERE.parents[1].parent / "shared" / "data" / "alfworld"
# ALFWorld valid_seen at CPU scale: 36 of its 140 games evenly spread over the fixed order (its first 36 are
# all Look or Pick games; spread, every type is in: Pick 9, Clean 7, Cool 6, Pick2 6, Look 4, Heat 4) with 20
# turns each. The full protocol (140 games x 50 turns) costs several hours per checkpoint on 2 cores.
VALID_SEEN_GAMES, VALID_SEEN_TURNS = 36, 20
WARM_START = "warm-start"


@dataclass(frozen=True)
class Stage:
    run: str  # results/<run>/ (the pieces.log lives there)
    name: str
    done: Path  # the file that marks it done
    command: list[str]
    needs: tuple[str, ...] = ()  # keys of the stages that must be done first
    reads: Path | None = None  # a checkpoint it reads: only the machine that trained the run has it
    all_cores: bool = False  # played with every core: no other stage can run beside it

    @property
    def key(self) -> str:
        return f"{self.run}: {self.name}"


def sdar(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "sdar.cli", *arguments]


def valid_seen_arguments(output: Path) -> list[str]:
    return [
        "env.name=alfworld",
        f"env.data_dir={ALFWORLD_DATA}",
        "env.options={}",
        f"env.max_turns={VALID_SEEN_TURNS}",
        "eval.split=valid_seen",
        f"eval.num_tasks={VALID_SEEN_GAMES}",
        "eval.spread=true",
        "--output",
        str(output),
    ]


def warm_start_directory() -> Path:
    """Where `sdar sft config.yaml` caches the warm start (the same key the trainer computes)."""
    from sdar.config import load_config
    from sdar.training.sft import cache_root, warm_start_key

    config = load_config(str(CONFIG))
    return cache_root(config) / warm_start_key(config)


SFT = Stage(
    WARM_START,
    "sft",
    warm_start_directory() / "sft_summary.json",
    sdar("sft", str(CONFIG)),
    all_cores=True,  # every other stage needs the warm start
)


def skill_reading(output: Path, *model: str) -> list[str]:
    """The skill_reading.py command writing `output`; `model`: e.g. ("--checkpoint", RUN_DIR)."""
    return [sys.executable, str(HERE / "skill_reading.py"), *model, "--output", str(output)]


def teacher_vs_student_stages() -> list[Stage]:
    """The warm start on the valid panel without the skills and with them in the teacher's prompt (the
    teacher acting), and the skill-reading probe: does the teacher know more, and does the model read it?"""
    plain, skills = TEACHER_VS_STUDENT / "plain", TEACHER_VS_STUDENT / "skills"
    as_teacher = ["eval.student_skills=true", "eval.skills_placement=teacher"]
    reading = TEACHER_VS_STUDENT / "skill_reading.json"
    probe = skill_reading(reading, "--config", str(CONFIG))
    stages = [  # (name, the file that marks it done, command)
        ("valid panel", plain / "summary.json", sdar("eval", str(CONFIG), "--output", str(plain))),
        (
            "valid panel, skills in the teacher's prompt",
            skills / "summary.json",
            sdar("eval", str(CONFIG), *as_teacher, "--output", str(skills)),
        ),
        ("skill reading", reading, probe),
    ]
    return [Stage(WARM_START, name, done, command, needs=(SFT.key,)) for name, done, command in stages]


def train_stage(run: str) -> Stage:
    run_dir = RESULTS / run
    method, seed = run.rsplit("-s", 1)
    if (run_dir / "checkpoints" / "latest").is_file():
        command = sdar("train", "--resume", str(run_dir))
    else:
        command = sdar(
            "train", str(CONFIG), f"algorithm.method={method}", f"seed={seed}", "--output", str(run_dir)
        )
    return Stage(run, "train", run_dir / "eval" / "final" / "summary.json", command, needs=(SFT.key,))


def progress(stage: Stage) -> str:
    """How far an unfinished training stage got: its newest checkpoint, where a resume starts."""
    latest = RESULTS / stage.run / "checkpoints" / "latest"
    if stage.name != "train" or not latest.is_file():
        return ""
    return f" (resumes after step {int(latest.read_text().strip().removeprefix('step_'))})"


def reading_steps() -> list[int]:
    """The checkpoints skill_reading.py probes: those the trainer evaluates (every eval_every, the last)."""
    from sdar.config import load_config

    trainer = load_config(str(CONFIG)).trainer
    evaluated = range(trainer.eval_every, trainer.steps + 1, trainer.eval_every) if trainer.eval_every else []
    return sorted({*evaluated, trainer.steps})


def reading_stage(run: str, step: int) -> Stage:
    """skill_reading.py on a run's checkpoint of `step`."""
    from sdar.models.trained import checkpoint_path

    output = TEACHER_VS_STUDENT / f"skill_reading-{run}-step{step}.json"
    checkpoint = checkpoint_path(RESULTS / run, step)
    command = skill_reading(output, "--checkpoint", str(checkpoint))
    return Stage(run, f"skill reading, step {step}", output, command, (f"{run}: train",), checkpoint)


def valid_seen_stage(run: str) -> Stage:
    """valid_seen of a run's final checkpoint, or of the warm start (the experiment config, no checkpoint)."""
    if run == WARM_START:  # the warm-start model itself: its key is computed on the generated env
        output = RESULTS / f"{WARM_START}-valid_seen"
        model = [f"model.name={warm_start_directory()}", "sft.warm_start=false"]
        command = sdar("eval", str(CONFIG), *model, *valid_seen_arguments(output))
        return Stage(run, "valid_seen", output / "summary.json", command, needs=(SFT.key,))
    output = RESULTS / run / "eval" / "valid_seen"
    command = sdar("eval", "--checkpoint", str(RESULTS / run), *valid_seen_arguments(output))
    latest = RESULTS / run / "checkpoints" / "latest"
    return Stage(run, "valid_seen", output / "summary.json", command, (f"{run}: train",), latest)


def stages_not_done(methods, seeds) -> list[Stage]:
    """Every stage not done yet: the warm start and its teacher-vs-student measurement, then run by run,
    seed-major (all methods of seed 0 first, so a partial result compares), its training, skill-reading
    probes (minutes each) and valid_seen, then the warm start's valid_seen."""
    with_valid_seen = ALFWORLD_DATA.is_dir()
    stages = [SFT, *teacher_vs_student_stages()]
    for run in (f"{method}-s{seed}" for seed in seeds for method in methods):
        stages += [train_stage(run), *(reading_stage(run, step) for step in reading_steps())]
        stages += [valid_seen_stage(run)] if with_valid_seen else []
    stages += [valid_seen_stage(WARM_START)] if with_valid_seen else []
    return [stage for stage in stages if not stage.done.is_file()]


def stranded(stage: Stage) -> bool:
    """A stage that reads a checkpoint of a run trained on another machine: checkpoints stay out of git, so
    a clone with the run's results but without this stage's cannot make them (train the run again here)."""
    if stage.reads is None:
        return False
    return train_stage(stage.run).done.is_file() and not stage.reads.exists()


def pending(methods, seeds) -> list[Stage]:
    """The stages left that this machine can run, in the order of stages_not_done."""
    return [stage for stage in stages_not_done(methods, seeds) if not stranded(stage)]


def lost_warm_start(stages: list[Stage]) -> str:
    """Why not to train the warm start here, when finished runs started from one this machine lacks: training
    it again gives another model (replica_warm_start/), and runs from it would not compare. "" otherwise."""
    finished = sorted(
        path.name for path in RESULTS.glob("*-s[0-9]*") if train_stage(path.name).done.is_file()
    )
    if SFT not in stages or not finished:
        return ""
    return (
        f"the warm start {SFT.done.parent} is not on this machine, but {len(finished)} finished run(s) "
        f"({', '.join(finished)}) started from it. Training it again gives a different model (see "
        "replica_warm_start/README.md), so runs from it would not compare with those. Rebuild the same one "
        "from its saved adapter (sft.adapter in config.yaml), move the finished runs aside, or pass "
        "--new-warm-start to mix them knowingly."
    )


def run_logged(command, log: Path, threads: int, seconds_left: float | None) -> int | None:
    """Run `command` with `threads` OpenMP threads, its output appended to `log`: its exit status, or None
    when it ran past `seconds_left` (it is killed; a run resumes from its last checkpoint later)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    with open(log, "a") as output:
        output.write(f"\n$ OMP_NUM_THREADS={threads} {' '.join(command)}\n")
        output.flush()
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=environment)
        try:
            return process.wait(timeout=seconds_left)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return None


def run_stage(stage: Stage, threads: int, seconds_left: float | None) -> str:
    """Run one stage; 'done', 'failed' or 'out of time' (the child is killed; its run resumes later)."""
    code = run_logged(stage.command, RESULTS / stage.run / "pieces.log", threads, seconds_left)
    return "out of time" if code is None else "done" if code == 0 else "failed"


def play_stages(scheduler, workers: int, threads: int, work) -> None:
    """`workers` threads each calling work(scheduler, threads) until the scheduler hands out nothing; then
    the failures, on stderr."""
    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(work, scheduler, threads) for _ in range(workers)]
    for future in futures:
        future.result()  # re-raise a worker's exception
    for failure in scheduler.failures:
        print(failure, file=sys.stderr)


class Scheduler:
    """Hands stages to workers in order; a stage waits until the stages it needs are done."""

    def __init__(self, stages: list[Stage], deadline: float | None):
        self.stages, self.deadline = list(stages), deadline
        self.lock = threading.Condition()
        self.running: set[str] = set()
        self.stopped = False
        self.failures: list[str] = []

    def next(self) -> Stage | None:
        with self.lock:
            while True:
                if self.stopped or not self.stages or self.seconds_left() == 0:
                    return None
                ready = [stage for stage in self.stages if self.ready(stage)]
                if ready:
                    stage = ready[0]
                    self.stages.remove(stage)
                    self.running.add(stage.key)
                    return stage
                self.lock.wait(timeout=10)

    def ready(self, stage: Stage) -> bool:
        waiting = self.running | {other.key for other in self.stages}
        return not waiting.intersection(stage.needs)

    def finished(self, stage: Stage, outcome: str) -> None:
        with self.lock:
            self.running.discard(stage.key)
            if outcome != "done":
                self.stopped = True  # out of time or failed: stop handing out stages
                if outcome == "failed":
                    self.failures.append(
                        f"{stage.run}: {stage.name} failed; see {RESULTS / stage.run / 'pieces.log'}"
                    )
            self.lock.notify_all()

    def seconds_left(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())


def work(scheduler: Scheduler, threads: int) -> None:
    while (stage := scheduler.next()) is not None:
        started = time.monotonic()
        cores = max(threads, os.cpu_count() or 1) if stage.all_cores else threads
        outcome = run_stage(stage, cores, scheduler.seconds_left())
        minutes = (time.monotonic() - started) / 60
        print(f"{stage.run}: {stage.name}: {outcome} after {minutes:.1f} min", flush=True)
        scheduler.finished(stage, outcome)


def add_piece_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every resumable experiment driver shares: budget, workers, threads, status."""
    parser.add_argument("--budget-minutes", type=float, default=None, help="stop (resumably) after this long")
    parser.add_argument("--workers", type=int, default=1, help="stages played at a time")
    parser.add_argument(
        "--threads", type=int, default=None, help="threads per stage (default: cores / workers)"
    )
    parser.add_argument("--status", action="store_true", help="list the stages left and exit")


def parse_piece_arguments(parser: argparse.ArgumentParser) -> argparse.Namespace:
    args = parser.parse_args()
    if args.workers < 1 or (args.threads is not None and args.threads < 1):
        parser.error("--workers and --threads must be at least 1")
    return args


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    add_piece_arguments(parser)
    parser.add_argument(
        "--new-warm-start",
        action="store_true",
        help="train the warm start although finished runs started from one that is not here",
    )
    args = parse_piece_arguments(parser)

    stages = pending(args.methods, args.seeds)
    for stage in filter(stranded, stages_not_done(args.methods, args.seeds)):
        print(
            f"cannot run here: {stage.key}: {stage.reads} is not on this machine (checkpoints stay where the "
            "run trained; delete the run's results to train it again here)",
            file=sys.stderr,
        )
    lost = "" if args.new_warm_start else lost_warm_start(stages)
    if args.status or not stages:
        for stage in stages:
            print(f"left: {stage.run}: {stage.name}{progress(stage)}")
        print(f"{len(stages)} stage(s) left" + (f"; but {lost}" if lost else ""))
        return 0
    if lost:
        print(lost, file=sys.stderr)
        return 2
    deadline = None if args.budget_minutes is None else time.monotonic() + 60 * args.budget_minutes
    scheduler = Scheduler(stages, deadline)
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.workers)
    play_stages(scheduler, args.workers, threads, work)
    left = len(pending(args.methods, args.seeds))
    print(f"{left} stage(s) left" + ("; run again to continue" if left else ""))
    return 1 if scheduler.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
