"""The sections of a run's config that say how the trainer runs, its supervised warm start and its
evaluation panel: trainer, sft and eval, as frozen dataclasses whose fields carry their meaning, default and
allowed values (sdar.config_fields); `sdar.config` assembles them into a `Config`. Paper values cite
docs/method.md §6.
"""

from __future__ import annotations

from dataclasses import dataclass

from sdar.config_fields import ValidatedSection, bounded, choice, setting


@dataclass(frozen=True)
class TrainerConfig(ValidatedSection):
    _section = "trainer"
    steps: int = bounded(150, 0, help="training steps, each one rollout and one policy update (paper: 150)")
    lr: float = bounded(
        1e-6, 0.0, help="AdamW learning rate of the policy (paper: 1e-6; LoRA runs here use 5e-5 to 3e-4)"
    )
    weight_decay: float = bounded(0.01, 0.0, help="AdamW weight decay (paper: 0.01)")
    grad_clip: float = bounded(
        1.0, 0.0, help="largest global L2 norm of the gradient; 0 = no clipping (paper: 1)"
    )
    warmup_ratio: float = bounded(
        0.0,
        0.0,
        1.0,
        help="share of the steps over which the learning rate rises linearly to lr (Search-QA: 0.1)",
    )
    mini_batch_rows: int = bounded(
        256,
        1,
        help="turn rows per mini-batch, one optimizer step each, over every process (paper: 256; WebShop 64)",
    )
    micro_batch_rows: int = bounded(
        4, 1, help="rows per forward and backward pass on each process, updates and scoring passes alike"
    )
    ppo_epochs: int = bounded(
        1, 1, help="passes over a step's rows, each reshuffled into mini-batches (paper: 1)"
    )
    # The scoring passes too, so the PPO ratio and the teacher-student gap compare log-probs of one
    # precision; generation stays at the model's dtype.
    autocast_bf16: bool = setting(
        False, "bf16 autocast for the update and the no-grad scoring passes (old, ref, teacher)"
    )
    # Without it a GPU run repeats only approximately (benchmarks/repeatability.py, H100: weights up to 1.5e-4
    # apart after 2 steps). CPU runs are deterministic either way.
    deterministic: bool = setting(
        False,
        "GPU: torch's deterministic kernels (slower, for the whole process), so a run repeats and resumes "
        "bit for bit",
    )
    # fsdp is PyTorch FSDP2 (torch's fully_shard), one unit per decoder layer; it also shards a full
    # fine-tuning run's frozen reference copy. One process trains the same either way.
    sharding: str = choice(
        "none",
        ("none", "fsdp"),
        "how the processes of `accelerate launch` hold the model: none = each holds all of it and gradients "
        "are summed (data parallelism); fsdp = weights, gradients and optimizer state are sharded over them "
        "(docs/scaling.md)",
    )
    cpu_offload: bool = setting(
        False, "fsdp: keep the sharded parameters, gradients and optimizer state in CPU memory between uses"
    )
    # Such a run would run out of memory part-way, after minutes of loading and sampling.
    memory_check: bool = setting(
        True,
        "GPU: refuse to start a run whose `sdar plan` estimate exceeds the GPU's memory; false starts it",
    )
    max_bad_updates: int = bounded(3, 1, help="consecutive non-finite updates before the run stops")
    # GRPO: every group all won or all lost, and no entropy or KL term. AdamW otherwise still moves the
    # weights there, by its momentum and weight decay: with few episodes a step, where most GRPO steps carry
    # no reward signal, that motion can exceed the real updates' (experiments/cpu_reproduction). Off by
    # default, like verl. Either way, rows on which the objective has no gradient get no forward or backward
    # pass (`rows_with_gradient`).
    skip_zero_gradient: bool = setting(
        False, "skip the optimizer step of a mini-batch whose gradient is exactly zero"
    )
    # The first episode of every task, then the second of every task, and so on.
    sample_episodes: int = bounded(
        2, 0, help="episodes per step written with per-token gap and gate to RUN/samples.jsonl (sdar view)"
    )
    save_every: int = bounded(
        10, 0, help="save a checkpoint (RUN/checkpoints/step_N) every N steps and after the last; 0 = never"
    )
    keep_last: int = bounded(0, 0, help="keep only the newest N checkpoints (0 = every one)")
    eval_every: int = bounded(
        0, 0, help="evaluate the eval panel every N steps into RUN/eval/step_<N>; 0 = never"
    )
    eval_at_ends: bool = setting(
        True,
        "evaluate the eval panel before the first and after the last step (RUN/eval/step_0, RUN/eval/final)",
    )
    eval_at_start: bool = setting(
        True,
        "the step-0 half of eval_at_ends; off when several runs share one warm start evaluated elsewhere",
    )
    tensorboard: bool = setting(
        True, "TensorBoard event files in RUN/tensorboard when the package is installed"
    )
    wandb_project: str = setting(
        "", 'the Weights & Biases project to log to (needs `pip install wandb`); "" = no wandb logging'
    )


