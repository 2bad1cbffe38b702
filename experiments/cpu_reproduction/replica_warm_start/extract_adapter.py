"""Recover the LoRA adapter of a merged warm start, so that the warm start can be kept small and rebuilt.

    python experiments/cpu_reproduction/replica_warm_start/extract_adapter.py WARM_START OUTPUT

WARM_START is a merged SFT directory that `sdar sft` wrote before it kept adapters (here: the replica warm
start, README.md). Its LoRA targets were changed by exactly scale * B @ A (rank 16), so each target
weight's difference from the base model is a rank-16 matrix up to float rounding: its truncated SVD gives
back A and B. OUTPUT is then an adapter folder for `sft.adapter` (PEFT's files plus the warm start's
sft_summary.json, which records the extraction's largest error in the merged weights it rebuilds).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from sdar.config import load_config
from sdar.models import load_model
from sdar.models.trained import WARM_START_SUMMARY as SUMMARY

HERE = Path(__file__).resolve().parent
CONFIG = HERE.parent / "config.yaml"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("warm_start", type=Path)
    parser.add_argument("output", type=Path)
    args = parser.parse_args()

    config = load_config(str(CONFIG))
    model_config = dataclasses.replace(config.model, lora_rank=config.sft.lora_rank)
    peft_model, _ = load_model(model_config)  # the base model with fresh LoRA layers of the SFT's shape
    base = {name: tensor.clone() for name, tensor in peft_model.base_model.model.state_dict().items()}
    merged = load_file(args.warm_start / "model.safetensors")
    largest_error = 0.0
    with torch.no_grad():
        for name, module in peft_model.named_modules():
            if not hasattr(module, "lora_A") or "default" not in module.lora_A:
                continue
            key = name.removeprefix("base_model.model.") + ".base_layer.weight"
            weight = key.replace(".base_layer", "")
            delta = merged[weight].double() - base[key].double()
            u, s, vh = torch.linalg.svd(delta, full_matrices=False)
            rank, scale = module.r["default"], module.scaling["default"]
            module.lora_B["default"].weight.copy_((u[:, :rank] * s[:rank] / scale).float())
            module.lora_A["default"].weight.copy_(vh[:rank].float())
            rebuilt = base[key] + module.lora_B["default"].weight @ module.lora_A["default"].weight * scale
            largest_error = max(largest_error, float((rebuilt - merged[weight]).abs().max()))
    args.output.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(args.output)
    summary = json.loads((args.warm_start / SUMMARY).read_text(encoding="utf-8"))
    summary["extracted"] = {
        "from": "merged weights minus base, truncated SVD (extract_adapter.py)",
        "largest_error": largest_error,  # in the rebuilt merged weights, before the merge's own rounding
    }
    (args.output / SUMMARY).write_text(json.dumps(summary, indent=2))
    print(f"adapter: {args.output}; largest error in the rebuilt weights {largest_error:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
