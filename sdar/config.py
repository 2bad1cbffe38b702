"""Run configuration: frozen dataclasses, the only home of defaults.

A config is built from a preset name or a YAML file, then dotted `section.field=value` overrides
(`sdar.config_files`), and is validated when constructed: a bad field raises `ConfigError` naming the field,
the bad value and what is allowed. A field's choices that name registry entries (methods, gates, advantage
estimators, ...) are read from that registry. `None` in an algorithm field means "the method's default" (see
`sdar.algorithms.methods`), in env.max_turns "the env's turn limit" (its registry entry); `resolve()` fills
those in so a saved config states every value the run used.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sdar.config_files import from_dict, merge_overrides, read_source, to_dict
from sdar.config_files import parse_override as parse_override  # the CLI's and tests' sdar.config names
from sdar.config_files import preset_names as preset_names
from sdar.errors import ConfigError
from sdar.plugins import anchor_plugin_paths, import_plugins
from sdar.teacher_contexts import teacher_contexts


class RegistryNames(Sequence):
    """The names of a registry as a field's choices, read from it whenever they are used: the registries of
    `sdar.algorithms` import torch, which `import sdar.config` must not (the CLI and `sdar.api` start
    without it). Equal to the tuple of the names."""

    def __init__(self, read: Callable[[], Iterable[str]]):
        self._read = read

    def names(self) -> tuple[str, ...]:
        return tuple(self._read())

    def __getitem__(self, index):
        return self.names()[index]

    def __len__(self) -> int:
        return len(self.names())

    def __contains__(self, value) -> bool:
        return value in self.names()

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and self.names() == tuple(other)

    __hash__ = None

    def __repr__(self) -> str:
        return repr(self.names())


def algorithm_registry(name: str) -> RegistryNames:
    """The names of the registry `sdar.algorithms.<name>` (METHODS, GATES, ADVANTAGES, ...)."""

    def read() -> Iterable[str]:
        import sdar.algorithms

        return getattr(sdar.algorithms, name)

    return RegistryNames(read)


def choice(default: Any, choices: Sequence, help: str = "") -> Any:
    return field(default=default, metadata={"choices": choices, "help": help})


def bounded(
    default: Any,
    low: float | None = None,
    high: float | None = None,
    help: str = "",
    above: float | None = None,
) -> Any:
    """A numeric field within [low, high]; `above` is a strict lower bound."""
    return field(default=default, metadata={"low": low, "high": high, "above": above, "help": help})


def method_default(help: str = "") -> Any:
    """A non-negative coefficient whose `None` means the method's default: `AlgorithmConfig.resolved` takes it
    from the method's entry (sdar.algorithms.methods), which has a field of the same name."""
    return field(
        default=None,
        metadata={"low": 0.0, "high": None, "above": None, "help": help, "method_default": True},
    )


class _Section:
    """Validates the field metadata (choices, bounds) of a frozen dataclass section on construction."""

    def __post_init__(self) -> None:
        section = getattr(self, "_section", type(self).__name__)
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            # NaN passes every bound (all comparisons with it are false) and inf overflows what it scales or
            # bounds, so neither reaches a run. No float field takes inf as "no limit": where a field has
            # one it is spelled 0 or null (trainer.grad_clip: 0, algorithm.dual_clip: null), and a cap or a
            # timeout that should never bind is a large finite number.
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(
                    f"{section}.{f.name}={value!r} is not a finite number; give a finite value "
                    "(NaN and infinities are refused)"
                )
            choices = f.metadata.get("choices")
            if choices is not None and value not in choices:
                raise ConfigError(
                    f"{section}.{f.name}={value!r} is not valid; "
                    f"choose one of: {', '.join(map(str, choices))}"
                )
            low, high = f.metadata.get("low"), f.metadata.get("high")
            if low is not None and value < low or high is not None and value > high:
                span = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
                raise ConfigError(f"{section}.{f.name}={value!r} is out of range; it must lie in {span}")
            above = f.metadata.get("above")
            if above is not None and not value > above:
                raise ConfigError(f"{section}.{f.name}={value!r} is out of range; it must be above {above}")


