"""`merged_weights(model)`: the weights a model generates with, as a plain Hugging Face checkpoint would name
them: LoRA deltas merged into their base layers, adapters themselves left out. `save_model_folder(...)`: the
same model written as a Hugging Face folder, merged or as its PEFT adapter, with its tokenizer.

`merged_weights` is what a separate inference engine (vLLM) loads after every update. Merging is computed,
never done in place: `peft`'s `merge_adapter()` followed by `unmerge_adapter()` would leave the trained base
weights off by float rounding. `save_model_folder` is for a model that trains no further (an export), so it
merges in place with `peft`'s `merge_and_unload()`, which needs no second copy of the weights.
"""

from __future__ import annotations

from pathlib import Path

import torch

from sdar.models.sharding import full_tensor


def _peft_base(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _checkpoint_tensors(module: torch.nn.Module):
    """(name, tensor) of what `module.state_dict()` lists (parameters, tied ones under each name, and
    persistent buffers), read from the modules themselves: a sharded model's `state_dict()` would hand
    out its shards and shard again what `full_weights` gathered (sdar/models/sharding.py)."""
    for name, parameter in module.named_parameters(remove_duplicate=False):
        yield name, full_tensor(parameter)
    for owner_name, owner in module.named_modules(remove_duplicate=False):
        for buffer_name, buffer in owner.named_buffers(recurse=False):
            if buffer is not None and buffer_name not in owner._non_persistent_buffers_set:
                yield f"{owner_name}.{buffer_name}" if owner_name else buffer_name, buffer


def merged_weights(model, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """{checkpoint name: tensor} of `model` (a causal LM or a PeftModel of one), detached, on the CPU.

    Every tensor is its own copy, so tied weights (embeddings = LM head) appear under both names, as a
    checkpoint lists them. W' = W + ΔW for each LoRA layer, ΔW = scale · B A from its active adapters.
    """
    base = _peft_base(model)
    deltas = {}
    for name, module in base.named_modules():
        if hasattr(module, "get_delta_weight") and hasattr(module, "base_layer"):
            adapters = [a for a in module.active_adapters if a in getattr(module, "lora_A", {})]
            if adapters and not getattr(module, "disable_adapters", False):
                deltas[f"{name}.weight"] = sum(module.get_delta_weight(a) for a in adapters)
    weights = {}
    with torch.no_grad():
        for name, tensor in _checkpoint_tensors(base):
            if ".lora_" in name:
                continue
            name = name.replace(".base_layer.", ".")
            delta = deltas.pop(name, None)
            if delta is None:  # one copy, cast on the way (this runs after every update)
                weights[name] = tensor.detach().to("cpu", dtype=dtype or tensor.dtype, copy=True)
                continue
            merged = tensor.detach().to("cpu", copy=True)  # W + ΔW at W's precision, then cast
            merged += delta.detach().to(merged.device, merged.dtype)
            weights[name] = merged if dtype is None else merged.to(dtype)
    if deltas:
        raise RuntimeError(f"LoRA layers without a base weight to merge into: {sorted(deltas)[:3]}")
    return weights


def save_model_folder(model, tokenizer, folder: Path, *, adapter: bool = False) -> None:
    """Write what `AutoModelForCausalLM.from_pretrained(folder)` (with `adapter`, `PeftModel.from_pretrained(
    base, folder)`) and `AutoTokenizer.from_pretrained(folder)` read back: config, generation config, weights
    (safetensors) with LoRA merged in, W' = W + ΔW, or with `adapter=True` the LoRA adapter alone
    (adapter_config.json + adapter_model.safetensors); then the tokenizer with its chat template.

    A PeftModel is merged in place: the model must not be trained or sampled from afterwards.
    """
    folder = Path(folder)
    is_peft = hasattr(model, "merge_and_unload")
    if adapter and not is_peft:
        raise ValueError("adapter=True needs a model with LoRA adapters (a PeftModel); this one has none")
    if adapter:
        model.save_pretrained(folder)
    else:
        (model.merge_and_unload() if is_peft else model).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
