"""Our GRPO step against TRL's `GRPOTrainer` step on one job, timed alternately in one process.

    pip install trl                                                       # not a dependency of sdar
    python benchmarks/trl_step_cost.py                                    # the job below, 1 + 4 steps each
    python benchmarks/trl_step_cost.py --repeats 6 --kl-coef 0 --entropy-coef 0   # TRL's default terms

The job: one turn of generated ALFWorld games (alfworld_cpu's env), SmolLM2-135M-Instruct (the embedded
model, fp32, full fine-tuning), 4 prompts x G = 4 completions of at most 32 new tokens at temperature 1, one
optimizer step per generation batch in micro-batches of 4 rows. The same settings on both sides, as far as
they map:

    ours (trainer config)                     TRL (GRPOConfig)
    trainer.lr, weight_decay 0.01, constant   learning_rate, weight_decay, lr_scheduler_type="constant"
    torch AdamW, grad_clip 1.0                optim="adamw_torch", max_grad_norm
    one mini-batch, ppo_epochs 1              gradient_accumulation_steps = 16 / micro-batch, num_iterations 1
    trainer.micro_batch_rows                  per_device_train_batch_size
    clip 0.2, dual clip 3                     epsilon 0.2, delta 3 (the same bound on the negative side)
    token-mean over the batch                 loss_type="dapo"
    GRPO advantages normalised by group std   scale_rewards="group"
    kl_coef (k3 to the initial model)         beta (k3 to a reference copy)
    entropy_coef                              entropy_coef
    model.gradient_checkpointing (off)        gradient_checkpointing (TRL's default is on: set to ours)
    reward: -invalid_penalty for a reply      the same reward function (sdar's ALFWorld reply parser); the
    that does not parse (no game is won in    prompts are those our first (warm-up) step played, as text
    one turn)

What differs by design: our step steps the real ALFWorld engine (in-process, `env.workers=0`) and stops a
reply at `</action>`, TRL's calls a reward function and stops at EOS only (the mean completion lengths are
printed). Our step's phases are the trainer's own timers (`time/*_s`); TRL's are timed by wrapping its
`_generate`, `_calculate_rewards` and reference pass (`_get_per_token_logps_and_entropies` without gradient).

Order: our --warmup steps first (untimed; they also give the prompts), then TRL's trainer runs; after each of
its steps a callback runs one of ours, so the two alternate (TRL's first --warmup steps are untimed too).
Each step is timed in wall and CPU time of this process; medians over --repeats, ratio ours / TRL.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from sdar.config import load_config  # noqa: E402
from sdar.envs.replies import parse_action_reply  # noqa: E402
from sdar.models.embedded import embedded_model_dir  # noqa: E402
from sdar.training.trainer import Trainer  # noqa: E402

ROWS = 16  # 4 prompts x G = 4, one turn each


def import_trl():
    try:
        import trl
    except ImportError:
        raise SystemExit(
            "this benchmark compares against TRL, which is not installed: pip install trl "
            "(keep your torch and transformers: check `pip install --dry-run trl` first)"
        ) from None
    return trl


def build_config(args):
    overrides = [
        "model.name=smollm2-135m",
        "model.lora_rank=0",  # full fine-tuning
        "model.dtype=fp32",
        f"model.gradient_checkpointing={str(args.gradient_checkpointing).lower()}",
        "sft.warm_start=false",
        "algorithm.method=grpo",
        f"algorithm.kl_coef={args.kl_coef}",
        f"algorithm.entropy_coef={args.entropy_coef}",
        "rollout.tasks_per_step=4",
        "rollout.group_size=4",
        f"rollout.max_new_tokens={args.max_new_tokens}",
        "rollout.temperature=1.0",
        "rollout.top_p=1.0",
        "env.max_turns=1",
        "env.workers=0",
        f"trainer.lr={args.lr}",
        "trainer.weight_decay=0.01",
        "trainer.grad_clip=1.0",
        f"trainer.mini_batch_rows={ROWS}",
        f"trainer.micro_batch_rows={args.micro_batch_rows}",
        "trainer.ppo_epochs=1",
        "trainer.autocast_bf16=false",
        "trainer.save_every=0",
        "trainer.eval_at_ends=false",
        "trainer.sample_episodes=0",
        "trainer.tensorboard=false",
        f"seed={args.seed}",
    ]
    return load_config("alfworld_cpu", overrides)


def mark() -> tuple[float, float]:
    """(wall, CPU) clocks now; CPU = this process's, every thread."""
    return time.perf_counter(), time.process_time()


