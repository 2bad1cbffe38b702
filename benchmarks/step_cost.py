"""Cost of an SDAR step against a GRPO step on the SAME batch, and the peak memory of a LoRA training step.

    python benchmarks/step_cost.py                                      # tiny model (smoke preset), ~30 s
    python benchmarks/step_cost.py --model smollm2-135m --lora-rank 16 --tasks 4 --group-size 4 \
        --max-turns 1 --max-new-tokens 64                               # the alfworld_cpu shape, ~6 min
    python benchmarks/step_cost.py --model smollm2-135m --lora-rank 16 --memory-only   # 8 rows x 512 tokens

One rollout is collected with the trainer's own session (`Trainer.session.rollout`, docs/method.md §5
steps 1-3), packed into one batch, and every phase is then timed on that batch (median of --repeats, phases
round robin so that load drifts hit all alike, CPU time of this process next to wall time; the weights,
optimizer and scheduler are restored before each update):
    GRPO step = old log-probs + ref log-probs + update (PPO-clip + entropy + KL)
    SDAR step = the same + teacher log-probs + the distillation term in the update
with the teacher's shared skill prefix on and off (`teacher.share_prefix`). The ratio is printed for the
training phases alone (the target: SDAR / GRPO <= 1.10) and with the rollout's time added to both.

Memory (a fresh child process, so nothing else sits in its RSS): the model with LoRA, then one full SDAR step
(old, ref, teacher, update) on --memory-rows synthetic ALFWorld rows of --memory-tokens tokens. Reported: the
RSS after loading, and the peak RSS (VmHWM, reset before each phase) of each phase. Target: <= 6 GB.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from sdar.algorithms.objective import advantages_from_config, settings_from_config  # noqa: E402
from sdar.config import load_config  # noqa: E402
from sdar.records import rows_to_batch  # noqa: E402
from sdar.teacher import build_teacher_prompts, teacher_logprobs  # noqa: E402
from sdar.training.checkpoint import trainable_state  # noqa: E402
from sdar.training.trainer import Trainer, step_seed  # noqa: E402
from sdar.training.update import Learner, bf16_autocast, policy_update, score_batch  # noqa: E402


def build_config(args):
    preset = "smoke" if args.model == "tiny" else "alfworld_cpu"
    overrides = [
        f"model.name={args.model}",
        f"model.lora_rank={args.lora_rank}",
        "algorithm.method=sdar",
        "sft.warm_start=false",  # the step's cost, not the warm start's
        "trainer.save_every=0",
        f"seed={args.seed}",
        *args.override,
    ]
    if args.tasks:
        overrides.append(f"rollout.tasks_per_step={args.tasks}")
    if args.group_size:
        overrides.append(f"rollout.group_size={args.group_size}")
    if args.max_turns:
        overrides.append(f"env.max_turns={args.max_turns}")
    if args.max_new_tokens:
        overrides.append(f"rollout.max_new_tokens={args.max_new_tokens}")
    return load_config(preset, overrides)


def timed(functions: dict, repeats: int, warmup: int, before=None) -> dict[str, tuple[float, float]]:
    """(wall, CPU) median seconds of each function over `repeats` rounds, after `warmup` untimed rounds.

    CPU time (this process, one thread) is what the ratios use: other jobs on a shared machine stretch wall
    time by tens of percent from one call to the next, but barely this process's own CPU time. The last two
    functions (the two updates) swap places every other round, so neither always runs first.
    """
    wall: dict[str, list[float]] = {name: [] for name in functions}
    cpu: dict[str, list[float]] = {name: [] for name in functions}
    for round_index in range(warmup + repeats):
        order = list(functions.items())
        if round_index % 2:
            order[-2:] = order[:-3:-1]
        for name, function in order:
            if before is not None:
                before()
            begin, begin_cpu = time.perf_counter(), time.process_time()
            function()
            if round_index >= warmup:
                wall[name].append(time.perf_counter() - begin)
                cpu[name].append(time.process_time() - begin_cpu)
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name])) for name in functions}


def training_state_restorer(trainer: Trainer):
    """A function that puts back the weights, optimizer moments and schedule the trainer has now."""
    weights = {name: value.clone() for name, value in trainable_state(trainer.model).items()}
    optimizer = copy.deepcopy(trainer.optimizer.state_dict())
    scheduler = copy.deepcopy(trainer.scheduler.state_dict())

    def restore() -> None:
        parameters = dict(trainer.model.named_parameters())
        with torch.no_grad():
            for name, value in weights.items():
                parameters[name].copy_(value)
        trainer.optimizer.load_state_dict(copy.deepcopy(optimizer))
        trainer.scheduler.load_state_dict(scheduler)

    return restore


class Phases:
    """Each phase of a step on one fixed batch, through the library calls the trainer makes."""

    def __init__(self, trainer: Trainer, turns, batch, measure=contextlib.nullcontext):
        self.trainer, self.turns, self.batch = trainer, turns, batch
        config = trainer.config
        # As the trainer does: the no-grad passes run at the update's precision (trainer.autocast_bf16).
        self.scoring = lambda: bf16_autocast(config.trainer.autocast_bf16, batch.input_ids.device)
        self.micro = config.trainer.micro_batch_rows
        self.skill_library = trainer.session.skill_library
        # Built once as the trainer does inside teacher_logprobs (prompt building is timed separately).
        self.prompts = build_teacher_prompts(
            turns, trainer.tokenizer, env_name=self.skill_library, placement=config.teacher.placement
        )
        self.sdar = settings_from_config(config.algorithm)
        self.grpo = settings_from_config(replace(config.algorithm, method="grpo"))
        batch.advantages = advantages_from_config(
            config.algorithm, batch.rewards, batch.group_index, batch.episode_index
        )
        with measure("old log-probs"):
            batch.old_logprobs = self.old()
        with measure("ref log-probs"):
            batch.ref_logprobs = self.ref()
        with measure("teacher log-probs, shared prefix"):
            batch.teacher_logprobs = self.teacher(True)
        self.restore = training_state_restorer(trainer)

    def old(self):
        with self.scoring():
            return score_batch(self.trainer.model, self.batch, micro_batch_rows=self.micro)[0]

    def ref(self):
        with self.scoring():
            return self.trainer.reference_logprobs(self.batch)

    def teacher(self, share_prefix: bool, prompts=None):
        config = self.trainer.config
        with self.scoring(), self.trainer.session.teacher.scoring_model() as model:
            return teacher_logprobs(
                model,
                self.trainer.tokenizer,
                self.turns,
                env_name=self.skill_library,
                placement=config.teacher.placement,
                share_prefix=share_prefix,
                micro_batch_rows=self.micro,
                response_length=self.batch.response_mask.shape[1],
                prompts=self.prompts if prompts is None else prompts,
            )

    def teacher_prompts(self):
        config = self.trainer.config
        return build_teacher_prompts(
            self.turns,
            self.trainer.tokenizer,
            env_name=self.skill_library,
            placement=config.teacher.placement,
        )

    def update(self, method: str):
        if method == "sdar":
            return update_step(self.trainer, self.batch, self.sdar)
        return update_step(self.trainer, replace(self.batch, teacher_logprobs=None), self.grpo)


def update_step(trainer: Trainer, batch, settings):
    """The trainer's update of step 0 on `batch` under the objective `settings`."""
    return policy_update(
        Learner(trainer.model, trainer.optimizer, trainer.scheduler),
        batch,
        objective=settings,
        trainer=replace(trainer.config.trainer, skip_zero_gradient=False),
        step=0,
        generator=torch.Generator().manual_seed(step_seed(trainer.config.seed, 0, salt=1)),
    )