@dataclass(frozen=True)
class ModelConfig(_Section):
    _section = "model"
    # "smollm2-135m" = the embedded SmolLM2-135M-Instruct (offline); "tiny" = a random-init test model;
    # anything else is a Hugging Face id or a local directory.
    name: str = "smollm2-135m"
    dtype: str = choice("fp32", ("fp32", "bf16"), "parameter dtype")
    lora_rank: int = bounded(0, 0, help="0 = full fine-tuning; > 0 = LoRA adapters of this rank")
    lora_alpha: int = bounded(32, 1)
    lora_dropout: float = bounded(0.0, 0.0, 1.0)
    lora_target_modules: str = "all-linear"
    gradient_checkpointing: bool = False
    cache_dir: str = ""  # "" = $SDAR_CACHE or ~/.cache/sdar (converted embedded model lives there)
    trust_remote_code: bool = False
    # Variables for the chat template, fixed for every prompt (student, teacher, SFT), e.g. Qwen3's
    # {enable_thinking: false}, the paper's setting ("thinking disabled", spec §6).
    chat_template_kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class EnvConfig(_Section):
    _section = "env"
    name: str = "alfworld-gen"
    split: str = "train"
    data_dir: str = ""  # "" = the env's own variable (e.g. $ALFWORLD_DATA)
    # null = the env's protocol limit (its registry entry's default_max_turns, docs/environments.md): the
    # resolved config (`sdar config`, RUN/config.yaml) states the number.
    max_turns: int | None = bounded(None, 1, help="turns an episode may take")
    history_length: int = bounded(2, 0)
    invalid_penalty: float = bounded(0.1, 0.0)
    workers: int = bounded(1, 0, help="env worker processes (0 = in the trainer's process, no hang guard)")
    step_timeout_s: float = bounded(60.0, 0.1)
    # Who runs the `workers` env workers: local processes, or Ray actors spread over a Ray cluster's machines
    # (needs `pip install 'sdar[ray]'`; docs/env-workers.md).
    executor: str = choice("processes", ("processes", "ray"), "env worker executor")
    # The Ray cluster of `executor: ray`: "" = ray.init() (join the local instance or start one); "auto" or
    # "host:port" = join that cluster's head (started with `ray start --head`).
    ray_address: str = ""
    options: dict = field(default_factory=dict)  # env-specific knobs, validated by the env itself

    def resolved(self) -> EnvConfig:
        """This section with max_turns set: `None` becomes the registered env's protocol limit
        (`EnvSpec.default_max_turns`; a plugin's env is registered once the config's plugins are imported)."""
        if self.max_turns is not None:
            return self
        from sdar.envs import ENVS

        if self.name not in ENVS:
            raise ConfigError(
                f"env.name={self.name!r} is not a registered env; choose one of: {', '.join(sorted(ENVS))} "
                "(an env of your own is registered by a module listed under plugins:)"
            )
        return dataclasses.replace(self, max_turns=ENVS[self.name].default_max_turns)


@dataclass(frozen=True)
class VLLMConfig(_Section):
    """The vLLM engine of `rollout.backend=vllm` (sdar/models/vllm_backend.py; docs/vllm.md)."""

    _section = "rollout.vllm"
    # The engine's weights: auto = the model's dtype (model.dtype). bf16 on an fp32 trainer halves the
    # sampler's memory and time at the price of a larger sampler-trainer mismatch (see
    # algorithm.rollout_correction).
    dtype: str = choice("auto", ("auto", "fp32", "bf16"), "engine dtype; auto = model.dtype")
    # GPU: the share of the GPU's memory the engine may take (weights + KV cache); the rest is the trainer's.
    gpu_memory_utilization: float = bounded(0.4, high=1.0, above=0.0)
    # CPU: the KV cache, in GiB (vLLM's CPU backend has no memory profiling to size it from).
    cpu_kv_cache_gb: float = bounded(2.0, above=0.0)
    # CPU: the cores the engine's worker computes on. "all" = every core this process may use (the trainer
    # waits while the engine samples; on 2 cores 3x HF's speed instead of 2.4x, benchmarks/README.md);
    # "auto" = vLLM's own binding, which keeps one core for its scheduler; or a list such as "0-7". The
    # VLLM_CPU_OMP_THREADS_BIND variable, when set, wins.
    cpu_cores: str = "all"
    tensor_parallel_size: int = bounded(1, 1)
    max_model_len: int = bounded(0, 0, help="0 = rollout.max_prompt_tokens + rollout.max_new_tokens")
    # No torch.compile / CUDA graphs: on this CPU the engine starts in ~22 s instead of ~109 s and decodes
    # no slower (benchmarks/README.md, rollout_throughput.py --compare backends).
    enforce_eager: bool = True
    # The G episodes of a group share their first prompt and an episode's turns share their history.
    prefix_caching: bool = True
    # GPU: free the weights and KV cache during the update and take them back afterwards (vLLM sleep mode,
    # level 2: the weights are reloaded from the trainer anyway). vLLM has no sleep mode on CPUs.
    sleep: bool = True


