"""`load_model(config)`: one entry point for the embedded SmolLM2, the tiny test model, HF ids and folders.

Order of preparation: weights in the chosen dtype -> device -> gradient checkpointing -> LoRA adapters, and a
tokenizer with a pad token, `padding_side="left"` (what batched generation needs; training code that wants
right padding sets it itself) and a chat template. A Hugging Face id is read from the local Hugging Face cache
and, online, downloaded into it by transformers as usual; offline (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE) an
id missing from the cache fails at once with a message naming the command that fetches it, rather than
retrying the network for ~50 s.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import torch

from sdar.config import ModelConfig
from sdar.errors import ConfigError
from sdar.models.architectures import build_random_model, is_random_name
from sdar.models.embedded import embedded_model_dir
from sdar.models.tiny import CHATML_TEMPLATE, build_tiny_model, build_tiny_tokenizer

logger = logging.getLogger(__name__)

EMBEDDED_NAMES = ("smollm2-135m", "smollm2-135m-instruct")
TINY_NAME = "tiny"
BUILT_IN_NAMES = (*EMBEDDED_NAMES, TINY_NAME)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


class ModelUnavailableError(ConfigError):
    """`model.name` names a model that cannot be loaded here (not cached, offline, or no such folder)."""


def load_model(config: ModelConfig, *, device=None):
    """ModelConfig -> (model in eval mode, tokenizer); the model is a PeftModel when `lora_rank > 0`.

    device: None keeps the weights on the CPU; anything `torch.device` accepts moves them there.
    """
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # per-load bars would break up sdar's progress display
    dtype = DTYPES[config.dtype]
    if config.name in EMBEDDED_NAMES:
        model, tokenizer = _from_directory(
            embedded_model_dir(config.cache_dir), dtype, config.trust_remote_code
        )
    elif config.name == TINY_NAME:
        model, tokenizer = build_tiny_model(seed=0).to(dtype), build_tiny_tokenizer()
    elif is_random_name(config.name):  # random:<architecture>: published shapes, random weights
        model, tokenizer = build_random_model(config.name, dtype, cache_dir=config.cache_dir)
    else:
        model, tokenizer = _from_name(config.name, dtype, config.trust_remote_code)
    prepare_tokenizer(tokenizer, model)
    if config.chat_template_kwargs:
        fix_chat_template_variables(tokenizer, config.chat_template_kwargs)
    if device is not None:
        model = model.to(device)
    if config.gradient_checkpointing:
        enable_gradient_checkpointing(model, with_lora=config.lora_rank > 0)
    if config.lora_rank > 0:
        model = add_lora(model, config)
    return model, tokenizer


def _from_directory(directory: Path, dtype: torch.dtype, trust_remote_code: bool):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    options = dict(local_files_only=True, trust_remote_code=trust_remote_code)
    tokenizer = AutoTokenizer.from_pretrained(str(directory), **options)
    model = AutoModelForCausalLM.from_pretrained(str(directory), dtype=dtype, **options)
    return model.eval(), tokenizer


def _from_name(name: str, dtype: torch.dtype, trust_remote_code: bool):
    """A local folder, or a Hugging Face id: from the local cache, downloaded into it unless offline."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(name).expanduser()
    if path.is_dir():
        return _from_directory(path, dtype, trust_remote_code)
    if name.startswith(("/", "./", "../", "~")) or name.count("/") > 1:
        raise ModelUnavailableError(
            f"model.name={name!r} looks like a folder but no such folder exists; "
            f"give an existing model folder, or model.name=smollm2-135m for the embedded model"
        )
    offline = hub_offline()
    options = dict(local_files_only=offline, trust_remote_code=trust_remote_code)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, **options)
        model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype, **options)
    except OSError as error:  # transformers' way of saying the files could not be found or fetched
        if offline:
            raise ModelUnavailableError(
                f"model.name={name!r} is not in the local Hugging Face cache and downloads are off "
                f"(HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set): fetch it into the cache while online with "
                f"`hf download {name}`, or unset HF_HUB_OFFLINE to download it now, or use a model folder "
                f"(model.name=/path/to/model) or a built-in model: {', '.join(BUILT_IN_NAMES)}"
            ) from None
        reason = " ".join(str(error).split())[:400] or type(error).__name__  # one line, as the CLI prints it
        raise ModelUnavailableError(
            f"model.name={name!r} could not be loaded from the Hugging Face Hub: {reason} (check the id, the "
            f"network, and HF_TOKEN for a gated model)"
        ) from None
    return model.eval(), tokenizer


def hub_offline() -> bool:
    """True when Hugging Face downloads are off: HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE set now, or set when
    huggingface_hub was imported (it reads them once, then refuses every request)."""
    from huggingface_hub import constants

    flags = (os.environ.get(flag, "").lower() in ("1", "true", "yes", "on") for flag in _OFFLINE_FLAGS)
    return any(flags) or constants.is_offline_mode()


_OFFLINE_FLAGS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def fix_chat_template_variables(tokenizer, variables: dict) -> None:
    """Set template variables once for every `apply_chat_template` call: `{%- set name = value -%}` lines in
    front of the tokenizer's chat template (what `apply_chat_template(..., name=value)` passes per call)."""
    import json

    lines = []
    for name, value in variables.items():
        if not str(name).isidentifier():
            raise ValueError(f"model.chat_template_kwargs: {name!r} is not a template variable name")
        lines.append(f"{{%- set {name} = {json.dumps(value)} -%}}")
    tokenizer.chat_template = "".join(lines) + tokenizer.chat_template


def prepare_tokenizer(tokenizer, model) -> None:
    """Pad token (eos if absent), left padding, chat template (ChatML if absent); mirrored into generation.
    The tokenizer's length limit (`model_max_length`, past which transformers warns) becomes the model's
    positions, instead of whatever number the tokenizer was saved with (SmolLM2's: 1e30)."""
    positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if positions:
        tokenizer.model_max_length = positions
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelUnavailableError("the tokenizer has neither a pad nor an eos token; cannot batch")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    if not getattr(tokenizer, "chat_template", None):
        logger.warning("the tokenizer has no chat template; using ChatML (<|im_start|>role ... <|im_end|>)")
        tokenizer.chat_template = CHATML_TEMPLATE
    generation = getattr(model, "generation_config", None)
    if generation is not None:
        if generation.pad_token_id is None:
            generation.pad_token_id = tokenizer.pad_token_id
        if generation.eos_token_id is None:
            generation.eos_token_id = tokenizer.eos_token_id


def enable_gradient_checkpointing(model, *, with_lora: bool) -> None:
    """Non-reentrant activation checkpointing of every decoder layer, KV cache off while training.

    With frozen base weights (LoRA) the embedding output is made to require grad as well, which the
    reentrant checkpoint variant needs and the non-reentrant one tolerates.
    """
    options = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x name
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=options)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=options)
    model.config.use_cache = False  # generation passes use_cache=True explicitly (see sdar.models.chat)
    if with_lora:
        model.enable_input_require_grads()


def add_lora(model, config: ModelConfig):
    """Wrap in a peft LoRA model: only adapters train; `with model.disable_adapter():` runs the base model."""
    from peft import LoraConfig, get_peft_model

    targets = config.lora_target_modules.strip()
    if targets != "all-linear":
        targets = [name.strip() for name in targets.split(",") if name.strip()]
    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )
    try:
        with warnings.catch_warnings():  # peft 0.21 still reads transformers' deprecated checkpointing flag
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            return get_peft_model(model, lora)
    except ValueError as error:
        raise ConfigError(f"model.lora_target_modules={config.lora_target_modules!r}: {error}") from None