def step_cost(args) -> None:
    config = build_config(args)
    with tempfile.TemporaryDirectory() as run_dir:
        started = time.perf_counter()
        trainer = Trainer(config, run_dir)
        setup = time.perf_counter() - started
        try:
            episodes, stats = trainer.session.rollout(0, seed=step_seed(config.seed, 0))
            turns = [turn for episode in episodes for turn in episode.turns]
            batch = rows_to_batch(turns, trainer.tokenizer.pad_token_id)
            phases = Phases(trainer, turns, batch)
            report_shape(config, trainer, turns, phases, stats, setup)
            # Untimed: a process's first update pays one-time costs (up to ~7 s more at the alfworld_cpu
            # shape: first touch of ~4 GB of activation memory, autograd and autocast set-up).
            phases.update("sdar")
            functions = {
                "old log-probs": phases.old,
                "ref log-probs": phases.ref,
                "teacher prompts (build + tokenize)": phases.teacher_prompts,
                "teacher log-probs, shared prefix": lambda: phases.teacher(True),
                "teacher log-probs, full prompt per row": lambda: phases.teacher(False),
                "update, GRPO": lambda: phases.update("grpo"),
                "update, SDAR (+ distillation)": lambda: phases.update("sdar"),
            }
            if args.no_full_prompt:
                del functions["teacher log-probs, full prompt per row"]
            seconds = timed(functions, args.repeats, args.warmup, before=phases.restore)
        finally:
            trainer.close()
    rollout_s = stats["train/time_s"]
    width = max(map(len, seconds))
    print(
        f"\nmedian of {args.repeats} (after {args.warmup} warm-up round(s); old, ref and teacher ran once "
        f"before), {torch.get_num_threads()} thread(s), bf16 autocast {config.trainer.autocast_bf16}:"
        f"\n  {'phase':{width}s} {'wall ms':>10s} {'CPU ms':>10s}"
    )
    for name, (wall, cpu) in seconds.items():
        print(f"  {name:{width}s} {wall * 1000:10.1f} {cpu * 1000:10.1f}")
    print(f"  {'rollout (generation + env, once)':{width}s} {rollout_s * 1000:10.1f}")
    for column, clock in ((1, "CPU"), (0, "wall")):
        time_of = {name: values[column] for name, values in seconds.items()}
        grpo = time_of["old log-probs"] + time_of["ref log-probs"] + time_of["update, GRPO"]
        sdar_base = (
            time_of["old log-probs"] + time_of["ref log-probs"] + time_of["update, SDAR (+ distillation)"]
        )
        sdar_base += time_of["teacher prompts (build + tokenize)"]
        print(
            f"{clock} time: GRPO step (old + ref + update) {grpo:.3f} s; the distillation term adds "
            f"{time_of['update, SDAR (+ distillation)'] - time_of['update, GRPO']:+.3f} s to the update"
        )
        for label, key in (("shared prefix", "teacher log-probs, shared prefix"),
                           ("no shared prefix", "teacher log-probs, full prompt per row")):  # fmt: skip
            if key in time_of:
                sdar = sdar_base + time_of[key]
                print(
                    f"  SDAR / GRPO, {label:16s}: training phases {sdar / grpo:.3f} (SDAR {sdar:.3f} s), "
                    f"with the rollout's wall time in both {(sdar + rollout_s) / (grpo + rollout_s):.3f}"
                )