class Clock:
    """Per-step wall and CPU seconds of a whole step, and wall seconds of named phases inside it."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.phases: dict[str, list[float]] = defaultdict(list)
        self.current: dict[str, float] = defaultdict(float)

    def step_done(self, since: tuple[float, float], phases: dict[str, float] | None = None) -> None:
        wall, cpu = mark()
        self.wall.append(wall - since[0])
        self.cpu.append(cpu - since[1])
        for name, seconds in (phases if phases is not None else self.current).items():
            self.phases[name].append(seconds)
        self.current = defaultdict(float)


def timed_method(clock: Clock, name: str, method, only=lambda: True):
    """`method` wrapped so that each call while `only()` holds adds its wall seconds to the clock's current
    step under `name`."""

    def wrapper(*args, **kwargs):
        if not only():
            return method(*args, **kwargs)
        since = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            clock.current[name] += time.perf_counter() - since

    return wrapper


def invalid_reply_reward(invalid_penalty: float):
    """TRL reward function: what our one-turn rows get, −penalty for a reply that does not parse, else 0."""

    def reward(prompts, completions, **kwargs) -> list[float]:
        return [0.0 if parse_action_reply(text).valid else -invalid_penalty for text in completions]

    return reward


def trl_trainer(trl, args, config, prompts: list[str], tokenizer, run_dir: str, callback):
    from datasets import Dataset
    from transformers import PrinterCallback, ProgressCallback

    grpo = trl.GRPOConfig(
        output_dir=run_dir,
        max_steps=args.warmup + args.repeats,
        learning_rate=args.lr,
        weight_decay=0.01,
        lr_scheduler_type="constant",
        optim="adamw_torch",
        max_grad_norm=1.0,
        per_device_train_batch_size=args.micro_batch_rows,
        gradient_accumulation_steps=ROWS // args.micro_batch_rows,
        num_generations=config.rollout.group_size,
        max_completion_length=args.max_new_tokens,
        temperature=1.0,
        top_p=1.0,
        num_iterations=1,
        epsilon=config.algorithm.clip_low,
        delta=config.algorithm.dual_clip,
        loss_type="dapo",
        scale_rewards="group",
        beta=args.kl_coef,
        entropy_coef=args.entropy_coef,
        bf16=False,
        gradient_checkpointing=args.gradient_checkpointing,
        use_cpu=not torch.cuda.is_available(),
        seed=args.seed,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    # Enough rows that one epoch covers every step (the same prompts again and again).
    rows = [{"prompt": prompt} for prompt in prompts] * (args.warmup + args.repeats + 1)
    trainer = trl.GRPOTrainer(
        model=str(embedded_model_dir(config.model.cache_dir)),
        reward_funcs=[invalid_reply_reward(config.env.invalid_penalty)],
        args=grpo,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=[callback],
    )
    for quiet in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(quiet)
    return trainer


def run(args) -> None:
    trl = import_trl()
    from transformers import TrainerCallback

    config = build_config(args)
    ours_clock, trl_clock = Clock(), Clock()
    completion_lengths: dict[str, list[float]] = defaultdict(list)
    with tempfile.TemporaryDirectory() as run_dir:
        ours = Trainer(config, f"{run_dir}/ours")
        try:
            episodes = []
            for step in range(args.warmup):  # untimed: one-time costs; its prompts become TRL's dataset
                episodes = ours.train_step(step).episodes
            first_turns = {episode.group_index: episode.turns[0] for episode in episodes}
            prompts = [ours.tokenizer.decode(turn.prompt_ids) for turn in first_turns.values()]
            prompt_tokens = [len(turn.prompt_ids) for turn in first_turns.values()]
            # TRL tokenizes the text again: the same ids, or the two sides would not run one job
            retokenized = [ours.tokenizer(prompt)["input_ids"] for prompt in prompts]
            if retokenized != [turn.prompt_ids for turn in first_turns.values()]:
                raise RuntimeError("the decoded prompts do not tokenize back to the ids our step played")

            def our_step(step: int) -> None:
                since = mark()
                metrics = ours.train_step(step).metrics
                phases = {
                    key: metrics.get(f"time/{key}_s", 0.0) for key in ("rollout", "old", "ref", "update")
                }
                ours_clock.step_done(since, phases)
                completion_lengths["ours"].append(
                    metrics["train/generated_tokens"] / metrics["train/episodes"]
                )

            class Alternate(TrainerCallback):
                """After each TRL step: its time, then one of our steps, then TRL's next step begins."""

                def __init__(self) -> None:
                    self.since = None

                def on_train_begin(self, *unused, **kwargs):
                    self.since = mark()

                def on_step_end(self, arguments, state, control, **kwargs):
                    # TRL's step number `global_step` is done; then our step of the same number
                    if state.global_step > args.warmup:
                        trl_clock.step_done(self.since)
                        our_step(state.global_step - 1)
                    self.since = mark()

                def on_log(self, arguments, state, control, logs=None, **kwargs):
                    if logs and "completions/mean_length" in logs and state.global_step > args.warmup:
                        completion_lengths["trl"].append(logs["completions/mean_length"])

            trainer = trl_trainer(trl, args, config, prompts, ours.tokenizer, f"{run_dir}/trl", Alternate())
            counting = lambda: trainer.state.global_step >= args.warmup  # the warm-up steps are not  # noqa: E731
            trainer._generate = timed_method(trl_clock, "generation", trainer._generate, counting)
            trainer._calculate_rewards = timed_method(
                trl_clock, "rewards", trainer._calculate_rewards, counting
            )
            trainer._get_per_token_logps_and_entropies = timed_method(
                trl_clock,
                "reference pass",
                trainer._get_per_token_logps_and_entropies,
                lambda: counting() and not torch.is_grad_enabled(),
            )
            trainer.train()
        finally:
            ours.close()
    report(args, trl, ours_clock, trl_clock, completion_lengths, prompt_tokens)


