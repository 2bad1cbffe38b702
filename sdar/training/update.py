"""The policy update (docs/method.md §5 step 8): one epoch over shuffled mini-batches, gradient accumulation
over micro-batches with the mini-batch's global normalisers, grad-clip, and a guard against non-finite
updates; its passes skip the rows on which the objective has no gradient, and `update_without_gradient` is its
shortcut for a batch without any. When the update is one pass at the step's start weights
(`one_on_policy_pass`), its own forward, detached, serves as π_old (`old_from_forward`)."""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from sdar.algorithms import (
    ObjectiveSettings,
    count_tokens_and_rows,
    policy_objective,
    rows_with_gradient,
    step_distill_weight,
)
from sdar.algorithms.aggregation import micro_batch_mean_normalisers
from sdar.config import TrainerConfig
from sdar.errors import ActionableError
from sdar.models import token_logprobs
from sdar.models.sharding import full_tensor, is_sharded
from sdar.records import Batch, pad_response
from sdar.training.distributed import DataParallel

SINGLE_PROCESS = DataParallel()


class TooManyBadUpdates(ActionableError):
    """Raised after `max_bad_updates` consecutive non-finite updates; the weights are left untouched (the CLI
    prints its message, which names what to change, as one line)."""


@dataclass
class UpdateState:
    consecutive_bad_updates: int = 0
    skipped_updates: int = 0


def model_device(model) -> torch.device:
    return next(model.parameters()).device


def bf16_autocast(enabled: bool, device) -> torch.autocast:
    """bf16 autocast on the device of the batch (a no-op context when not enabled)."""
    device_type = "cpu" if torch.device(device).type == "cpu" else "cuda"
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=enabled)


def global_counts(response_mask: torch.Tensor, parallel: DataParallel) -> tuple[torch.Tensor, torch.Tensor]:
    """(valid tokens, rows with a valid token) of a mini-batch summed over every process's share of it."""
    tokens, rows = count_tokens_and_rows(response_mask)
    total_tokens, total_rows = parallel.sum([float(tokens), float(rows)])
    return torch.tensor(total_tokens), torch.tensor(total_rows)


def micro_batch_mean_row_normalisers(
    response_mask: torch.Tensor, micro_batch_rows: int, parallel: DataParallel
) -> torch.Tensor:
    """The normaliser [R] of "micro-batch-mean" for each of this process's R rows of a mini-batch, in the
    order they are cut into micro-batches of `micro_batch_rows`: M · the valid tokens of the row's
    micro-batch, M = the mini-batch's micro-batches summed over every process. The release's processes each
    average their own micro-batches' token-means and the gradients are averaged over processes: with equally
    many micro-batches on every process, that is this mean over all of them. The micro-batches are cut over
    every row, those without gradient included, so leaving those out of the passes changes nothing."""
    (micro_batches,) = parallel.sum([math.ceil(len(response_mask) / micro_batch_rows)])
    return micro_batch_mean_normalisers(response_mask, micro_batch_rows, max(int(micro_batches), 1))


def score_batch(model, batch: Batch, *, micro_batch_rows: int, with_entropy: bool = False):
    """Log-probs (and entropies) [N, T] of the batch's response tokens, by micro-batch, without gradient;
    each micro-batch is scored on the model's device, the results come back to the CPU like the batch."""
    device = model_device(model)
    logprob_chunks, entropy_chunks = [], []
    with torch.no_grad():
        for begin in range(0, len(batch), micro_batch_rows):
            rows = batch.select(slice(begin, begin + micro_batch_rows)).compact().to(device)
            logprobs, entropy = token_logprobs(
                model,
                rows.input_ids,
                rows.attention_mask,
                start=rows.response_start,
                with_entropy=with_entropy,
            )
            start, width = rows.response_start, batch.response_mask.shape[1]
            logprob_chunks.append(pad_response(logprobs[:, start:] * rows.response_mask, width).cpu())
            if with_entropy:
                entropy_chunks.append(pad_response(entropy[:, start:] * rows.response_mask, width).cpu())
    logprobs = torch.cat(logprob_chunks)
    return (logprobs, torch.cat(entropy_chunks)) if with_entropy else (logprobs, None)