@dataclass(frozen=True)
class RolloutConfig(_Section):
    _section = "rollout"
    tasks_per_step: int = bounded(16, 1, help="B: distinct tasks per training step")
    group_size: int = bounded(8, 1, help="G: episodes per task")
    temperature: float = bounded(1.0, 0.0)
    top_p: float = bounded(1.0, 0.0, 1.0)
    max_new_tokens: int = bounded(512, 1)
    max_prompt_tokens: int = bounded(2048, 16)
    # The generation backend (sdar/models/backends.py): hf = our batched decode loop on the trainer's own
    # model; vllm = a vLLM engine that takes the trainer's weights after every update (docs/vllm.md).
    backend: str = choice("hf", ("hf", "vllm"), "generation backend")
    vllm: VLLMConfig = field(default_factory=VLLMConfig)


@dataclass(frozen=True)
class AlgorithmConfig(_Section):
    _section = "algorithm"
    method: str = choice("sdar", algorithm_registry("METHODS"))
    advantage: str = choice("grpo", algorithm_registry("ADVANTAGES"))
    advantage_stats: str = choice(
        "per_row", algorithm_registry("ADVANTAGE_MODES"), "release default: per_row"
    )
    norm_by_std: bool = True
    clip_low: float = bounded(0.2, 0.0)
    clip_high: float = bounded(0.2, 0.0)
    dual_clip: float | None = bounded(3.0, above=1.0, help="null disables the dual clip")
    kl_estimator: str = choice("k3", algorithm_registry("KL_ESTIMATORS"))
    # sdar/algorithms/aggregation.py. token-mean weighs every token of a mini-batch alike (verl today);
    # micro-batch-mean is the release's: the mean over the mini-batch's micro-batches (every process's) of
    # each one's token-mean. The paper presets keep token-mean: under micro-batch-mean the objective depends
    # on trainer.micro_batch_rows and the process count, settings a run changes to fit its GPUs' memory.
    loss_aggregation: str = choice("token-mean", algorithm_registry("AGGREGATIONS"))
    loss_constant: float = bounded(512.0, 1e-9, help="normaliser of the 'constant' aggregation (Dr. GRPO)")
    gate: str = choice("gap", algorithm_registry("GATES"))
    # None = the method's default (sdar.algorithms.methods.METHODS); resolve() fills them in.
    policy_coef: float | None = method_default()
    kl_coef: float | None = method_default()
    entropy_coef: float | None = method_default()
    distill_coef: float | None = method_default("lambda of the distillation term")
    beta: float | None = method_default()
    # Each step's lambda: constant = distill_coef; adaptive = a share of the policy push (docs/method.md §9)
    distill_weight: str = choice("constant", algorithm_registry("DISTILL_WEIGHTS"))
    distill_weight_target: float = bounded(0.01, 0.0, help="adaptive: distillation push / policy push")
    distill_weight_max: float = bounded(1.0, 0.0, help="adaptive: the largest lambda")
    rlsd_lambda_start: float = bounded(0.5, 0.0, 1.0)
    rlsd_decay_steps: int = bounded(100, 1)
    # The sampler-trainer mismatch correction (docs/rollout-correction.md): "tis" multiplies each token's
    # policy-gradient term by min(pi_old / pi_sampler, rollout_correction_cap), without gradient through it.
    rollout_correction: str = choice(
        "none", algorithm_registry("ROLLOUT_CORRECTIONS"), "tis: truncated importance sampling"
    )
    rollout_correction_cap: float = bounded(2.0, 1.0, help="C of tis: larger ratios are truncated to it")

    def resolved(self) -> AlgorithmConfig:
        """This section with every `None` method-default field set to the method's own value: the one place
        a method's defaults are read (its METHODS entry has a field of each such name)."""
        from sdar.algorithms.methods import get_method

        method = get_method(self.method)
        filled = {
            f.name: getattr(method, f.name)
            for f in dataclasses.fields(self)
            if f.metadata.get("method_default") and getattr(self, f.name) is None
        }
        return dataclasses.replace(self, **filled)


