"""The shapes a memory estimate needs of `model.name`, read without loading any weight.

`resolve_architecture` finds the architecture: `random:<arch>`, the embedded SmolLM2, the tiny test model, a
model folder's config.json, the Hugging Face cache's config.json, or the registry of published shapes (in
that order, so a cached config wins over the registry). `model_shape` builds the model on the meta device,
with peft's LoRA adapters when the config asks for them, and counts the bytes of its parameters by role.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from sdar.config import ModelConfig
from sdar.errors import ConfigError
from sdar.models.architectures import (
    ARCHITECTURES,
    Architecture,
    architecture_from_config,
    find_architecture,
    is_random_name,
    meta_model,
    parse_random_name,
)


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs of a model: its architecture and the bytes of its parameters by role."""

    architecture: Architecture
    source: str  # where the shapes came from
    parameters: int  # count, adapters included
    parameter_bytes: int
    trainable: int
    trainable_bytes: int
    layer_bytes: int  # the largest decoder layer (FSDP gathers one at a time)
    root_bytes: int  # everything outside the decoder layers: embeddings, final norm, LM head
    layer_trainable_bytes: int = 0  # trainable bytes of that layer and of the root: FSDP's unsharded
    root_trainable_bytes: int = 0  # gradients before their reduce-scatter
    lora_rank: int = 0
    lora_inputs: int = 0  # sum of in_features of one decoder layer's LoRA-wrapped linears
    lora_modules: int = 0  # how many linears of one decoder layer LoRA wraps
    head_bytes: int = 0  # the LM head's weight
    head_trainable_bytes: int = 0  # the LM head's weight when it trains (full fine-tuning), else 0
    trainable_linear_bytes: int = 0  # trainable weights of linear layers (LM head included): what autocast
    # keeps a bf16 copy of while it runs
    layer_linear_bytes: int = 0  # every linear weight of the decoder layers (adapters included)


def resolve_architecture(name: str) -> tuple[Architecture, str]:
    """model.name -> (its architecture, where it was read): random:<arch>, a built-in model, a model folder,
    the Hugging Face cache, or the registry of published shapes."""
    from sdar.models.loading import EMBEDDED_NAMES, TINY_NAME

    if is_random_name(name):
        return parse_random_name(name).architecture, "the registry of published shapes"
    if name in EMBEDDED_NAMES:
        return ARCHITECTURES["smollm2-135m"], "the registry (the embedded SmolLM2-135M-Instruct)"
    if name == TINY_NAME:
        from sdar.models.tiny import build_tiny_model

        with torch.device("meta"):
            return architecture_from_config(build_tiny_model().config, name), "the tiny test model"
    folder = Path(name).expanduser()
    if (folder / "config.json").is_file():
        return _read_config(folder, name), f"{folder / 'config.json'}"
    cached = _cached_config(name)
    if cached is not None:
        return _read_config(cached.parent, name), f"{cached}"
    known = find_architecture(name)
    if known is not None:
        return known, "the registry of published shapes"
    raise ConfigError(
        f"model.name={name!r}: no config.json in a folder of that name or in the Hugging Face cache, and "
        f"not a known architecture; give a model folder, a cached model id, or random:<architecture> "
        f"({', '.join(ARCHITECTURES)})"
    )


def _read_config(folder: Path, name: str) -> Architecture:
    from transformers import AutoConfig

    return architecture_from_config(AutoConfig.from_pretrained(str(folder), local_files_only=True), name)


def _cached_config(name: str) -> Path | None:
    if name.count("/") != 1:
        return None
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(name, "config.json")
    return Path(found) if isinstance(found, str) else None


def model_shape(model_config: ModelConfig) -> ModelShape:
    """The config's model on the meta device (LoRA applied by peft when `lora_rank > 0`) -> ModelShape."""
    from peft.tuners.lora import LoraLayer

    from sdar.models.loading import DTYPES, add_lora

    arch, source = resolve_architecture(model_config.name)
    model = meta_model(arch, DTYPES[model_config.dtype])
    layers = list(model.model.layers)
    if model_config.lora_rank > 0:
        model = add_lora(model, model_config)

    def size(module, trainable_only: bool = False) -> int:
        return sum(
            parameter.numel() * parameter.element_size()
            for parameter in module.parameters()
            if parameter.requires_grad or not trainable_only
        )

    largest = max(layers, key=size)
    wrapped = [module for module in largest.modules() if isinstance(module, LoraLayer)]
    in_layers, trainable_in_layers = sum(map(size, layers)), sum(size(layer, True) for layer in layers)
    return ModelShape(
        architecture=arch,
        source=source,
        parameters=sum(parameter.numel() for parameter in model.parameters()),
        parameter_bytes=size(model),
        trainable=sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad),
        trainable_bytes=size(model, True),
        layer_bytes=size(largest),
        root_bytes=size(model) - in_layers,
        layer_trainable_bytes=size(largest, True),
        root_trainable_bytes=size(model, True) - trainable_in_layers,
        lora_rank=model_config.lora_rank,
        lora_inputs=sum(module.in_features for module in wrapped),
        lora_modules=len(wrapped),
        head_bytes=size(model.get_output_embeddings()),
        head_trainable_bytes=size(model.get_output_embeddings(), True),
        trainable_linear_bytes=sum(size(module, True) for module in linears(model)),
        layer_linear_bytes=sum(size(module) for layer in layers for module in linears(layer)),
    )


def linears(module: torch.nn.Module) -> list[torch.nn.Linear]:
    return [child for child in module.modules() if isinstance(child, torch.nn.Linear)]