def advance_schedule(scheduler) -> None:
    """One scheduler step per training step, optimizer step or not. torch warns when a schedule advances
    before the optimizer ever stepped (a run whose first steps all skipped theirs); the schedule counts
    training steps here, so that order is intended."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before")
        scheduler.step()


def mini_batch_count(batch: Batch, mini_batch_rows: int, parallel: DataParallel) -> int:
    """Mini-batches per epoch: ceil(rows / mini_batch_rows) over every process's rows, at least 1."""
    (global_rows,) = parallel.sum([len(batch)])
    return max(math.ceil(global_rows / mini_batch_rows), 1)


def empty_passes_needed(model, passes: int, parallel: DataParallel) -> int:
    """How many empty forward/backward passes this process adds to its `passes` micro-batches: under
    sharding every process must run as many as the busiest one (sdar/models/sharding.py); else none."""
    if not is_sharded(model):
        return 0
    return max(parallel.gather(passes)) - passes


def empty_pass(model, device) -> None:
    """A forward and backward of one two-token row whose loss is 0 · (its log-prob): it takes part in the
    sharded model's collectives and adds exactly zero to every gradient."""
    input_ids = torch.zeros(1, 2, dtype=torch.long, device=device)
    logprobs, _ = token_logprobs(model, input_ids, start=1)
    (logprobs.sum() * 0.0).backward()


DROPOUT_MODULES = (
    torch.nn.Dropout,
    torch.nn.Dropout1d,
    torch.nn.Dropout2d,
    torch.nn.Dropout3d,
    torch.nn.AlphaDropout,
    torch.nn.FeatureAlphaDropout,
)


def has_active_dropout(model) -> bool:
    """Whether the model's training-mode forward draws dropout: a dropout module with p > 0 (LoRA's adapter
    dropout included) or a dropout rate > 0 in its config (attention dropout is applied functionally, by
    rate, without a module). A config rate that the forward never uses only keeps a pass that was exact."""

    def positive_rate(values: dict) -> bool:
        for key, value in values.items():
            if isinstance(value, dict) and positive_rate(value):
                return True
            key = str(key)
            rate = ("dropout" in key or key.endswith("_pdrop")) and isinstance(value, (int, float))
            if rate and not isinstance(value, bool) and value > 0:
                return True
        return False

    if any(isinstance(module, DROPOUT_MODULES) and module.p > 0 for module in model.modules()):
        return True
    config = getattr(model, "config", None)
    return positive_rate(config.to_dict()) if hasattr(config, "to_dict") else False


def one_on_policy_pass(
    model,
    batch: Batch,
    *,
    mini_batch_rows: int,
    epochs: int,
    parallel: DataParallel = SINGLE_PROCESS,
    objective: ObjectiveSettings | None = None,
) -> bool:
    """Whether `policy_update` is one pass at the step's start weights, where its own forward, detached, IS
    log π_old: one epoch, one mini-batch over every process's rows (`mini_batch_count`), and no dropout in
    its training-mode forward (`has_active_dropout`). Its log-probs then differ from a separate no-grad
    scoring pass only by float rounding (micro-batches of other rows, other padding). With several
    mini-batches or epochs the later ones score with weights already moved, and dropout makes the training
    forward another function: there π_old needs its own pass. So it does for an `objective` that reads π_old
    of every row before the update (an adaptive λ, `ObjectiveSettings.reads_old_before_update`)."""
    if epochs != 1 or has_active_dropout(model):
        return False
    if objective is not None and objective.reads_old_before_update:
        return False
    return mini_batch_count(batch, mini_batch_rows, parallel) == 1


