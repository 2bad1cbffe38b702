"""Supervised warm start on expert demonstrations (a small model needs it before RL sees any reward).

The demonstrations use exactly the prompt the policy sees during rollout (same builder, same chat template)
and the env's reply format (`<think>...</think><action>...</action>` by default); optionally
(`sft.with_skills`) each is repeated with the skills where the teacher sees them (`sft.skills_format:
teacher`, the teacher's placement) or in the student's message (`student`, Skill-GRPO's format). Training is
LoRA (or full) cross-entropy on the reply tokens, token-mean. The result is merged into the base weights and
saved as a normal Hugging Face directory, cached by a hash of everything that determines it, so
`sft.warm_start: true` in a training config reuses it.

A LoRA warm start also keeps its adapter (WARM_START/adapter: about 20 MB for SmolLM2-135M at rank 16, against
540 MB merged). Training is not reproducible across machines (a replica of the CPU experiment's warm start,
trained from the same config on another machine, reads its skill line measurably differently), so an
experiment that must outlive its machine keeps the adapter and sets `sft.adapter` to it: the warm start is
then rebuilt from it (base + adapter, merged; the same weights up to float rounding) instead of trained.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import random
import shutil
import time
import warnings
from pathlib import Path

import torch
from filelock import FileLock, Timeout

from sdar.config import Config, to_dict
from sdar.envs import get_env_spec, make_env
from sdar.envs.policies import default_reply, expert_demonstrations
from sdar.errors import ConfigError
from sdar.models import load_model, token_logprobs
from sdar.models.trained import WARM_START_FOLDER, WARM_START_SUMMARY
from sdar.records import Turn, pack_sequences
from sdar.rollout.engine import add_skills_to_message, chat_prompt_ids
from sdar.skills import library_name, teacher_context
from sdar.skills.library import skills_dir_fingerprint
from sdar.teacher import build_teacher_prompt
from sdar.training.distributed import default_device
from sdar.training.logging import machine
from sdar.training.update import bf16_autocast, model_device

SFT_FORMAT_VERSION = 1  # bump when the demonstration format changes, so cached warm starts are rebuilt
ADAPTER = "adapter"  # a LoRA warm start's adapter, inside its directory
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", WARM_START_SUMMARY)
DEMO_MAX_TURNS = 50  # the expert's episode limit, independent of the policy's env.max_turns


def cache_root(config: Config) -> Path:
    base = config.model.cache_dir or os.environ.get("SDAR_CACHE", "") or "~/.cache/sdar"
    return Path(base).expanduser() / WARM_START_FOLDER


# How env workers run, which changes no demonstration: left out of the warm start's key.
ENV_RUNTIME_SETTINGS = ("workers", "step_timeout_s", "executor", "ray_address")


def warm_start_key(config: Config) -> str:
    """16 hex characters naming the SFT result: base model, SFT settings, env, prompt format and seed."""
    return _short_hash(_key_payload(config))


def recipe_key(config: Config) -> str:
    """16 hex characters naming the SFT settings without the seed: the warm starts of one recipe under
    several seeds (`sft.seed: -1`, one per run seed) share it, and reports pool their runs by it."""
    return _short_hash({k: v for k, v in _key_payload(config).items() if k != "seed"})


def _short_hash(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _key_payload(config: Config) -> dict:
    sft = {k: v for k, v in to_dict(config.sft).items() if k not in ("warm_start", "seed")}
    payload = {
        "version": SFT_FORMAT_VERSION,
        "model": {k: v for k, v in to_dict(config.model).items() if k not in ("cache_dir", "lora_rank")},
        "sft": sft,
        "teacher_placement": config.teacher.placement,  # where the skill-conditioned copies put the skills
        "env": {k: v for k, v in to_dict(config.env).items() if k not in ENV_RUNTIME_SETTINGS},
        "max_prompt_tokens": config.rollout.max_prompt_tokens,
        "seed": sft_seed(config),
    }
    # Settings added later enter the key only when set, so that existing cached warm starts keep their names.
    if not sft["env_options"]:
        del sft["env_options"]
    if sft["adapter"]:  # rebuilt from a saved adapter: named by its weights, wherever it lies
        sft["adapter"] = hashlib.sha256(adapter_files(config)[1].read_bytes()).hexdigest()
    else:
        del sft["adapter"]
    if config.teacher.skill_library:
        payload["teacher_skill_library"] = config.teacher.skill_library  # what the skill copies carry
    if config.teacher.skills_dir:  # named by its files' texts, wherever it lies
        payload["teacher_skills_dir"] = skills_dir_fingerprint(config.teacher.skills_dir)
    return payload


def sft_seed(config: Config) -> int:
    """The warm start's seed: `sft.seed`, or the run's seed when it is -1."""
    return config.seed if config.sft.seed < 0 else config.sft.seed


def demonstration_pairs(config: Config, tokenizer) -> tuple[list[list[int]], list[list[int]], dict]:
    """(prompt ids, reply ids) of expert turns on the first `sft.games` tasks of `sft.split`."""
    spec = get_env_spec(config.env.name)
    history_length = config.env.history_length
    env = make_env(dataclasses.replace(config.env, options={**config.env.options, **config.sft.env_options}))
    try:
        task_ids = env.task_ids(config.sft.split)[: config.sft.games]

        def render(task, observation, admissible, history, step_count):
            return spec.build_prompt(task, observation, admissible, history, step_count, history_length)

        turns = list(
            expert_demonstrations(
                env,
                task_ids,
                max_turns=DEMO_MAX_TURNS,
                render_prompt=render,
                render_reply=spec.render_reply or default_reply,
            )
        )
    finally:
        env.close()
    prompts, replies = [], []
    library = library_name(spec, config.teacher.skill_library, config.teacher.skills_dir)
    for turn in turns:
        reply_ids = tokenizer.encode(turn.reply, add_special_tokens=False)
        plain = chat_prompt_ids(tokenizer, turn.prompt)
        candidates = [plain]
        if config.sft.with_skills and config.sft.skills_format == "student":
            skilled = add_skills_to_message(teacher_context(library, turn.task), turn.prompt)
            candidates.append(chat_prompt_ids(tokenizer, skilled))
        elif config.sft.with_skills:
            candidates.append(teacher_prompt_ids(turn, plain, reply_ids, tokenizer, library, config))
        for prompt_ids in candidates:
            if len(prompt_ids) <= config.rollout.max_prompt_tokens:
                prompts.append(prompt_ids)
                replies.append(reply_ids)
    episodes = len({turn.task.task_id for turn in turns})
    return prompts, replies, {"tasks": len(task_ids), "expert_won_episodes": episodes, "pairs": len(prompts)}


def teacher_prompt_ids(turn, prompt_ids: list[int], reply_ids: list[int], tokenizer, library: str, config):
    """The demonstration's prompt as the teacher sees it (its skills, placed by teacher.placement)."""
    row = Turn(
        task=turn.task,
        group_index=0,
        episode_index=0,
        turn_index=turn.step_count,
        prompt_text=turn.prompt,
        prompt_ids=prompt_ids,
        response_ids=reply_ids,
        response_text=turn.reply,
        action=turn.expert_action,
        valid=True,
    )
    return build_teacher_prompt(
        row, tokenizer, env_name=library, placement=config.teacher.placement
    ).prompt_ids


