"""The trainer: docs/method.md §5, one call per line of the algorithm box, for every method of the table.

    1-3  episodes  = rollout of B tasks x G episodes, rewards per row
    4    old       = log π_old of the sampled tokens (the step's start weights; see "π_old" below)
    5    teacher   = log π_T under the skill-augmented prompt (methods that need it)
    6    ref       = log-probs of the initial model (KL term)
    7    advantages (GRPO/RLOO; never modified by SDAR)
    8    update    = one epoch of PPO-clip + entropy + KL + λ·distillation over mini-batches
         (when no term has a gradient, GRPO's all-won/all-lost steps without KL or entropy, the passes of
         4 and 8 are skipped and the optimizer does what a zero gradient would make it do)
    9    validate on the fixed `eval` panel every `trainer.eval_every` steps, into `RUN/eval/step_<n>/`

With `trainer.eval_at_ends`, the run also evaluates the `eval` panel before its first step (after any SFT
warm start; skipped with `trainer.eval_at_start: false`) and after its last, into `RUN/eval/step_0/` and
`RUN/eval/final/`. Every evaluation plays exactly what `sdar eval --checkpoint` plays on the saved weights and
writes what it writes (summary.json + episodes.jsonl); its success is logged as `val/won_rate`.

π_old without a pass of its own: when the update is one pass at the step's start weights
(`one_on_policy_pass`: one epoch, one mini-batch over every process's rows, no dropout), its own forward,
detached, is log π_old up to float rounding. The update then takes π_old from it and writes it into
`batch.old_logprobs` for the teacher gap, samples.jsonl and `rollout/*`; the old pass scores only the rows it
does not pass that the teacher gap reads. Otherwise the old pass scores every row read.
`update/old_from_forward` says which; `time/old_s` is logged exactly when an old pass ran (on any process).
With the generator's log-probs in the batch, every step logs the sampler-trainer mismatch over the rows with
π_old (`rollout/*`, docs/rollout-correction.md).

Everything random in a step is drawn from generators seeded by (seed, step), so a run resumed from a
checkpoint replays exactly what an uninterrupted run does.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from sdar.algorithms import (
    gap_by_turn,
    get_method,
    rows_with_gradient,
    sampler_mismatch_metrics,
    sampler_mismatch_totals,
)
from sdar.algorithms.objective import advantages_from_config, settings_from_config
from sdar.config import Config, save_config, to_dict
from sdar.errors import ActionableError
from sdar.locking import DirectoryLock
from sdar.models import load_model
from sdar.models.sharding import full_weights, is_sharded, shard_model
from sdar.models.trained import checkpoint_path, latest_checkpoint
from sdar.records import Episode, rows_to_batch
from sdar.teacher import TeacherWeights
from sdar.teacher.weights import is_peft_model
from sdar.teacher_contexts import teacher_weight_kinds
from sdar.training.checkpoint import load_checkpoint, refuse_a_used_run_dir, save_checkpoint
from sdar.training.distributed import DataParallel, combine_rollout_stats, ensure_process_group
from sdar.training.logging import NullLogger, RunLogger, StepTimer, check_wandb, record_process
from sdar.training.plan import refuse_what_cannot_fit
from sdar.training.session import RolloutSession
from sdar.training.update import (
    Learner,
    UpdateState,
    bf16_autocast,
    one_on_policy_pass,
    policy_update,
    score_batch,
    update_without_gradient,
)

LOCKED_RUN = "wait for it to end (or stop it) before resuming, or train into another directory (--output)"
RANK_SALT = 104_729  # data parallelism: process r samples its rollout with salt r * RANK_SALT


class NonFiniteLoss(ActionableError, FloatingPointError):
    """A step logged a NaN or infinite loss: the run stops before it saves or evaluates that state."""


def _finite(value) -> bool:
    return not isinstance(value, float) or math.isfinite(value)


def validation_metrics(summary: dict) -> dict:
    """`val/*` of one panel evaluation for metrics.jsonl: success, episodes and the env's metric means."""
    if not summary:  # processes other than 0 do not evaluate
        return {}
    metrics = {"val/won_rate": summary["success_rate"], "val/episodes": summary["episodes"]}
    metrics.update({f"val/{name}_mean": entry["mean"] for name, entry in summary.get("metrics", {}).items()})
    return metrics