@dataclass
class Learner:
    """What an update changes: the policy model, its optimizer and learning-rate schedule, the count of
    non-finite updates, and the processes it sums gradients with."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    state: UpdateState = field(default_factory=UpdateState)
    parallel: DataParallel = SINGLE_PROCESS


def policy_update(
    learner: Learner,
    batch: Batch,
    *,
    objective: ObjectiveSettings,
    trainer: TrainerConfig,
    step: int,
    generator: torch.Generator,
    old_from_forward: bool = False,
    on_micro_batch: Callable[[], None] | None = None,
) -> dict[str, float]:
    """Optimise `batch` (old/ref/teacher log-probs and advantages already set) under `objective` and the
    trainer section's mini-batch, micro-batch, epoch, clipping and precision settings; returns averaged stats.

    With `old_from_forward` (allowed only where `one_on_policy_pass` holds), π_old of the rows the update
    passes is its own forward's log-probs, detached, rather than `batch.old_logprobs`: the objective's ratio
    is then exactly 1 and every term reading π_old (RLSD's shaping, Skill-SD's ρ, a rollout correction) sees
    the number a separate old pass would give up to float rounding. Those log-probs are written into
    `batch.old_logprobs` (created as zeros [N, T] if None) for what reads π_old after the update; the
    entries of rows without gradient are left as they were.

    Each epoch shuffles the rows and cuts them into ceil(rows / mini_batch_rows) near-equal mini-batches.
    Under data parallelism `batch` is this process's rows and a mini-batch spans every process: the count
    of mini-batches and the token/row normalisers are global, and gradients are summed across processes
    (sdar.training.distributed). With `trainer.skip_zero_gradient`, a mini-batch whose gradient is exactly
    zero leaves the optimizer (weights and moments) untouched.

    Rows on which the objective has no gradient (`rows_with_gradient`: GRPO's rows of all-won or all-lost
    groups when the policy gradient is the only term) get no forward or backward pass: their gradient is
    exactly zero, and the mini-batch keeps its normalisers, so the update is the one over every row up to the
    order of float sums. Its `loss/*` and `policy/*` statistics cover the rows with a gradient;
    `update/rows_without_gradient` counts the others (per epoch, over every process).

    The distillation term's weight λ is set once, before the first mini-batch, by `objective.distill_weight`
    from every process's rows (`step_distill_weight`; an adaptive λ reads `batch.old_logprobs`, so it rules
    out `old_from_forward`), and logged as `distill/lambda`."""
    parallel = learner.parallel
    num_mini_batches = mini_batch_count(batch, trainer.mini_batch_rows, parallel)
    epochs = trainer.ppo_epochs
    if old_from_forward and not one_on_policy_pass(
        learner.model,
        batch,
        mini_batch_rows=trainer.mini_batch_rows,
        epochs=epochs,
        parallel=parallel,
        objective=objective,
    ):
        raise ValueError(
            f"old_from_forward needs one on-policy pass (one epoch, one mini-batch, no dropout, no λ read "
            f"from π_old before the update); got {epochs} epoch(s) of {num_mini_batches} mini-batch(es), "
            f"distill_weight={objective.distill_weight!r}: score batch.old_logprobs first"
        )
    needed = rows_with_gradient(objective, batch.advantages)
    distill_weight = None
    if objective.distill is not None:
        distill_weight = 0.0
        if objective.distilling:
            distill_weight = step_distill_weight(
                objective,
                batch.advantages,
                batch.old_logprobs,
                batch.teacher_logprobs,
                batch.response_mask,
                sum_over_processes=parallel.sum,
            )
        if distill_weight != objective.distill_coef:
            objective = dataclasses.replace(objective, distill_coef=distill_weight)
    update = _PolicyUpdate(learner, objective, trainer, step, on_micro_batch=on_micro_batch)
    if old_from_forward:
        update.forward_old = torch.zeros(batch.response_mask.shape)  # [N, T]
    learner.model.train()
    for _ in range(epochs):
        order = torch.randperm(len(batch), generator=generator)
        for rows in torch.tensor_split(order, num_mini_batches):
            update.accumulate_gradients(batch, rows, needed[rows])
            update.optimizer_step()
    advance_schedule(learner.scheduler)
    learner.model.eval()
    if update.forward_old is not None:
        passed = needed[:, None]  # one epoch, one mini-batch: every row with gradient was passed once
        earlier = (
            batch.old_logprobs if batch.old_logprobs is not None else torch.zeros_like(update.forward_old)
        )
        batch.old_logprobs = torch.where(passed, update.forward_old, earlier)
    result = update.result(needed)
    if distill_weight is not None:
        result["distill/lambda"] = distill_weight
    return result


def model_vocab_size(model) -> int | None:
    """The vocabulary size |V| of a Hugging Face model (the entropy gates normalise by log|V|), else None."""
    return getattr(getattr(model, "config", None), "vocab_size", None)


class _PolicyUpdate:
    """One `policy_update` call: what it runs under, and what it gathers over its mini-batches (token-weighted
    statistics, optimizer-step counts, π_old from its own forward when `forward_old` is set)."""

    def __init__(self, learner: Learner, objective, trainer, step: int, *, on_micro_batch):
        self.learner, self.objective, self.trainer, self.step = learner, objective, trainer, step
        self.on_micro_batch = on_micro_batch
        self.vocab_size = model_vocab_size(learner.model)
        self.parameters = [p for p in learner.model.parameters() if p.requires_grad]
        self.forward_old: torch.Tensor | None = None  # [N, T] π_old from the forward, when it gives it
        self.totals: dict[str, float] = defaultdict(float)
        self.weights: dict[str, float] = defaultdict(float)
        self.optimizer_steps = self.zero_gradient_skips = 0
        self.tokens_without_gradient = 0.0

    def accumulate_gradients(self, batch: Batch, rows: torch.Tensor, with_gradient: torch.Tensor) -> None:
        """The gradient of one mini-batch (`rows` of the batch, [M]): the sum over the micro-batches of its
        rows `with_gradient` (bool [M]), each normalised by the whole mini-batch's counts."""
        trainer, parallel, model = self.trainer, self.learner.parallel, self.learner.model
        num_tokens, num_rows = global_counts(batch.response_mask[rows], parallel)
        if self.objective.aggregation == "micro-batch-mean":  # one normaliser per row (sdar.algorithms)
            mask = batch.response_mask[rows]
            num_tokens = micro_batch_mean_row_normalisers(mask, trainer.micro_batch_rows, parallel)[
                with_gradient
            ]
        self.tokens_without_gradient += float(batch.response_mask[rows[~with_gradient]].sum())
        mini_rows = rows[with_gradient]
        mini = batch.select(mini_rows)
        self.learner.optimizer.zero_grad(set_to_none=True)
        micro_begins = range(0, len(mini), trainer.micro_batch_rows)
        for _ in range(empty_passes_needed(model, len(micro_begins), parallel)):
            empty_pass(model, model_device(model))
        for micro_begin in micro_begins:
            micro_rows = slice(micro_begin, micro_begin + trainer.micro_batch_rows)
            micro_tokens = num_tokens[micro_rows] if num_tokens.dim() else num_tokens
            self.micro_batch_backward(mini.select(micro_rows), mini_rows[micro_rows], micro_tokens, num_rows)
            if self.on_micro_batch is not None:
                self.on_micro_batch()

    def micro_batch_backward(self, micro: Batch, rows: torch.Tensor, num_tokens, num_rows) -> None:
        """Forward, objective and backward of one micro-batch (the batch's `rows`) under the mini-batch's
        normalisers; its statistics weighted by its valid tokens."""
        micro = micro.compact().to(model_device(self.learner.model))
        with bf16_autocast(self.trainer.autocast_bf16, micro.input_ids.device):
            logprobs, entropy = token_logprobs(
                self.learner.model,
                micro.input_ids,
                micro.attention_mask,
                start=micro.response_start,
                with_entropy=self.objective.needs_entropy,
            )
        start = micro.response_start
        old_logprobs = micro.old_logprobs
        if self.forward_old is not None:  # π_old = this forward at the start weights (policy_update)
            old_logprobs = logprobs[:, start:].detach() * micro.response_mask
            self.forward_old[rows] = pad_response(old_logprobs.float(), self.forward_old.shape[1]).cpu()
        loss, stats = policy_objective(
            logprobs[:, start:],
            old_logprobs,
            micro.ref_logprobs,
            micro.teacher_logprobs,
            entropy[:, start:] if entropy is not None else None,
            micro.advantages,
            micro.response_mask,
            settings=self.objective,
            num_tokens=num_tokens,
            num_rows=num_rows,
            step=self.step,
            vocab_size=self.vocab_size,
            sampling_logprobs=micro.sampling_logprobs,
        )
        loss.backward()
        tokens = float(micro.response_mask.sum())
        for key, value in stats.items():
            self.totals[key] += float(value) * tokens
            self.weights[key] += tokens

    def optimizer_step(self) -> None:
        """Sum the mini-batch's gradients over the processes, clip them, and step, unless their norm is not
        finite (skipped; too many in a row stop the run) or, with `skip_zero_gradient`, exactly zero."""
        learner, parameters = self.learner, self.parameters
        if not is_sharded(learner.model):  # FSDP has reduced them in the backward already
            learner.parallel.all_reduce_gradients(parameters)
        for parameter in parameters:  # a mini-batch without a row with gradient: AdamW sees zeros
            if parameter.grad is None:
                parameter.grad = torch.zeros_like(parameter)
        grad_clip = self.trainer.grad_clip
        grad_norm = torch.nn.utils.clip_grad_norm_(parameters, grad_clip if grad_clip > 0 else math.inf)
        grad_norm = full_tensor(grad_norm)  # sharded: every process's share of the norm, combined
        state = learner.state
        if not torch.isfinite(grad_norm):
            # Skip the update: never let a NaN/inf touch the weights or the optimizer's moments.
            learner.optimizer.zero_grad(set_to_none=True)
            state.consecutive_bad_updates += 1
            state.skipped_updates += 1
            if state.consecutive_bad_updates >= self.trainer.max_bad_updates:
                raise TooManyBadUpdates(
                    f"{state.consecutive_bad_updates} consecutive non-finite gradients (step {self.step}); "
                    "stopping before any weight is corrupted — lower trainer.lr or check the data"
                )
            return
        state.consecutive_bad_updates = 0
        self.totals["grad/norm"] += float(grad_norm)
        self.weights["grad/norm"] += 1
        if self.trainer.skip_zero_gradient and grad_norm == 0:  # the same on every process: summed gradients
            learner.optimizer.zero_grad(set_to_none=True)
            self.zero_gradient_skips += 1
            return
        learner.optimizer.step()
        self.optimizer_steps += 1

    def result(self, needed: torch.Tensor) -> dict[str, float]:
        """The update's statistics, token-weighted means over every process's micro-batches, and its counts;
        `needed` [N]: the rows with gradient."""
        parallel = self.learner.parallel
        # A process whose share of every mini-batch was empty has no statistics: take the union of the keys.
        keys = sorted({key for keys in parallel.gather(sorted(self.totals)) for key in keys})
        summed = parallel.sum([self.totals[key] for key in keys] + [self.weights[key] for key in keys])
        totals = dict(zip(keys, summed[: len(keys)], strict=True))
        weights = dict(zip(keys, summed[len(keys) :], strict=True))
        result = {key: totals[key] / max(weights[key], 1e-12) for key in totals}
        result["update/optimizer_steps"] = self.optimizer_steps
        if self.trainer.skip_zero_gradient:
            result["update/zero_gradient_skips"] = self.zero_gradient_skips
        result["update/skipped_total"] = self.learner.state.skipped_updates
        rows_without, tokens_without = parallel.sum([float((~needed).sum()), self.tokens_without_gradient])
        result["update/rows_without_gradient"] = int(rows_without)
        result["objective/valid_tokens"] = weights.get("objective/valid_tokens", 0.0) + tokens_without
        return result