def report(args, trl, ours_clock: Clock, trl_clock: Clock, completion_lengths, prompt_tokens) -> None:
    import transformers

    repeats = len(ours_clock.wall)
    print(
        f"\nSmolLM2-135M-Instruct fp32, full fine-tuning, 4 prompts x G = 4, <= {args.max_new_tokens} new "
        f"tokens, micro-batch {args.micro_batch_rows}, lr {args.lr}, KL {args.kl_coef}, entropy "
        f"{args.entropy_coef}, gradient checkpointing {args.gradient_checkpointing}; torch "
        f"{torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}, "
        f"{torch.get_num_threads()} thread(s)"
    )
    print(
        f"prompt tokens {min(prompt_tokens)}-{max(prompt_tokens)}; completion tokens, median of the steps' "
        f"means: ours {median(completion_lengths['ours']):.1f}, TRL {median(completion_lengths['trl']):.1f}"
    )
    print(f"median of {repeats} alternating steps each, after {args.warmup} untimed warm-up step(s) each:")
    print(f"  {'':36s} {'wall s':>8s} {'CPU s':>8s}")
    sides = (
        ("TRL GRPOTrainer step", trl_clock, ("generation", "rewards", "reference pass")),
        ("ours (sdar Trainer.train_step)", ours_clock, ("rollout", "old", "ref", "update")),
    )
    labels = {"rollout": "rollout (generation + env)", "old": "old log-probs", "ref": "reference pass"}
    for title, clock, phases in sides:
        print(f"  {title:36s} {median(clock.wall):8.2f} {median(clock.cpu):8.2f}")
        for name in phases:
            print(f"    {labels.get(name, name):34s} {median(clock.phases[name]):8.2f}")
        if clock is trl_clock:
            rest = [
                wall - sum(clock.phases[name][index] for name in phases if clock.phases[name])
                for index, wall in enumerate(clock.wall)
            ]
            print(f"    {'update and the rest':34s} {median(rest):8.2f}")
    print(
        f"ours / TRL: wall {median(ours_clock.wall) / median(trl_clock.wall):.3f}, CPU "
        f"{median(ours_clock.cpu) / median(trl_clock.cpu):.3f} (target <= 0.85)"
    )
    print(
        f"per-step wall s: ours {[round(value, 1) for value in ours_clock.wall]}, "
        f"TRL {[round(value, 1) for value in trl_clock.wall]}"
    )


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=4, help="timed steps of each side")
    parser.add_argument("--warmup", type=int, default=1, help="untimed first steps of each side (at least 1)")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--micro-batch-rows", type=int, default=4, choices=(1, 2, 4, 8, 16))
    parser.add_argument("--lr", type=float, default=1e-6)
    parser.add_argument("--kl-coef", type=float, default=0.01, help="ours: algorithm.kl_coef; TRL: beta")
    parser.add_argument("--entropy-coef", type=float, default=0.001, help="both: the entropy bonus weight")
    parser.add_argument(
        "--gradient-checkpointing", action="store_true", help="on both sides (TRL's default, not ours)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.warmup < 1:
        parser.error("--warmup must be at least 1: the first step's prompts become TRL's dataset")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
