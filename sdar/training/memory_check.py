"""Measure a training step's memory on the CPU, phase by phase, to check `sdar plan`'s estimate.

`measure_step(config)` builds what the trainer builds for `config` (the model, the KL reference and teacher
weights, AdamW) and runs one step's work on synthetic rows of the longest shape the config allows (prompts
of `rollout.max_prompt_tokens` less a few padded columns, responses of `rollout.max_new_tokens`):
- rollout: `HFBackend.generate` over tasks_per_step x group_size distinct prompts (hf backend only);
- scoring: π_old, the reference and the teacher (against a shared-prefix cache when the config shares one);
- update: `policy_update` over two micro-batches (so that the second runs with the first's gradients
  accumulated), after one unmeasured update that creates AdamW's moments, as in every step after the first.

Every CPU tensor allocation and free of the whole run is recorded by torch's profiler (`profile_memory`),
which sees the allocator itself, temporaries inside kernels included; the running sum of those events is the
memory held by tensors at every moment, and a phase's peak is its maximum inside that phase (the optimizer
step: inside `Optimizer.step`; backward: the rest of the update). The resident set size would add the
allocator's cached pages and the Python heap, and is too noisy for this.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field, replace

import torch

from sdar.config import Config
from sdar.records import Batch

PHASE_MARK = "sdar.memory_check:"
STEP_MARK = "Optimizer.step#"  # torch.optim's own profiler range around every optimizer step


@dataclass
class Measurement:
    static: dict[str, int]  # bytes of the weights, gradients, AdamW moments and frozen copies, after the step
    peaks: dict[str, int] = field(default_factory=dict)  # phase -> peak bytes held by all tensors

    @property
    def static_total(self) -> int:
        return sum(self.static.values())

    def working(self, phase: str) -> int:
        """A phase's peak above what every phase holds (activations, caches, temporaries)."""
        return self.peaks[phase] - self.static_total