def train_sft(config: Config, output_dir: Path, *, log=print) -> dict:
    """Train on demonstrations and save the merged model + tokenizer in `output_dir`; returns a summary."""
    sft = config.sft
    torch.manual_seed(sft_seed(config))
    model_config = dataclasses.replace(config.model, lora_rank=sft.lora_rank)
    model, tokenizer = load_model(model_config, device=default_device())  # this process's GPU if it has one
    prompts, replies, counts = demonstration_pairs(config, tokenizer)
    if not prompts:
        raise RuntimeError("the expert produced no demonstrations; check env.split / sft.split and sft.games")
    log(f"sft: {counts['pairs']} demonstration turns from {counts['expert_won_episodes']} expert episodes")
    parameters = [p for p in model.parameters() if p.requires_grad]
    device_of = model_device(model)
    optimizer = torch.optim.AdamW(parameters, lr=sft.lr, weight_decay=0.0)
    order_rng = random.Random(sft_seed(config))
    losses, started = [], time.perf_counter()
    batches = -(-len(prompts) // sft.batch_rows)  # per epoch
    report_every = max(1, batches // 10)  # about ten progress lines an epoch
    model.train()
    for epoch in range(sft.epochs):
        order = list(range(len(prompts)))
        order_rng.shuffle(order)
        epoch_losses = []
        for begin in range(0, len(order), sft.batch_rows):
            rows = order[begin : begin + sft.batch_rows]
            optimizer.zero_grad(set_to_none=True)
            total_tokens = sum(len(replies[i]) for i in rows)
            batch_loss = 0.0
            for micro in range(0, len(rows), config.trainer.micro_batch_rows):
                chunk = rows[micro : micro + config.trainer.micro_batch_rows]
                packed = pack_sequences(
                    [prompts[i] for i in chunk], [replies[i] for i in chunk], tokenizer.pad_token_id
                )
                input_ids, attention_mask, response_mask = (tensor.to(device_of) for tensor in packed[:3])
                start = packed[3]
                with bf16_autocast(config.trainer.autocast_bf16, input_ids.device):
                    logprobs, _ = token_logprobs(model, input_ids, attention_mask, start=start)
                loss = (
                    -(logprobs[:, start:] * response_mask).sum() / total_tokens
                )  # token-mean over the batch
                loss.backward()
                batch_loss += float(loss.detach())
            torch.nn.utils.clip_grad_norm_(parameters, config.trainer.grad_clip or float("inf"))
            optimizer.step()
            epoch_losses.append(batch_loss)
            done = epoch * batches + len(epoch_losses)
            if len(epoch_losses) % report_every == 0 and len(epoch_losses) < batches:
                recent = epoch_losses[-report_every:]
                elapsed = time.perf_counter() - started
                left = elapsed / done * (sft.epochs * batches - done)
                log(
                    f"sft: epoch {epoch + 1}/{sft.epochs}, batch {len(epoch_losses)}/{batches}, loss "
                    f"{sum(recent) / len(recent):.4f}, {elapsed / 60:.1f} min, about {left / 60:.1f} min left"
                )
        losses += epoch_losses
        log(f"sft: epoch {epoch + 1}/{sft.epochs} mean loss {sum(epoch_losses) / len(epoch_losses):.4f}")
    model.eval()
    model = model.cpu()  # saved from the CPU: the cached directory does not depend on the device
    summary = {
        "base_model": config.model.name,  # every run trained from it records it (run_info.json)
        "recipe": recipe_key(config),  # and this, which names it in reports whatever its seed
        **counts,
        "epochs": sft.epochs,
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "seconds": round(time.perf_counter() - started, 1),
        # Training again from the same config reproduces these losses only on a machine like this one
        # (`machine`): compare the first ones before trusting a rebuilt warm start to be the same model.
        "machine": machine(),
        "losses": [round(x, 5) for x in losses],
    }
    staging = _staging(Path(output_dir))
    if sft.lora_rank > 0:
        model.save_pretrained(staging / ADAPTER)  # before merging, which drops the adapter
        (staging / ADAPTER / WARM_START_SUMMARY).write_text(json.dumps(summary, indent=2))
        model = model.merge_and_unload()
    _save_model(model, tokenizer, staging, summary)
    _replace(staging, Path(output_dir))
    return summary


def adapter_files(config: Config) -> list[Path]:
    """`sft.adapter`'s files (ADAPTER_FILES); a clear error when one is missing."""
    directory = Path(config.sft.adapter).expanduser()
    files = [directory / name for name in ADAPTER_FILES]
    missing = [path.name for path in files if not path.is_file()]
    if missing:
        raise ConfigError(
            f"sft.adapter={config.sft.adapter!r}: no {', '.join(missing)} there; point it at the adapter/ "
            "folder of a LoRA warm start (sdar sft writes it), or set sft.adapter='' to train the warm start"
        )
    return files


def rebuild_from_adapter(config: Config, output_dir: Path) -> dict:
    """The warm start of a saved adapter (`sft.adapter`): the base model with the adapter merged in, saved
    like a trained one (its adapter copied along); returns its summary, which names where it came from."""
    from peft import PeftModel

    files = adapter_files(config)
    summary = {**json.loads(files[2].read_text(encoding="utf-8")), "rebuilt_from": config.sft.adapter}
    base, tokenizer = load_model(dataclasses.replace(config.model, lora_rank=0))
    with warnings.catch_warnings():  # peft asks transformers a deprecated question; nothing for the user
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        model = PeftModel.from_pretrained(base, files[0].parent).merge_and_unload()
    staging = _staging(output_dir)
    shutil.copytree(files[0].parent, staging / ADAPTER)
    _save_model(model.eval(), tokenizer, staging, summary)
    _replace(staging, output_dir)
    return summary


def _staging(output_dir: Path) -> Path:
    staging = output_dir.with_name(f".tmp-{output_dir.name}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def _save_model(model, tokenizer, staging: Path, summary: dict) -> None:
    model.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    (staging / WARM_START_SUMMARY).write_text(json.dumps(summary, indent=2))


def _replace(staging: Path, output_dir: Path) -> None:
    if output_dir.exists():
        shutil.rmtree(output_dir)
    os.replace(staging, output_dir)


def warm_start(config: Config, *, log=print) -> Path:
    """The cached SFT model directory for this config (trained on first use). Processes that need the same
    warm start at once (runs of several methods started together on a fresh cache) make it once: the first
    takes the key's lock and makes it, the others wait for the lock and then reuse what it made."""
    directory = cache_root(config) / warm_start_key(config)
    if (directory / WARM_START_SUMMARY).exists():
        log(f"sft: reusing the cached warm start {directory}")
        return directory
    with _making(directory, log):
        if (directory / WARM_START_SUMMARY).exists():  # made by the process this one waited for
            log(f"sft: reusing the warm start another process made: {directory}")
        elif config.sft.adapter:
            log(f"sft: rebuilding the warm start from the adapter {config.sft.adapter} (cache: {directory})")
            rebuild_from_adapter(config, directory)
        else:
            log(f"sft: training a warm start (cached in {directory})")
            train_sft(config, directory, log=log)
    return directory


@contextlib.contextmanager
def _making(directory: Path, log):
    """Hold the lock of the warm start in `directory` (a lock file beside it), waiting for it if needed."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(directory.with_name(f".{directory.name}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log(f"sft: another process is making this warm start ({directory}); waiting for it")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def with_warm_start(config: Config, *, log=print) -> Config:
    """The config to train from: model.name pointing at the (cached) SFT model when sft.warm_start is on.
    The returned config has sft.warm_start off (its model IS the warm start), so a run's saved config, read
    again by `sdar eval --checkpoint` or a resume, never stacks a second warm start on top."""
    if not config.sft.warm_start:
        return config
    directory = warm_start(config, log=log)
    return dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, name=str(directory)),
        sft=dataclasses.replace(config.sft, warm_start=False),
    )