def step_seed(seed: int, step: int, salt: int = 0) -> int:
    """A per-step seed independent of everything that happened before (resume-safe)."""
    return (seed * 1_000_003 + step * 7_919 + salt) % (2**31 - 1)


def use_deterministic_kernels() -> None:
    """`trainer.deterministic`: torch's deterministic algorithms for this process, with the fixed cuBLAS
    workspace they need (read when CUDA first runs a matrix product, so set it before that where you can)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)


@dataclass
class StepResult:
    metrics: dict
    episodes: list[Episode]


class Trainer:
    def __init__(
        self,
        config: Config,
        run_dir: str | Path,
        *,
        resume: bool = False,
        progress=None,
        parallel: DataParallel | None = None,
    ):
        self.config = config
        # One process, or one of the `accelerate launch` processes (sdar/training/distributed.py).
        self.parallel = parallel or DataParallel.from_environment()
        self.run_dir = Path(run_dir)
        created = not self.run_dir.exists()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.progress = progress
        self.session: RolloutSession | None = None
        self.logger = NullLogger()
        self.lock = None
        try:
            self.lock = self._claim_run_dir(resume)
            self._build(resume)
        except BaseException:
            self.close()
            if created:  # a run that never started leaves no directory behind (it held nothing before)
                shutil.rmtree(self.run_dir, ignore_errors=True)
            raise

    def _claim_run_dir(self, resume: bool) -> DirectoryLock | None:
        """Process 0 writes the run directory, so it holds its lock: a second `sdar train` into it (a requeued
        job while this one still runs) is refused before it loads a model or touches metrics and checkpoints.
        A new run is refused a directory that holds another's logged steps or checkpoints (it would append
        its metrics to theirs and overwrite their checkpoints). Every process learns process 0's refusal, so
        none is left waiting for it at a barrier."""
        lock = refusal = None
        if self.parallel.is_main:
            try:
                lock = DirectoryLock(self.run_dir, "training run", LOCKED_RUN)
                if not resume:
                    refuse_a_used_run_dir(self.run_dir)
            except Exception as error:  # raised in every process below, not only in this one
                refusal = error
                if lock is not None:
                    lock.release()
        refusal = self.parallel.gather(refusal)[0]
        if refusal is not None:
            raise refusal
        return lock

    def _build(self, resume: bool) -> None:
        config = self.config
        self.method = get_method(config.algorithm.method)
        self.settings = settings_from_config(config.algorithm)
        if config.trainer.deterministic:
            use_deterministic_kernels()
        torch.manual_seed(config.seed)
        random.seed(config.seed)
        if self.parallel.is_main:
            check_wandb(config.trainer.wandb_project)  # before minutes of model loading
        if config.trainer.memory_check:  # on GPUs: refuse a run sdar plan says cannot fit (docs/plan.md)
            refuse_what_cannot_fit(config, device=self.parallel.device, processes=self.parallel.world_size)
        self.model, self.tokenizer = load_model(config.model, device=self.parallel.device)
        # Outside policy_update the model is in eval mode (no dropout): a fresh LoRA model comes back in train
        # mode, which made the first step's old/ref log-probs (and a resumed run's first step) draw dropout.
        self.model.eval()
        self.reference = self._reference_model()
        base_model = self.reference.base_model if self.reference is not None else None
        if config.trainer.sharding == "fsdp":
            base_model = self._shard(base_model)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            trainable, lr=config.trainer.lr, weight_decay=config.trainer.weight_decay
        )
        warmup = max(int(config.trainer.warmup_ratio * config.trainer.steps), 0)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0
        )
        self.session = RolloutSession(
            config,
            self.model,
            self.tokenizer,
            teacher_needed=self.needs_teacher,
            parallel=self.parallel,
            base_model=base_model,
        )
        self.update_state = UpdateState()
        self.start_step = 0
        self.evaluations: dict[str, dict] = {}  # "before" / "after": the panel summaries of this process
        main = self.parallel.is_main
        if main:
            self.logger = RunLogger(
                self.run_dir,
                tensorboard=config.trainer.tensorboard,
                wandb_project=config.trainer.wandb_project,
                config=to_dict(config),
            )
        if resume:
            self._resume()
        elif main:
            save_config(config, self.run_dir / "config.yaml")
        if main:
            record_process(self.run_dir, config, self.start_step)

    @property
    def needs_teacher(self) -> bool:
        return self.settings.needs_teacher or self.config.teacher.score_always

    # ---- setup ---------------------------------------------------------------------------------------------
    def _reference_model(self) -> TeacherWeights | None:
        """The frozen initial model for the KL term: the LoRA base (adapters off) or a frozen copy. It is the
        teacher's `base` weights, so the same class holds it (and a `base` teacher shares the copy)."""
        if self.settings.kl_coef == 0:
            return None
        return TeacherWeights("base", self.model)

    def _shard(self, base_model):
        """`trainer.sharding=fsdp`: shard the policy and any frozen full copy of the initial model (the KL
        reference, or a `base` teacher's own copy, made here before the policy is sharded); returns that
        copy for the teacher to share."""
        base_teacher = self.needs_teacher and "base" in teacher_weight_kinds(self.config.teacher)
        if base_model is None and base_teacher and not is_peft_model(self.model):
            base_model = TeacherWeights("base", self.model).base_model
        ensure_process_group(self.parallel)
        offload = self.config.trainer.cpu_offload
        shard_model(self.model, cpu_offload=offload)
        if base_model is not None:
            shard_model(base_model, cpu_offload=offload)
        return base_model

    def _resume(self) -> None:
        checkpoint = latest_checkpoint(self.run_dir)
        if checkpoint is None:  # stopped before its first checkpoint: start over, in the same directory
            self.logger.truncate_after(0)
            return
        state = load_checkpoint(checkpoint, self.model, self.optimizer, self.scheduler)
        self.start_step = state["step"]
        self.update_state = UpdateState(**state.get("update_state", {}))
        self.session.load_state(state.get("session", {}))
        self.session.sync_weights()  # a separate engine (vLLM) holds the initial weights
        self.logger.truncate_after(self.start_step)

    def _save(self, step: int) -> None:
        if self.parallel.is_main or is_sharded(self.model):  # sharded: every process writes its shard
            self._save_checkpoint(step)
        self.parallel.barrier()  # nobody runs ahead of a checkpoint a resume would start from

    def _save_checkpoint(self, step: int) -> None:
        save_checkpoint(
            self.run_dir,
            step,
            self.model,
            self.optimizer,
            self.scheduler,
            {"update_state": vars(self.update_state), "session": self.session.state()},
            keep_last=self.config.trainer.keep_last,
            parallel=self.parallel,
        )

    # ---- one step (docs/method.md §5) -------------------------------------------------------------------
    def reference_logprobs(self, batch):
        if self.reference is None:
            return None
        with self.reference.scoring_model() as model, full_weights(model):
            return score_batch(model, batch, micro_batch_rows=self.config.trainer.micro_batch_rows)[0]

    def old_logprobs(self, batch, rows: torch.Tensor | None) -> torch.Tensor:
        """The rollout policy's log-probs [N, T] of the batch's responses; with `rows` (bool [N]) only of
        those rows, the others left 0 (rows nothing reads before the update, or whose π_old the update's
        own forward gives)."""
        micro_batch_rows = self.config.trainer.micro_batch_rows
        if rows is None or rows.all():
            return score_batch(self.model, batch, micro_batch_rows=micro_batch_rows)[0]
        if not rows.any():
            return torch.zeros(batch.response_mask.shape)
        scored = score_batch(self.model, batch.select(rows), micro_batch_rows=micro_batch_rows)[0]
        logprobs = scored.new_zeros(batch.response_mask.shape)
        logprobs[rows] = scored
        return logprobs

    def rows_to_score(self, needed: torch.Tensor, from_forward: bool) -> torch.Tensor:
        """Rows [N] (bool) of the old pass: those whose π_old is read (every row when the teacher gap reads
        them, else those the update passes, `needed`), less those whose π_old the update's forward gives."""
        read = torch.ones_like(needed) if self.needs_teacher else needed
        return read & ~needed if from_forward else read

    def sampler_mismatch(self, batch, rows: torch.Tensor) -> dict:
        """`rollout/*` over the valid tokens of `rows` (those with π_old), over every process."""
        old = batch.old_logprobs if batch.old_logprobs is not None else torch.zeros_like(batch.response_mask)
        mask = batch.response_mask & rows[:, None]
        totals = sampler_mismatch_totals(old, batch.sampling_logprobs, mask)
        keys = ("tokens", "abs_diff_sum", "k3_sum")
        combined = dict(zip(keys, self.parallel.sum([totals[key] for key in keys]), strict=True))
        combined["abs_diff_max"] = max(self.parallel.gather(totals["abs_diff_max"]))
        return sampler_mismatch_metrics(combined)

    def train_step(self, step: int) -> StepResult:
        config = self.config
        timer = StepTimer(on_start=getattr(self.progress, "phase", None))  # names each phase as it starts
        # Dropout draws from the global RNG: seeded per step and process, a resumed run (on any device, any
        # rank) draws the masks an uninterrupted one draws; checkpoints carry only the CPU generator's state.
        torch.manual_seed(step_seed(config.seed, step, salt=2 + RANK_SALT * self.parallel.rank))
        with timer("step"):
            with timer("rollout"):
                seed = step_seed(config.seed, step, salt=RANK_SALT * self.parallel.rank)
                episodes, rollout_stats = self.session.rollout(step, seed=seed)
                rollout_stats = combine_rollout_stats(self.parallel.gather(rollout_stats))
            turns = [turn for episode in episodes for turn in episode.turns]
            batch = rows_to_batch(turns, self.tokenizer.pad_token_id)
            batch.advantages = advantages_from_config(
                config.algorithm, batch.rewards, batch.group_index, batch.episode_index
            )
            # Rows without gradient (GRPO's all-won or all-lost groups when no KL or entropy term is on) need
            # no old log-probs unless the teacher's gap reads them, nor update passes; a batch of only such
            # rows skips the update's passes altogether. A one-pass update gives π_old itself (docstring).
            needed = rows_with_gradient(self.settings, batch.advantages)
            (with_gradient,) = self.parallel.sum([float(needed.any())])
            from_forward = bool(with_gradient) and one_on_policy_pass(
                self.model,
                batch,
                mini_batch_rows=config.trainer.mini_batch_rows,
                epochs=config.trainer.ppo_epochs,
                parallel=self.parallel,
                objective=self.settings,
            )
            scored = self.rows_to_score(needed, from_forward)
            # The scoring passes run at the update's precision, so that the PPO ratio compares like with like.
            precision = bf16_autocast(config.trainer.autocast_bf16, batch.input_ids.device)
            (any_scored,) = self.parallel.sum([float(scored.any())])  # entered together (a sharded model)
            if any_scored:
                with timer("old"), precision, full_weights(self.model):
                    batch.old_logprobs = self.old_logprobs(batch, scored)
            if self.needs_teacher:
                with timer("teacher"), precision:
                    batch.teacher_logprobs = self.session.teacher_logprobs(turns, batch)
            with timer("ref"), precision:
                batch.ref_logprobs = self.reference_logprobs(batch)
            with timer("update"):
                if with_gradient:
                    update_stats = self._update(batch, step, old_from_forward=from_forward)
                else:
                    update_stats = self._update_without_gradient(batch)
            self.session.after_update()
        metrics = {"step": step + 1, **rollout_stats, **update_stats, **timer.seconds}
        metrics["update/without_gradient"] = int(not with_gradient)
        metrics["update/old_from_forward"] = int(from_forward)
        if batch.sampling_logprobs is not None:
            metrics.update(self.sampler_mismatch(batch, scored | (needed & from_forward)))
        metrics["train/rows"] = int(self.parallel.sum([len(batch)])[0])
        metrics["train/advantage_abs_mean"] = float(batch.advantages.abs().mean())
        metrics["lr"] = self.scheduler.get_last_lr()[0]
        if batch.teacher_logprobs is not None:
            gap = (batch.teacher_logprobs - batch.old_logprobs) * batch.response_mask
            means, _ = gap_by_turn(gap, batch.response_mask, batch.turn_index, config.env.max_turns)
            used = int(batch.turn_index.max()) + 1
            metrics["distill/gap_by_turn"] = [round(float(v), 5) for v in means[:used]]
        metrics.update(self.session.teacher_context_stats(batch))  # teacher.contexts: share and gap of each
        samples = self.session.samples(episodes, batch, self.settings, limit=config.trainer.sample_episodes)
        self.logger.log_samples(step + 1, samples)
        return StepResult(metrics, episodes)

    @property
    def learner(self) -> Learner:
        """What the update changes: the model, optimizer, schedule and bad-update count of this process."""
        return Learner(self.model, self.optimizer, self.scheduler, self.update_state, self.parallel)

    def _update(self, batch, step: int, old_from_forward: bool = False) -> dict:
        return policy_update(
            self.learner,
            batch,
            objective=self.settings,
            trainer=self.config.trainer,
            step=step,
            generator=torch.Generator().manual_seed(step_seed(self.config.seed, step, salt=1)),
            old_from_forward=old_from_forward,
            on_micro_batch=self.progress.advance_update if self.progress else None,
        )

    def _update_without_gradient(self, batch) -> dict:
        return update_without_gradient(self.learner, batch, trainer=self.config.trainer)

    # ---- the loop ------------------------------------------------------------------------------------------
    def evaluate_panel(self, label: str, step: int) -> dict:
        """The model policy on the eval panel, written to RUN/eval/<label>/ (see the module docstring); by
        process 0 while the others wait."""
        with self.session.sampling_weights():  # whole on every process: only process 0 plays
            summary = self._evaluate_panel(label, step) if self.parallel.is_main else {}
            self.parallel.barrier()
        return summary

    def _evaluate_panel(self, label: str, step: int) -> dict:
        from sdar.evaluation.evaluate import evaluate_loaded

        config = dataclasses.replace(self.config, eval=dataclasses.replace(self.config.eval, policy="model"))
        saved = checkpoint_path(self.run_dir, step)  # a periodic evaluation runs just before the step's save
        kept = saved.is_dir() or self._saves_at(step)
        checkpoint = {"path": saved.resolve().as_posix() if kept else None, "step": step}
        self.model.eval()
        return evaluate_loaded(
            config,
            self.session.pool,
            self.session.backend,
            self.tokenizer,
            output_dir=self.run_dir / "eval" / label,
            checkpoint=checkpoint,
            on_progress=(lambda text: self.progress.status(f"eval {label}: {text}"))
            if self.progress
            else None,
        )

    def _saves_at(self, step: int) -> bool:
        every = self.config.trainer.save_every
        return step > 0 and bool(every) and (step % every == 0 or step == self.config.trainer.steps)

    def train(self) -> list[dict]:
        config = self.config
        history = []
        trainer = config.trainer
        if trainer.eval_at_ends and trainer.eval_at_start and self.start_step == 0:
            self.evaluations["before"] = self.evaluate_panel("step_0", 0)
        for step in range(self.start_step, trainer.steps):
            result = self.train_step(step)
            metrics = result.metrics
            finite = all(_finite(value) for key, value in metrics.items() if "loss" in key)
            if finite and trainer.eval_every and (step + 1) % trainer.eval_every == 0:
                # The last step's is the run's `final` evaluation when eval_at_ends plays one.
                last = step + 1 == trainer.steps
                label = "final" if last and trainer.eval_at_ends else f"step_{step + 1}"
                summary = self.evaluate_panel(label, step + 1)
                if label == "final":
                    self.evaluations["after"] = summary
                metrics.update(validation_metrics(summary))
            self.logger.log_step(metrics)
            history.append(metrics)
            if self.progress:
                self.progress.step_done(metrics)
            if not finite:  # logged first, so the bad step's numbers are kept
                bad = sorted(key for key, value in metrics.items() if "loss" in key and not _finite(value))
                raise NonFiniteLoss(
                    f"step {step + 1}: a non-finite loss was logged ({', '.join(bad)}); the run stopped "
                    f"before saving it. Lower trainer.lr or check the data, then `sdar train --resume "
                    f"{self.run_dir}` continues from the last checkpoint"
                )
            if self._saves_at(step + 1):
                self._save(step + 1)
        if trainer.eval_at_ends and not (self.run_dir / "eval" / "final" / "summary.json").exists():
            self.evaluations["after"] = self.evaluate_panel("final", config.trainer.steps)
        for key, label in (("before", "step_0"), ("after", "final")):  # those of an earlier, resumed process
            path = self.run_dir / "eval" / label / "summary.json"
            if key not in self.evaluations and path.is_file():
                self.evaluations[key] = json.loads(path.read_text())
        return history

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
        self.logger.close()
        if self.lock is not None:
            self.lock.release()