def update_without_gradient(learner: Learner, batch: Batch, *, trainer: TrainerConfig) -> dict[str, float]:
    """What `policy_update` does to the weights, the optimizer and the schedule when the objective has no
    gradient on the batch (`sdar.algorithms.has_gradient`), without its forward and backward passes: every
    mini-batch's gradient is exactly zero, so with `trainer.skip_zero_gradient` no optimizer step is taken,
    and without it each mini-batch steps on zero gradients (AdamW's momentum and weight decay still move the
    weights). The batch needs only its response mask; no log-probs are read."""
    optimizer, parallel, epochs = learner.optimizer, learner.parallel, trainer.ppo_epochs
    parameters = [p for group in optimizer.param_groups for p in group["params"] if p.requires_grad]
    mini_batches = epochs * mini_batch_count(batch, trainer.mini_batch_rows, parallel)
    updates = 0
    if not trainer.skip_zero_gradient:
        for _ in range(mini_batches):
            for parameter in parameters:
                parameter.grad = torch.zeros_like(parameter)
            optimizer.step()
            updates += 1
        optimizer.zero_grad(set_to_none=True)
    learner.state.consecutive_bad_updates = 0  # a zero gradient is a finite one
    advance_schedule(learner.scheduler)
    (tokens,) = parallel.sum([float(batch.response_mask.sum())])
    (rows,) = parallel.sum([len(batch)])
    result = {
        "grad/norm": 0.0,
        "update/optimizer_steps": updates,
        "update/skipped_total": learner.state.skipped_updates,
        "update/rows_without_gradient": int(rows),
        "objective/valid_tokens": tokens * epochs,
    }
    if trainer.skip_zero_gradient:
        result["update/zero_gradient_skips"] = mini_batches
    return result