def synthetic_batch(config: Config, rows: int, vocab_size: int, pad_id: int, seed: int = 0) -> Batch:
    """`rows` rows of random tokens: prompts of max_prompt_tokens less 0..7 left-padded columns (so every
    micro-batch is padded, as real rows are), full-length responses, advantages of ±1."""
    prompt, response = config.rollout.max_prompt_tokens, config.rollout.max_new_tokens
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, vocab_size, (rows, prompt + response), generator=generator)
    attention_mask = torch.ones(rows, prompt + response, dtype=torch.bool)
    for row in range(rows):
        attention_mask[row, : row % 8] = False
    input_ids[~attention_mask] = pad_id
    signs = torch.tensor([1.0, -1.0]).repeat(rows // 2 + 1)[:rows]
    return Batch(
        input_ids=input_ids,
        attention_mask=attention_mask,
        response_mask=torch.ones(rows, response, dtype=torch.bool),
        response_start=prompt,
        rewards=signs,
        group_index=torch.arange(rows) // 2,
        episode_index=torch.arange(rows),
        turn_index=torch.zeros(rows, dtype=torch.long),
        old_logprobs=torch.full((rows, response), -1.0),
        advantages=signs,
    )


def tensor_bytes(tensors) -> int:
    """Bytes of the distinct storages behind `tensors` (a tied weight counts once)."""
    storages = {}
    for tensor in tensors:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


def measure_step(config: Config) -> Measurement:
    """Run one step's phases for `config` on the CPU under the profiler; see the module docstring."""
    from torch.profiler import ProfilerActivity, profile, record_function

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        static, marks = _run_step(config, record_function)
    events = profiler.profiler.kineto_results.events()
    return Measurement(static=static, peaks=_phase_peaks(events, marks))


def _run_step(config: Config, record_function) -> tuple[dict[str, int], list[str]]:
    from sdar.algorithms.objective import settings_from_config
    from sdar.models import load_model
    from sdar.models.generation import HFBackend
    from sdar.teacher import TeacherWeights
    from sdar.training.plan import teacher_scored
    from sdar.training.update import Learner, bf16_autocast, policy_update, score_batch

    trainer, rollout = config.trainer, config.rollout
    settings = settings_from_config(config.algorithm)
    torch.manual_seed(config.seed)
    model, tokenizer = load_model(config.model)
    model.eval()
    reference = TeacherWeights("base", model) if settings.kl_coef != 0 else None
    teacher = None
    if teacher_scored(config):
        base = reference.base_model if reference is not None else None
        teacher = TeacherWeights.from_config(config.teacher, model, base_model=base)
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    # foreach: the implementation torch picks on GPUs (on CPUs it defaults to a loop over parameters)
    optimizer = torch.optim.AdamW(trainable, lr=trainer.lr, weight_decay=trainer.weight_decay, foreach=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    vocab = model.config.vocab_size
    batch = synthetic_batch(config, 2 * trainer.micro_batch_rows, vocab, tokenizer.pad_token_id)
    batch.ref_logprobs = batch.old_logprobs.clone()
    batch.teacher_logprobs = batch.old_logprobs.clone()

    one_pass = replace(trainer, mini_batch_rows=len(batch), ppo_epochs=1, skip_zero_gradient=False)

    def update() -> None:
        policy_update(
            Learner(model, optimizer, scheduler),
            batch,
            objective=settings,
            trainer=one_pass,
            step=0,
            generator=torch.Generator().manual_seed(0),
        )
        if teacher is not None:
            teacher.update()

    update()  # AdamW's moments now exist, and the gradients stay set, as in every later step
    marks = []
    gc.collect()
    if rollout.backend == "hf":
        rows = rollout.tasks_per_step * rollout.group_size
        generator = torch.Generator().manual_seed(1)
        prompts = [
            torch.randint(3, vocab, (rollout.max_prompt_tokens - row % 8,), generator=generator).tolist()
            for row in range(rows)
        ]
        backend = HFBackend(model, tokenizer, seed=0)
        with record_function(PHASE_MARK + "rollout"):
            backend.generate(prompts, max_new_tokens=rollout.max_new_tokens, temperature=1.0, top_p=1.0)
        marks.append("rollout")
    gc.collect()
    with record_function(PHASE_MARK + "scoring"), bf16_autocast(trainer.autocast_bf16, "cpu"):
        score_batch(model, batch, micro_batch_rows=trainer.micro_batch_rows)
        if reference is not None:
            with reference.scoring_model() as scorer:
                score_batch(scorer, batch, micro_batch_rows=trainer.micro_batch_rows)
        if teacher is not None:
            with teacher.scoring_model() as scorer:
                _score_teacher(scorer, batch, config)
    marks.append("scoring")
    gc.collect()
    with record_function(PHASE_MARK + "update"):
        update()
    marks.append("update")
    static = {"weights": tensor_bytes(model.parameters())}
    static["gradients"] = tensor_bytes(p.grad for p in trainable if p.grad is not None)
    moments = [value for state in optimizer.state.values() for value in state.values() if value.dim() > 0]
    static["AdamW moments"] = tensor_bytes(moments)
    if reference is not None and reference.base_model is not None:
        static["KL reference"] = tensor_bytes(reference.base_model.parameters())
    if teacher is not None and teacher.ema is not None:
        static["teacher"] = tensor_bytes(teacher.ema.shadow.values())
    elif teacher is not None and teacher.base_model is not None and reference is None:
        static["teacher"] = tensor_bytes(teacher.base_model.parameters())
    return static, marks


def _score_teacher(model, batch: Batch, config: Config) -> None:
    """The teacher's pass: with a shared prefix, against a KV cache of the rows' first quarter (as
    `teacher_logprobs` scores rows that share their skill text), else like the other scoring passes."""
    from sdar.models import token_logprobs
    from sdar.models.logprobs import prefix_cache
    from sdar.training.update import score_batch

    micro = config.trainer.micro_batch_rows
    if not config.teacher.share_prefix:
        score_batch(model, batch, micro_batch_rows=micro)
        return
    shared = batch.response_start // 4
    input_ids, attention_mask = batch.input_ids.clone(), batch.attention_mask.clone()  # the update's stay
    input_ids[:, :shared] = input_ids[:1, :shared]  # every row starts with the same prefix
    attention_mask[:, :shared] = True
    with torch.no_grad():
        cache = prefix_cache(model, input_ids[:1, : shared - 1])
        for begin in range(0, len(batch), micro):
            rows = slice(begin, begin + micro)
            token_logprobs(
                model,
                input_ids[rows, shared - 1 :],
                attention_mask[rows, shared - 1 :],
                start=batch.response_start - shared + 1,
                past_key_values=cache,
            )


def _phase_peaks(events, marks: list[str]) -> dict[str, int]:
    """Phase -> peak of the running allocation sum inside it; the update splits into the optimizer step
    (inside torch's `Optimizer.step#...` ranges) and backward (the rest of the update)."""
    ranges = {}
    steps = []
    for event in events:
        name = event.name()
        if name.startswith(PHASE_MARK):
            ranges[name.removeprefix(PHASE_MARK)] = (event.start_ns(), event.start_ns() + event.duration_ns())
        elif name.startswith(STEP_MARK):
            steps.append((event.start_ns(), event.start_ns() + event.duration_ns()))
    memory = sorted(
        ((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]"), key=lambda m: m[0]
    )
    held, peaks = 0, dict.fromkeys([*marks[:-1], "backward", "step"], 0)
    update = ranges["update"]
    for time, change in memory:
        held += change
        for phase in marks[:-1]:
            low, high = ranges[phase]
            if low <= time <= high:
                peaks[phase] = max(peaks[phase], held)
        if update[0] <= time <= update[1]:
            phase = "step" if any(low <= time <= high for low, high in steps) else "backward"
            peaks[phase] = max(peaks[phase], held)
    return peaks