@dataclass(frozen=True)
class TeacherConfig(_Section):
    _section = "teacher"
    placement: str = choice("prefix", ("prefix", "system"), "prefix = release-compatible raw text")
    weights: str = choice("live", ("live", "base", "ema"))
    ema_decay: float = bounded(0.99, 0.0, 1.0)
    share_prefix: bool = True
    score_always: bool = False  # also score the teacher for methods that do not use it (gap diagnostics)
    # The skill library the teacher reads (sdar.skills, plugins included); "" = the env's own. E.g.
    # alfworld-places: one line on where the task's object usually is, instead of the alfworld prose.
    skill_library: str = ""
    # A folder of your own skill texts for that library (e.g. the release's): one <skill>.md per skill it
    # reads, under the same routing (docs/skills.md); "" = the library's own files.
    skills_dir: str = ""
    # Several teachers: name -> {skill_library, skills_dir, weights, skills} (docs/method.md §9)
    contexts: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TrainerConfig(_Section):
    _section = "trainer"
    steps: int = bounded(150, 0)
    lr: float = bounded(1e-6, 0.0)
    weight_decay: float = bounded(0.01, 0.0)
    grad_clip: float = bounded(1.0, 0.0)
    warmup_ratio: float = bounded(0.0, 0.0, 1.0)
    mini_batch_rows: int = bounded(256, 1)
    micro_batch_rows: int = bounded(4, 1)
    ppo_epochs: int = bounded(1, 1)
    # bf16 autocast for the update AND the no-grad scoring passes (old, ref, teacher), so the PPO ratio and
    # teacher-student gap compare log-probs of one precision; generation stays at the model's dtype.
    autocast_bf16: bool = False
    # GPU: torch's deterministic kernels, so that a run repeats and resumes bit for bit (slower, and for the
    # whole process). Without it a GPU run repeats only approximately (benchmarks/repeatability.py, H100:
    # weights up to 1.5e-4 apart after 2 steps). CPU runs are deterministic either way.
    deterministic: bool = False
    # How the processes of `accelerate launch` hold the model (docs/scaling.md): none = each holds all of it
    # and gradients are summed (data parallelism); fsdp = PyTorch FSDP2 (torch's fully_shard) shards the
    # weights, gradients and optimizer state (and a full fine-tuning run's frozen reference copy) over the
    # processes, one unit per decoder layer. One process trains the same either way.
    sharding: str = choice("none", ("none", "fsdp"), "how processes hold the model")
    # fsdp: keep the sharded parameters, gradients and optimizer state in CPU memory between uses.
    cpu_offload: bool = False
    # On GPUs, refuse to start a run whose `sdar plan` estimate exceeds the GPU's whole memory (it would run
    # out of memory part-way, after minutes of loading and sampling); false starts it anyway.
    memory_check: bool = True
    max_bad_updates: int = bounded(3, 1, help="consecutive non-finite updates before the run stops")
    # Skip the optimizer step of a mini-batch whose gradient is exactly zero (GRPO: every group all won or
    # all lost, and no entropy or KL term). AdamW otherwise still moves the weights there, by its momentum
    # and weight decay: with few episodes a step, where most GRPO steps carry no reward signal, that motion
    # can exceed the real updates' (experiments/cpu_reproduction). Off by default, like verl. Either way, rows
    # on which the objective has no gradient get no forward or backward pass (`rows_with_gradient`).
    skip_zero_gradient: bool = False
    # Episodes per step written to RUN/samples.jsonl with per-token gap and gate (`sdar view`): the first of
    # every task, then the second of every task, and so on.
    sample_episodes: int = bounded(2, 0, help="episodes per step in RUN/samples.jsonl (sdar view)")
    save_every: int = bounded(10, 0)
    keep_last: int = bounded(0, 0, help="keep only the newest N checkpoints (0 = every one)")
    eval_every: int = bounded(0, 0, help="evaluate the eval panel every N steps into RUN/eval/step_<N>")
    # Evaluate the eval panel before the first and after the last step (RUN/eval/step_0 and RUN/eval/final).
    eval_at_ends: bool = True
    # The step-0 half of eval_at_ends; off when several runs share one warm start evaluated once elsewhere.
    eval_at_start: bool = True
    tensorboard: bool = True  # TensorBoard event files in RUN/tensorboard when the package is installed
    wandb_project: str = ""  # "" = no Weights & Biases logging; else the project (needs `pip install wandb`)