def report_shape(config, trainer, turns, phases, stats, setup) -> None:
    prompt = [len(turn.prompt_ids) for turn in turns]
    response = [len(turn.response_ids) for turn in turns]
    teacher = [len(p.prompt_ids) for p in phases.prompts]
    skills = sorted({p.inserted for p in phases.prompts})
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    rollout = config.rollout
    print(
        f"model {config.model.name} ({config.model.dtype}, LoRA rank {config.model.lora_rank}, "
        f"{trainable / 1e6:.2f} M trainable), update autocast bf16 {config.trainer.autocast_bf16}, "
        f"micro-batch {config.trainer.micro_batch_rows} rows, setup {setup:.1f} s"
    )
    print(
        f"rollout: {rollout.tasks_per_step} tasks x G={rollout.group_size}, <= {config.env.max_turns} turns, "
        f"<= {rollout.max_new_tokens} new tokens -> {len(turns)} rows in {stats['train/time_s']:.1f} s"
    )
    print(
        f"tokens per row, mean (range): prompt {statistics.mean(prompt):.0f} ({min(prompt)}-{max(prompt)}), "
        f"response {statistics.mean(response):.0f} ({min(response)}-{max(response)}), teacher prompt "
        f"{statistics.mean(teacher):.0f}; skill text {skills[0]}-{skills[-1]} tokens, "
        f"{len({p.skills for p in phases.prompts})} skill set(s); "
        f"padded batch {tuple(phases.batch.input_ids.shape)}"
    )


