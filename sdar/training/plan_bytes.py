"""Bytes per element, token and decoder layer: the activation formulas of `sdar plan` (sdar/training/plan.py).

Each formula counts the tensors autograd saves or a pass keeps alive at once in the Hugging Face
Qwen2/Qwen3/Llama decoders with SDPA attention; docs/plan.md derives them and benchmarks/memory_plan.py
measures them against a real step on the CPU.
"""

from __future__ import annotations

from sdar.config import Config
from sdar.models.architectures import Architecture
from sdar.models.shapes import ModelShape

LOGITS_CHUNK = 512  # token_logprobs' chunk_size: scored tokens whose logits exist at once
# Bytes per logit of one chunk (sdar/models/logprobs.py), measured by benchmarks/memory_plan.py --logits:
# no grad = the LM head's output cast to fp32 (4) + logsumexp's shifted copy (4) (scoring never asks for the
# entropy, which adds the softmax and its product with the logits: 12); backward = the checkpointed chunk
# recomputed with grad (fp32 logits kept) and the gradients of logsumexp and gather (20, measured the same
# with the entropy).
NO_GRAD_LOGIT_BYTES = 8
BACKWARD_LOGIT_BYTES = 20


def weight_bytes(config: Config) -> int:
    """Bytes of a weight, and of the residual stream between layers: 2 (bf16) or 4 (fp32)."""
    return 2 if config.model.dtype == "bf16" else 4


def compute_bytes(weight: int, autocast: bool) -> int:
    """Bytes of a matmul output: bf16 under autocast, else the weights' own."""
    return 2 if autocast else weight


def saved_per_layer_token(shape: ModelShape, weight: int, autocast: bool, length: int) -> int:
    """Bytes one decoder layer saves for backward per token, rows padded (so SDPA gets a mask of `length`
    columns and grouped KV heads are repeated to the query heads), as autograd's saved-tensor hooks list them:
    - each RMSNorm's fp32 input (2 x 4h); trained norms also their normed output (2 x bh);
    - trained linears their inputs: the two normed outputs (2 x ch), or for fp32 weights under autocast one
      bf16 copy per q, k, v, gate and up projection (10h);
    - q, k, v after RoPE and the KV repeat, and the attention output (4cq), SDPA's fp32 log-sum-exp (4 x
      heads), the float mask (c x length); Qwen3's q/k RMSNorms (4 + c)(q + kv), (4)(q + kv) when frozen;
    - gate, SiLU and up outputs (3ci) and, for a trained down projection, the product (ci);
    - LoRA (frozen base): each wrapped linear's input cast for its fp32 adapters (4 per input feature; 2
      under autocast, which casts it back to bf16), and each adapter's rank-sized output; fp32 weights
      without autocast cast nothing, and the adapters save the inputs the model has anyway (8h + 4i)."""
    arch, compute = shape.architecture, compute_bytes(weight, autocast)
    h, q, i = arch.hidden_size, arch.query_size, arch.intermediate_size
    attention = 4 * compute * q + 4 * arch.num_heads + compute * length
    qk_norms = (q + arch.kv_size) if arch.family == "qwen3" else 0
    if shape.lora_rank == 0:
        inputs = 10 * h if autocast and weight == 4 else 2 * compute * h
        return 2 * (4 + weight) * h + inputs + attention + (4 + compute) * qk_norms + 4 * compute * i
    adapter = 2 if autocast else 4
    casts = weight == 2 or autocast  # fp32 weights without autocast: the adapters take the model's own inputs
    inputs = adapter * shape.lora_inputs if casts else 2 * 4 * h + 4 * i
    ranks = adapter * shape.lora_rank * shape.lora_modules
    return 2 * 4 * h + inputs + ranks + attention + 4 * qk_norms + 3 * compute * i


def no_grad_layer_transient(arch: Architecture, weight: int, autocast: bool, length: int, lora: bool) -> int:
    """Bytes per token alive inside one decoder layer without gradient (one layer at a time): four
    hidden-sized tensors (the embedding output the model keeps, the layer's input, the residual after
    attention, the normed input: 4bh), plus the larger of attention (q, repeated k and v, k and v before the
    repeat, output, float mask: 4cq + 2c kv + c x length) and the MLP: SiLU output, up and product (3ci).
    LoRA adds the adapter branch: peft casts a bf16 input to its fp32 adapters (4h), and the MLP holds the
    branch's output and sum besides, 16i without autocast and 4ci with it (benchmarks/memory_plan.py
    --layers measures all six combinations)."""
    compute = compute_bytes(weight, autocast)
    attention = 4 * compute * arch.query_size + 2 * compute * arch.kv_size + compute * length
    i, h = arch.intermediate_size, arch.hidden_size
    mlp = (4 * compute * i if autocast else 16 * i) if lora else 3 * compute * i
    cast = 4 * h if lora and weight == 2 else 0
    return 4 * weight * h + cast + max(attention, mlp)


def fp32_autocast(config: Config) -> bool:
    """fp32 weights under the trainer's bf16 autocast: every matmul casts its weight to bf16 (autocast keeps
    the copies of trainable weights until its region ends; autograd keeps every copy a backward needs)."""
    return weight_bytes(config) == 4 and config.trainer.autocast_bf16


def kv_bytes_per_token(arch: Architecture, element: int) -> int:
    """Keys and values of every layer for one token: layers x 2 x kv_heads x head_dim x bytes."""
    return arch.num_layers * 2 * arch.kv_size * element