@dataclass(frozen=True)
class SFTConfig(_Section):
    _section = "sft"
    warm_start: bool = False  # `sdar train`: first run (or reuse the cached) SFT and start RL from it
    split: str = "train"
    games: int = bounded(60, 1, help="tasks whose expert episodes become demonstrations")
    epochs: int = bounded(2, 1)
    lr: float = bounded(2e-4, 0.0)
    lora_rank: int = bounded(16, 0, help="0 = full fine-tuning")
    batch_rows: int = bounded(16, 1, help="demonstration turns per optimizer step")
    with_skills: bool = False  # also train on copies whose prompt carries the skills
    # Where those copies carry the skills: "teacher" = the teacher's prompt (teacher.placement), so the model
    # learns to read skills where the teacher will see them; "student" = Skill-GRPO's section in the user
    # message.
    skills_format: str = choice("teacher", ("teacher", "student"))
    # env.options overridden for the demonstration games only, e.g. {priors: shuffled}: demonstrations from
    # other games than RL trains on (alfworld-gen's shuffled priors teach reading the alfworld-places skill).
    env_options: dict = field(default_factory=dict)
    # The warm start's seed; -1 = the run's seed. A fixed value lets runs of several seeds start from one
    # warm start (one cached model), so seeds differ only in their RL.
    seed: int = bounded(-1, -1)
    # A saved LoRA warm start's adapter folder (WARM_START/adapter, e.g. kept with an experiment): the
    # warm start is rebuilt from it instead of trained, the same weights up to float rounding on any machine
    # (training it again elsewhere gives a measurably different model); "" = train it.
    adapter: str = ""


@dataclass(frozen=True)
class EvalConfig(_Section):
    _section = "eval"
    policy: str = choice("model", ("model", "expert", "random", "no_search"), "no_search: Search-QA only")
    split: str = "valid_seen"
    num_tasks: int = bounded(0, 0, help="0 = the whole panel")
    # num_tasks evenly spaced over the split's fixed order instead of its first ones (ALFWorld lists its games
    # grouped by task type, so its first 36 valid_seen games are all Look or Pick; 36 spread cover all six)
    spread: bool = False
    seeds: tuple = (0,)
    temperature: float = bounded(0.4, 0.0)
    # The model policy sees the env's routed skills in its prompt (the paper's Skill-Prompt baseline, and the
    # "student given the teacher's information" side of a teacher-vs-student measurement).
    student_skills: bool = False
    # Where those skills go: "student" = Skill-GRPO's section in the user message; "teacher" = the teacher's
    # own prompt (teacher.placement), i.e. the teacher acting, as a warm start trained on teacher-format
    # demonstrations (sft.skills_format: teacher) reads them.
    skills_placement: str = choice("student", ("student", "teacher"))


@dataclass(frozen=True)
class Config(_Section):
    _section = "config"
    seed: int = 0
    output_dir: str = "runs"
    # Modules or .py files that register your own envs and skill libraries (sdar/plugins.py)
    plugins: tuple = ()
    model: ModelConfig = field(default_factory=ModelConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_rollout_correction(self)
        teacher_contexts(self.teacher)  # a bad teacher context fails here, by its name


def check_rollout_correction(config: Config) -> None:
    """TIS compares pi_old with the sampler's log-probs, which are those of the temperature-scaled and
    nucleus-filtered distribution: away from temperature 1 and top_p 1 their ratio measures that deliberate
    change, not a mismatch, so `tis` is refused there."""
    rollout = config.rollout
    if config.algorithm.rollout_correction == "tis" and (rollout.temperature != 1.0 or rollout.top_p < 1.0):
        raise ConfigError(
            f"algorithm.rollout_correction='tis' needs rollout.temperature=1 and rollout.top_p=1 (got "
            f"rollout.temperature={rollout.temperature}, rollout.top_p={rollout.top_p}): the sampler's "
            "log-probs are those of the temperature-scaled, nucleus-filtered distribution, so the TIS ratio "
            "would weigh that change, not the sampler-trainer mismatch. Sample at temperature 1 and top_p 1, "
            "or set algorithm.rollout_correction=none"
        )


def load_config(source: str | None = None, overrides: list[str] | tuple = ()) -> Config:
    """Preset name / YAML path (or None: the defaults) + dotted overrides -> a validated, resolved Config,
    with its plugins imported."""
    data = read_source(source) if source else {}
    data = merge_overrides(data, list(overrides))
    config = from_dict(Config, data)
    # files named in an override are relative to the working directory (those of YAML files already absolute)
    config = dataclasses.replace(config, plugins=tuple(anchor_plugin_paths(config.plugins, Path.cwd())))
    import_plugins(config.plugins)
    return resolve(config)


def resolve(config: Config) -> Config:
    """Fill every `None` algorithm field with the chosen method's default (`AlgorithmConfig.resolved`), and an
    unset env.max_turns with the env's turn limit (`EnvConfig.resolved`)."""
    return dataclasses.replace(config, env=config.env.resolved(), algorithm=config.algorithm.resolved())


def save_config(config: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