# ---- memory ------------------------------------------------------------------------------------------------
def memory_kib(field: str) -> int:
    """VmRSS (now) or VmHWM (peak since start or the last reset) of this process, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


class PeakMemory:
    """`with peaks(name): ...` records the peak RSS inside the block (VmHWM reset on entry, Linux >= 4.0)."""

    def __init__(self) -> None:
        self.peaks: dict[str, int] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        Path("/proc/self/clear_refs").write_text("5")
        try:
            yield
        finally:
            self.peaks[name] = memory_kib("VmHWM")


def memory_step(args) -> None:
    """One SDAR step (old, ref, teacher, update) on synthetic rows; prints the RSS after load and the peak."""
    sys.path.insert(0, str(Path(__file__).parent))
    from teacher_cost import make_turns  # real ALFWorld prompts grown to a length, random responses

    config = build_config(args)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(config, run_dir)
        try:
            response_tokens = 64
            turns = make_turns(
                trainer.tokenizer,
                args.memory_rows,
                4,
                args.memory_tokens - response_tokens,
                response_tokens,
                0,
            )
            batch = rows_to_batch(turns, trainer.tokenizer.pad_token_id)
            loaded_rss, loaded_peak = memory_kib("VmRSS"), memory_kib("VmHWM")
            peaks = PeakMemory()
            phases = Phases(trainer, turns, batch, measure=peaks)  # old, ref and teacher passes
            with peaks("update, SDAR"):
                phases.update("sdar")
        finally:
            trainer.close()
    gib = 1024**2
    process_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    skill_tokens = statistics.mean(p.inserted for p in phases.prompts)
    print(
        f"memory, {config.model.name} LoRA {config.model.lora_rank}, SDAR step on rows x tokens "
        f"{tuple(batch.input_ids.shape)} (teacher prompts +{skill_tokens:.0f} skill tokens), micro-batch "
        f"{config.trainer.micro_batch_rows}, autocast bf16 {config.trainer.autocast_bf16}:\n"
        f"  RSS after load {loaded_rss / gib:.2f} GiB (peak while loading {loaded_peak / gib:.2f} GiB)\n"
        + "".join(f"  peak RSS during {name}: {kib / gib:.2f} GiB\n" for name, kib in peaks.peaks.items())
        + f"  peak RSS of the step {max(peaks.peaks.values()) / gib:.2f} GiB "
        f"({max(peaks.peaks.values()) * 1024 / 1e9:.2f} GB; process maximum {process_peak / gib:.2f} GiB)"
    )


def shape_parser(description: str, tasks: int | None = None, group_size: int | None = None):
    """A parser of what `build_config` reads: the model and the step's shape (None: the preset's)."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", default="tiny", help="tiny (smoke preset) | smollm2-135m (alfworld_cpu preset)"
    )
    parser.add_argument("--lora-rank", type=int, default=0)
    preset = lambda value: "" if value is not None else " (default: the preset's)"  # noqa: E731
    parser.add_argument("--tasks", type=int, default=tasks, help="tasks (groups) per step" + preset(tasks))
    parser.add_argument("--group-size", type=int, default=group_size, help="G" + preset(group_size))
    parser.add_argument("--max-turns", type=int, default=None)
    parser.add_argument("--max-new-tokens", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE", help="any config key")
    return parser


def main(argv=None) -> int:
    parser = shape_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=2, help="an even count balances the updates' order")
    parser.add_argument("--warmup", type=int, default=0, help="untimed rounds before the timed ones")
    parser.add_argument(
        "--no-full-prompt", action="store_true", help="skip the teacher without shared prefix"
    )
    parser.add_argument("--memory", action="store_true", help="also measure the memory step (child process)")
    parser.add_argument("--memory-only", action="store_true")
    parser.add_argument("--memory-rows", type=int, default=8)
    parser.add_argument("--memory-tokens", type=int, default=512)
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    if args.memory_child:
        memory_step(args)
        return 0
    if not args.memory_only:
        step_cost(args)
    if args.memory or args.memory_only:
        argv_child = [
            arg
            for arg in (argv if argv is not None else sys.argv[1:])
            if arg not in ("--memory", "--memory-only")
        ]
        subprocess.run([sys.executable, __file__, *argv_child, "--memory-child"], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
