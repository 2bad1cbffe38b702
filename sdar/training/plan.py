"""Per-GPU memory of a training run, estimated from its config before any GPU is rented (`sdar plan`).

A step has four phases, and the peak is the largest of their totals (docs/plan.md gives every formula):
- rollout: sampling the episodes (hf: the trainer's own model with a KV cache; vllm: the engine's share);
- scoring: the no-grad passes of π_old, the KL reference and the teacher, one micro-batch at a time;
- backward: the policy update's forward and backward of one micro-batch, gradients of earlier micro-batches
  accumulated;
- step: AdamW over the accumulated gradients.

Every phase holds the weights, the gradients and AdamW's two moments (`policy_update` leaves the gradients
set after its last optimizer step, so the next step's rollout and scoring still hold them), a full
fine-tuning run's frozen reference copy (KL) and the teacher's own weights where it has some. With
`trainer.sharding=fsdp` over N GPUs those are divided by N (moved to the CPU with `trainer.cpu_offload`), but
our FSDP gathers the whole model on every GPU for the no-grad passes (hf sampling, scoring) and, in the
update, the root unit (embeddings, final norm, LM head) plus two decoder layers (the running one and the
prefetched one) with their unsharded gradients (sdar/models/sharding.py).

The shapes come from a model built on the meta device (sdar/models/shapes.py), so LoRA's adapters are
counted by peft itself, fp32 dtype included. Activations are those of the Hugging Face Qwen2/Qwen3/Llama
decoders with SDPA attention, counted from the tensors autograd saves and the temporaries alive at once;
benchmarks/memory_plan.py measures a real step on the CPU against them (docs/plan.md).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from sdar.config import Config
from sdar.errors import ConfigError
from sdar.models.shapes import ModelShape, model_shape
from sdar.teacher_contexts import teacher_weight_kinds
from sdar.training.plan_bytes import (
    BACKWARD_LOGIT_BYTES,
    LOGITS_CHUNK,
    NO_GRAD_LOGIT_BYTES,
    compute_bytes,
    fp32_autocast,
    kv_bytes_per_token,
    no_grad_layer_transient,
    saved_per_layer_token,
    weight_bytes,
)

GIB = 2**30
PHASES = ("rollout", "scoring", "backward", "step")
PHASE_TITLES = {"rollout": "rollout", "scoring": "scoring", "backward": "backward", "step": "optimizer step"}

# ---------------------------------------------------------------------------------------------- estimate


@dataclass(frozen=True)
class Setting:
    """The knobs the plan may change, as the config spells them."""

    sharding: str
    cpu_offload: bool
    gradient_checkpointing: bool
    micro_batch_rows: int

    @classmethod
    def of(cls, config: Config) -> Setting:
        trainer = config.trainer
        checkpointing = config.model.gradient_checkpointing
        return cls(trainer.sharding, trainer.cpu_offload, checkpointing, trainer.micro_batch_rows)

    def overrides(self) -> list[str]:
        return [
            f"trainer.sharding={self.sharding}",
            f"trainer.cpu_offload={str(self.cpu_offload).lower()}",
            f"model.gradient_checkpointing={str(self.gradient_checkpointing).lower()}",
            f"trainer.micro_batch_rows={self.micro_batch_rows}",
        ]

    def applied(self, config: Config) -> Config:
        model = dataclasses.replace(config.model, gradient_checkpointing=self.gradient_checkpointing)
        trainer = dataclasses.replace(
            config.trainer,
            sharding=self.sharding,
            cpu_offload=self.cpu_offload,
            micro_batch_rows=self.micro_batch_rows,
        )
        return dataclasses.replace(config, model=model, trainer=trainer)


@dataclass(frozen=True)
class Term:
    """One use of GPU memory: bytes per GPU in each phase it occurs in, how they were counted, what lowers
    them."""

    name: str
    formula: str
    phases: dict[str, float]
    advice: str


@dataclass(frozen=True)
class Estimate:
    setting: Setting
    gpus: int
    gpu_memory: float  # bytes per GPU
    terms: tuple[Term, ...]

    def total(self, phase: str) -> float:
        return sum(term.phases.get(phase, 0.0) for term in self.terms)

    @property
    def peak_phase(self) -> str:
        return max(PHASES, key=self.total)

    @property
    def peak(self) -> float:
        return self.total(self.peak_phase)

    def biggest_term(self) -> Term:
        """The largest term of the peak phase."""
        return max(self.terms, key=lambda term: term.phases.get(self.peak_phase, 0.0))


def _every(value: float) -> dict[str, float]:
    return dict.fromkeys(PHASES, float(value))


def _gib(value: float) -> str:
    return f"{value / GIB:.2f} GiB"


def estimate(config: Config, shape: ModelShape, gpus: int, gpu_memory: float) -> Estimate:
    """Bytes per GPU of every term in every phase, for `config` run as `gpus` processes, one per GPU of
    `gpu_memory` bytes (which only vLLM's share depends on)."""
    if gpus < 1:
        raise ConfigError(f"--gpus {gpus}: give at least one GPU")
    if config.rollout.tasks_per_step % gpus:
        raise ConfigError(
            f"rollout.tasks_per_step={config.rollout.tasks_per_step} does not divide among {gpus} GPUs (one "
            f"process each); use a multiple of {gpus}"
        )
    terms = [
        *state_terms(config, shape, gpus),
        *rollout_terms(config, shape, gpus, gpu_memory),
        scoring_term(config, shape),
        *update_terms(config, shape),
    ]
    return Estimate(Setting.of(config), gpus, gpu_memory, tuple(term for term in terms if term is not None))


def state_terms(config: Config, shape: ModelShape, gpus: int) -> list[Term]:
    """What stays on the GPU through every phase: weights, gradients, AdamW moments, the frozen copies, and
    (FSDP) what is gathered whole per phase; then the optimizer step's temporaries."""
    from sdar.algorithms.objective import settings_from_config

    settings = settings_from_config(config.algorithm)
    fsdp = config.trainer.sharding == "fsdp"
    offload = fsdp and config.trainer.cpu_offload
    kept = 0.0 if offload else 1.0 / (gpus if fsdp else 1)  # the share of a sharded tensor on this GPU
    where = " on the CPU" if offload else (f" / {gpus}" if fsdp else "")
    lora = config.model.lora_rank > 0
    model, trainable = shape.parameter_bytes, shape.trainable_bytes
    roles = "LoRA adapters (fp32)" if lora else "every parameter"
    shard = "trainer.sharding=fsdp over more GPUs, or trainer.cpu_offload=true"
    terms = [
        Term(
            "weights",
            f"{shape.parameters / 1e9:.3g}B parameters, {_gib(model)}{where}",
            _every(model * kept),
            shard,
        ),
        Term(
            "gradients",
            f"{roles}, {_gib(trainable)}{where}; kept between steps",
            _every(trainable * kept),
            f"LoRA (model.lora_rank), or {shard}",
        ),
        Term(
            "AdamW moments",
            f"2 x the gradients{where}",
            _every(2 * trainable * kept),
            f"LoRA (model.lora_rank), or {shard}",
        ),
    ]
    full_reference = settings.kl_coef != 0 and not lora  # LoRA: the base with adapters off, no copy
    if full_reference:
        terms.append(
            Term(
                "KL reference",
                f"frozen copy of the model{where}",
                _every(model * kept),
                "LoRA (the base without adapters is the reference), or algorithm.kl_coef=0",
            )
        )
    if settings.needs_teacher or config.teacher.score_always:  # a row per kind of weights its teachers use
        kinds = teacher_weight_kinds(config.teacher)
        terms += [teacher_term(kind, config, shape, kept, where, full_reference) for kind in kinds]
    if fsdp:
        update = shape.root_bytes + 2 * shape.layer_bytes
        update += shape.root_trainable_bytes + shape.layer_trainable_bytes  # unsharded, before reduce-scatter
        sampling = model if config.rollout.backend == "hf" else 0.0
        phases = {"rollout": sampling, "scoring": model, "backward": update, "step": 0.0}
        terms.append(
            Term(
                "FSDP gathered",
                "no-grad passes: the whole model; update: root + 2 layers + their gradients",
                phases,
                "LoRA, or a smaller model (no-grad passes gather it whole)",
            )
        )
    terms.append(
        Term(
            "AdamW temporaries",
            f"foreach step: one copy of the gradients{where}",
            {"step": trainable * kept},
            shard,
        )
    )
    return terms


def teacher_term(
    kind: str, config: Config, shape: ModelShape, kept: float, where: str, full_reference: bool
) -> Term:
    """The weights a teacher scores with (teacher.weights, or a context's): live = the policy itself; base =
    the LoRA base or the KL reference copy (shared), else its own frozen copy; ema = an fp32 average of the
    trainable parameters, plus a copy of the live ones while the average is swapped in for scoring. Contexts
    of one kind share them (sdar.training.session)."""
    lora = config.model.lora_rank > 0
    advice = "teacher.weights=live (the policy scores as teacher)"
    if kind == "live" or (kind == "base" and (lora or full_reference)):
        shared = "the policy" if kind == "live" else ("the LoRA base" if lora else "the KL reference")
        return Term(f"teacher ({kind})", f"shares {shared}", _every(0.0), advice)
    if kind == "base":
        return Term("teacher (base)", f"own frozen copy{where}", _every(shape.parameter_bytes * kept), advice)
    average = 4 * shape.trainable * kept
    phases = _every(average)
    phases["scoring"] += shape.trainable_bytes * kept
    return Term(
        "teacher (ema)",
        f"fp32 average of the trainable parameters{where}, + live copy while scoring",
        phases,
        advice,
    )


def rollout_terms(config: Config, shape: ModelShape, gpus: int, gpu_memory: float) -> list[Term]:
    """vllm: the engine's share of the GPU (weights + paged KV cache), released during the update with
    sleep. hf: the trainer's model samples every episode of this GPU as one batch, at the model's dtype
    (no autocast): the larger of the prefill (every prompt at once, one layer at a time, over the cache of
    the prompts) and the last decode step (the cache at full length, one layer's cache copied by its
    concatenation, and the fp32 logits, log-softmax and probabilities of the sampled position)."""
    arch = shape.architecture
    rollout = config.rollout
    if rollout.backend == "vllm":
        share = rollout.vllm.gpu_memory_utilization * gpu_memory
        phases = {"rollout": share} if rollout.vllm.sleep else _every(share)
        held = "released after sampling (sleep)" if rollout.vllm.sleep else "held in every phase"
        return [
            Term(
                "vLLM engine",
                f"{rollout.vllm.gpu_memory_utilization} x the GPU, {held}",
                phases,
                "a lower rollout.vllm.gpu_memory_utilization, or rollout.vllm.sleep=true",
            )
        ]
    weight = weight_bytes(config)
    rows = rollout.tasks_per_step // gpus * rollout.group_size
    prompt, length = rollout.max_prompt_tokens, rollout.max_prompt_tokens + rollout.max_new_tokens
    per_token = kv_bytes_per_token(arch, weight)
    lora = config.model.lora_rank > 0
    prefill = (
        rows * prompt * per_token,
        rows * prompt * (no_grad_layer_transient(arch, weight, False, prompt, lora) + prompt),
    )
    decode = (
        rows * length * per_token,
        rows * length * 2 * arch.kv_size * weight + 3 * 4 * rows * arch.vocab_size,
    )
    at_prefill = sum(prefill) >= sum(decode)
    cache, work = prefill if at_prefill else decode
    tokens = prompt if at_prefill else length
    advice = (
        "rollout.backend=vllm, fewer episodes per GPU (rollout.tasks_per_step x rollout.group_size / GPUs), "
        "or shorter rollout.max_prompt_tokens / max_new_tokens"
    )
    return [
        Term(
            "KV cache (hf)",
            f"{rows} episodes x {tokens} tokens x {per_token / 1024:.0f} KiB",
            {"rollout": cache},
            advice,
        ),
        Term(
            "sampling work",
            "prefill: one layer over every prompt" if at_prefill else "decode: a layer's cache copy + logits",
            {"rollout": work},
            advice,
        ),
    ]


def teacher_scored(config: Config) -> bool:
    from sdar.algorithms.objective import settings_from_config

    return settings_from_config(config.algorithm).needs_teacher or config.teacher.score_always


def scoring_term(config: Config, shape: ModelShape) -> Term:
    """One no-grad micro-batch (π_old, reference, teacher): the larger of one decoder layer's tensors (and
    the bool mask) and the head's (final hidden states, the scored positions' copies, one chunk of logits);
    a teacher scored against a shared-prefix KV cache also holds that cache grown over the rows, and fp32
    weights under autocast their bf16 copies."""
    arch, weight, autocast = shape.architecture, weight_bytes(config), config.trainer.autocast_bf16
    micro, length, tokens, scored = micro_batch(config)
    lora = config.model.lora_rank > 0
    layer = tokens * (no_grad_layer_transient(arch, weight, autocast, length, lora) + length)
    chunk = min(LOGITS_CHUNK, scored)
    head = (tokens + 2 * scored) * weight * arch.hidden_size + chunk * arch.vocab_size * NO_GRAD_LOGIT_BYTES
    copies = shape.trainable_linear_bytes // 2 if fp32_autocast(config) else 0  # bf16 copies autocast keeps
    work = max(layer, head) + copies
    formula = f"{micro} rows x {length} tokens: {'one layer' if layer >= head else 'the LM head chunk'}"
    if teacher_scored(config) and config.teacher.share_prefix:
        work += tokens * kv_bytes_per_token(arch, compute_bytes(weight, autocast))
        formula += " + the teacher's prefix KV cache"
    if copies:
        formula += " + autocast's bf16 weight copies"
    return Term("scoring work", formula, {"scoring": work}, "a smaller trainer.micro_batch_rows")


def micro_batch(config: Config) -> tuple[int, int, int, int]:
    """(rows, tokens per row, tokens, scored response tokens) of one micro-batch at the longest rows."""
    rollout, micro = config.rollout, config.trainer.micro_batch_rows
    length = rollout.max_prompt_tokens + rollout.max_new_tokens
    return micro, length, micro * length, micro * rollout.max_new_tokens


def update_terms(config: Config, shape: ModelShape) -> list[Term]:
    """The update's micro-batch: what autograd saves (every layer's tensors, or with checkpointing only each
    layer's input), the final norm, the bool mask and the scored positions' hidden states (and without
    checkpointing the bf16 weight copies of fp32 weights under autocast); then the largest of the
    backward's working sets:
    - a logits chunk recomputed with its gradients, and (several chunks, a trained LM head) the head's
      gradient summed over the chunks so far (V x h);
    - one layer (recomputed, with checkpointing) with the gradients of its MLP intermediates (2ci), and with
      tied embeddings the head's summed gradient, which waits for the embedding's;
    - tied and trained embeddings, at the end of the backward, when the activations are gone: the head's
      gradient, the embedding's and their sum (3 V x h).
    """
    arch = shape.architecture
    weight, autocast = weight_bytes(config), config.trainer.autocast_bf16
    compute = compute_bytes(weight, autocast)
    micro, length, tokens, scored = micro_batch(config)
    h, checkpointing = arch.hidden_size, config.model.gradient_checkpointing
    per_layer = saved_per_layer_token(shape, weight, autocast, length) * tokens
    # the final norm, the bool mask, RoPE's cos and sin (shared by the layers), the scored hidden states
    head = tokens * ((4 + weight) * h + length + 2 * arch.head_dim * weight) + scored * h * weight
    head_gradient, tied = shape.head_trainable_bytes, arch.tie_word_embeddings
    copies = shape.layer_linear_bytes // 2 if fp32_autocast(config) else 0  # bf16 weight copies for backward
    layer_work = 2 * compute * arch.intermediate_size * tokens + (head_gradient if tied else 0)
    chunk = min(LOGITS_CHUNK, scored)
    logits_work = chunk * arch.vocab_size * BACKWARD_LOGIT_BYTES + (head_gradient if scored > chunk else 0)
    if checkpointing:  # each layer and logits chunk casts its weights again when it is recomputed
        stack = arch.num_layers * weight * h * tokens + head
        layer_work += per_layer + copies // arch.num_layers
        logits_work += shape.head_bytes // 2 if copies else 0
    else:
        stack = arch.num_layers * per_layer + head + copies
    works = {
        "one logits chunk with its gradients": logits_work,
        "one layer" + (" recomputed" if checkpointing else "") + " + its gradients": layer_work,
        # at the end of the backward: counted against the activations, which are gone by then
        "the tied embedding's 3 gradients": (3 * head_gradient - stack) if tied else 0,
    }
    largest = max(works, key=works.get)
    state = "checkpointed: each layer's input" if checkpointing else "every layer's tensors"
    advice = "model.gradient_checkpointing=true, or a smaller trainer.micro_batch_rows"
    return [
        Term("update activations", f"{micro} rows x {length} tokens, {state}", {"backward": stack}, advice),
        Term("backward work", largest, {"backward": works[largest]}, advice),
    ]


# ------------------------------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class Plan:
    """The config's estimate against a GPU, and the first setting (in `candidate_settings` order) that
    fits: the config's own when it does."""

    shape: ModelShape
    estimate: Estimate
    budget: float  # usable bytes per GPU: the GPU's memory less the margin
    margin: float
    recommendation: Estimate | None

    @property
    def fits(self) -> bool:
        return self.estimate.peak <= self.budget

    def reason(self) -> str:
        """One line: why the config does not fit, its biggest term, and what to change."""
        estimate, term = self.estimate, self.estimate.biggest_term()
        phase = PHASE_TITLES[estimate.peak_phase]
        line = (
            f"peak {_gib(estimate.peak)} per GPU in the {phase} phase is over the "
            f"{_gib(self.budget)} usable ({_gib(estimate.gpu_memory)} less a {self.margin:.0%} margin); its "
            f"biggest term is {term.name} ({_gib(term.phases[estimate.peak_phase])}): {term.advice}"
        )
        if self.recommendation is None:
            return line + "; no sharding, offload, checkpointing or micro-batch setting fits"
        return line + "; the smallest setting that fits: " + " ".join(self.changes())

    def changes(self) -> list[str]:
        """The overrides that turn the config's setting into the recommended one."""
        if self.recommendation is None:
            return []
        now = self.estimate.setting.overrides()
        return [item for item in self.recommendation.setting.overrides() if item not in now]


def candidate_settings(config: Config, gpus: int):
    """Settings in order of preference: the config's placement first, then none, fsdp (with several GPUs)
    and fsdp with CPU offload; within each, checkpointing as configured then on; within that, the configured
    micro-batch halved down to 1 row."""
    current = Setting.of(config)
    placements = [(current.sharding, current.cpu_offload and current.sharding == "fsdp")]
    for placement in (("none", False), ("fsdp", False), ("fsdp", True)):
        if placement not in placements and (placement != ("fsdp", False) or gpus > 1):
            placements.append(placement)
    checkpointing = [current.gradient_checkpointing] + ([] if current.gradient_checkpointing else [True])
    rows = [current.micro_batch_rows]
    while rows[-1] > 1:
        rows.append(rows[-1] // 2)
    for sharding, offload in placements:
        for checkpoint in checkpointing:
            for micro in rows:
                yield Setting(sharding, offload, checkpoint, micro)


def make_plan(config: Config, *, gpus: int, gpu_memory_gib: float, margin: float = 0.1) -> Plan:
    """Estimate `config` on `gpus` GPUs of `gpu_memory_gib` GiB each; fits = peak <= (1 - margin) x memory."""
    if gpu_memory_gib <= 0:
        raise ConfigError(f"--gpu-memory {gpu_memory_gib}: give the memory of one GPU in GiB, e.g. 80")
    if not 0.0 <= margin < 1.0:
        raise ConfigError(f"--margin {margin}: give a fraction in [0, 1), e.g. 0.1")
    shape = model_shape(config.model)
    memory = gpu_memory_gib * GIB
    budget = (1.0 - margin) * memory
    current = estimate(config, shape, gpus, memory)
    recommendation = current if current.peak <= budget else None
    if recommendation is None:
        for setting in candidate_settings(config, gpus):
            candidate = estimate(setting.applied(config), shape, gpus, memory)
            if candidate.peak <= budget:
                recommendation = candidate
                break
    return Plan(shape, current, budget, margin, recommendation)


def refuse_what_cannot_fit(config: Config, *, device, processes: int) -> None:
    """ConfigError when training `config` on `processes` GPUs like `device` would exceed a GPU's whole memory
    by this estimate (`trainer.memory_check`); nothing on CPUs."""
    if device is None or not str(device).startswith("cuda"):
        return
    import torch

    memory = torch.cuda.get_device_properties(torch.device(device)).total_memory / GIB
    plan = make_plan(config, gpus=processes, gpu_memory_gib=memory, margin=0.0)
    if not plan.fits:
        raise ConfigError(
            f"this run would not fit on its {processes} GPU(s): {plan.reason()}. `sdar plan` shows every "
            "term (docs/plan.md); trainer.memory_check=false starts it anyway"
        )