@dataclass(frozen=True)
class SFTConfig(ValidatedSection):
    _section = "sft"
    warm_start: bool = setting(
        False, "`sdar train`: first run (or reuse the cached) supervised warm start and start RL from it"
    )
    split: str = setting("train", "the split whose first `games` tasks the expert plays for demonstrations")
    games: int = bounded(60, 1, help="tasks whose expert episodes become demonstrations")
    epochs: int = bounded(2, 1, help="passes over the demonstrations")
    lr: float = bounded(2e-4, 0.0, help="AdamW learning rate of the warm start (no weight decay)")
    lora_rank: int = bounded(16, 0, help="LoRA rank of the warm start; 0 = full fine-tuning")
    batch_rows: int = bounded(16, 1, help="demonstration turns per optimizer step")
    with_skills: bool = setting(
        False, "also train on copies of the demonstrations whose prompt carries the skills"
    )
    # teacher: the model learns to read skills where the teacher will see them.
    skills_format: str = choice(
        "teacher",
        ("teacher", "student"),
        "where those copies carry the skills: teacher = the teacher's prompt (teacher.placement); student = "
        "Skill-GRPO's section in the user message",
    )
    # Demonstrations from other games than RL trains on: alfworld-gen's shuffled priors teach reading the
    # alfworld-places skill.
    env_options: dict = setting(
        {}, "env.options overridden for the demonstration games only, e.g. {priors: shuffled}"
    )
    # A fixed value lets runs of several seeds start from one warm start (one cached model), so seeds differ
    # only in their RL.
    seed: int = bounded(-1, -1, help="the warm start's seed; -1 = the run's seed")
    # Rebuilt, the warm start has the same weights up to float rounding on any machine; trained again
    # elsewhere it is a measurably different model.
    adapter: str = setting(
        "",
        "a saved LoRA warm start's adapter folder (WARM_START/adapter, e.g. kept with an experiment) to "
        'rebuild the warm start from instead of training it; "" = train it',
    )


@dataclass(frozen=True)
class EvalConfig(ValidatedSection):
    _section = "eval"
    policy: str = choice(
        "model",
        ("model", "expert", "random", "no_search"),
        "who plays the panel: model = the policy, expert = the env's expert, random = uniform over "
        "admissible actions, no_search = Search-QA's closed-book baseline",
    )
    split: str = setting(
        "valid_seen", "the panel's split, in the env's fixed order (paper: ALFWorld valid_seen, valid_unseen)"
    )
    num_tasks: int = bounded(
        0, 0, help="tasks in the panel: the split's first N (or N spread over it); 0 = all"
    )
    # ALFWorld lists its games grouped by task type, so its first 36 valid_seen games are all Look or Pick; 36
    # spread cover all six.
    spread: bool = setting(
        False, "num_tasks evenly spaced over the split's fixed order instead of its first ones"
    )
    seeds: tuple = setting(
        (0,), "sampling seeds: the panel is played once per seed (expert and greedy play once for all)"
    )
    temperature: float = bounded(
        0.4,
        0.0,
        help="sampling temperature of the panel's episodes; 0 = greedy (paper: 0.4; Search-QA greedy)",
    )
    # Also the "student given the teacher's information" side of a teacher-vs-student measurement.
    student_skills: bool = setting(
        False,
        "the model policy sees the env's routed skills in its prompt (the paper's Skill-Prompt baseline)",
    )
    # teacher: the teacher acting, as a warm start trained on teacher-format demonstrations
    # (sft.skills_format: teacher) reads them.
    skills_placement: str = choice(
        "student",
        ("student", "teacher"),
        "where those skills go: student = Skill-GRPO's section in the user message; teacher = the teacher's "
        "own prompt (teacher.placement)",
    )
    teacher_context: str = setting(
        "",
        "with student_skills and several teachers (teacher.contexts): the name of the context whose skills "
        'the policy reads; "" = the teacher section\'s own skill_library and skills_dir',
    )
