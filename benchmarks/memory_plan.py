"""`sdar plan`'s estimate against a measured step, on the CPU, for models of the real shapes with few layers.

Each case is a paper preset with a `random:<architecture>?layers=N` model and a small batch (so that it runs
here in a minute or two); `sdar.training.memory_check.measure_step` runs its rollout, scoring and update
under torch's allocation profiler, and the table gives, per phase, the estimated and measured peak (every
tensor held) and the working set above what every phase holds (weights, gradients, AdamW moments, frozen
copies: compared term by term first). `--logits` and `--layers` measure the constants the estimate takes
from measurement (bytes per logit of a chunk; the no-grad layer working set with LoRA).

    python benchmarks/memory_plan.py                  # every case (~15-20 min on 2 cores)
    python benchmarks/memory_plan.py --case lora-7b   # one case
    python benchmarks/memory_plan.py --logits --layers
    python benchmarks/memory_plan.py --presets        # sdar plan of the paper presets, 1 and 8 x 80 GiB
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from sdar.config import load_config  # noqa: E402
from sdar.training.memory_check import measure_step  # noqa: E402
from sdar.training.plan import PHASES, make_plan  # noqa: E402

MIB = 2**20
SMALL = [
    "rollout.tasks_per_step=2",
    "rollout.group_size=2",
    "rollout.max_prompt_tokens=768",
    "rollout.max_new_tokens=128",
    "trainer.micro_batch_rows=2",
]
SDAR = "alfworld_qwen2.5-3b_sdar"  # bf16, bf16 autocast, checkpointing, full fine-tuning, KL 0.01
CASES = {
    "sdar-3b": (SDAR, ["model.name=random:qwen2.5-3b?layers=2&tokenizer=tiny"]),
    # six layers, four rows, no checkpointing: the layers' saved tensors, not the vocabulary, set the peak
    "activations-0.5b": (
        SDAR,
        [
            "model.name=random:qwen2.5-0.5b?layers=6&tokenizer=tiny",
            "model.gradient_checkpointing=false",
            "trainer.micro_batch_rows=4",
        ],
    ),
    "lora-7b": (
        SDAR,
        [
            "model.name=random:qwen2.5-7b?layers=1&tokenizer=tiny",
            "model.lora_rank=16",
            "rollout.tasks_per_step=1",
        ],
    ),
    "qwen3-ema-no-checkpointing": (
        "alfworld_qwen3-1.7b_sdar",
        [
            "model.name=random:qwen3-1.7b?layers=2&tokenizer=tiny",
            "model.gradient_checkpointing=false",
            "teacher.weights=ema",
            "algorithm.kl_coef=0",
        ],
    ),
    "alfworld_cpu-shape": (
        SDAR,
        [
            "model.name=random:smollm2-135m?layers=6&tokenizer=tiny",
            "model.dtype=fp32",
            "model.lora_rank=16",
            "model.gradient_checkpointing=false",
            "rollout.max_prompt_tokens=1536",
            "rollout.max_new_tokens=64",
            "trainer.micro_batch_rows=4",
        ],
    ),
    "fp32-autocast-0.5b": (
        SDAR,
        [
            "model.name=random:qwen2.5-0.5b?layers=4&tokenizer=tiny",
            "model.dtype=fp32",
            "model.gradient_checkpointing=false",
        ],
    ),
}


def run_case(name: str) -> float:
    """Print the case's comparison; returns the estimated / measured ratio of its peak."""
    preset, overrides = CASES[name]
    config = load_config(preset, [*SMALL, *overrides])
    started = time.perf_counter()
    measured = measure_step(config)
    seconds = time.perf_counter() - started
    plan = make_plan(config, gpus=1, gpu_memory_gib=1000)
    estimate = plan.estimate
    held_everywhere = [term for term in estimate.terms if set(term.phases) == set(PHASES)]
    print(f"\n### {name}: {preset} {' '.join(overrides)} (measured in {seconds:.0f} s)\n")
    print("| held in every phase | estimated MiB | measured MiB |")
    print("|---|---:|---:|")
    static_estimate = {term.name: min(term.phases.values()) for term in held_everywhere}
    names = {"teacher (ema)": "teacher", "teacher (base)": "teacher"}
    for term_name, value in static_estimate.items():
        label = names.get(term_name, term_name)
        if value or label in measured.static:
            print(f"| {term_name} | {value / MIB:.1f} | {measured.static.get(label, 0) / MIB:.1f} |")
    static = sum(static_estimate.values())
    print(
        "\n| phase | estimated peak MiB | measured peak MiB | ratio | estimated working | measured working |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for phase in measured.peaks:
        total, peak = estimate.total(phase), measured.peaks[phase]
        working = (total - static) / MIB, measured.working(phase) / MIB
        cells = [
            f"{total / MIB:.1f}",
            f"{peak / MIB:.1f}",
            f"{total / peak:.3f}",
            *(f"{w:.1f}" for w in working),
        ]
        print(f"| {phase} | {' | '.join(cells)} |")
    measured_peak = max(measured.peaks.values())
    estimated_peak = max(estimate.total(phase) for phase in measured.peaks)
    print(f"\npeak: estimated {estimated_peak / MIB:.1f} MiB, measured {measured_peak / MIB:.1f} MiB, "
          f"ratio {estimated_peak / measured_peak:.3f}")  # fmt: skip
    return estimated_peak / measured_peak


def measure_logits() -> None:
    """Bytes per logit of an LM-head chunk (sdar.training.plan: NO_GRAD_LOGIT_BYTES, BACKWARD_LOGIT_BYTES)."""
    from sdar.config import ModelConfig
    from sdar.models import load_model, token_logprobs

    print("\n### bytes per logit of a 512-token chunk (random:qwen2.5-0.5b?layers=1, bf16)\n")
    print("| pass | entropy | bytes per logit |")
    print("|---|---|---:|")
    model, _ = load_model(ModelConfig(name="random:qwen2.5-0.5b?layers=1&tokenizer=tiny", dtype="bf16"))
    model.requires_grad_(False)
    vocab = model.config.vocab_size
    ids = torch.randint(3, 250, (1, 520))
    for entropy in (False, True):
        with torch.no_grad():
            peak, _ = _profiled(token_logprobs, model, ids, start=8, with_entropy=entropy)
        print(f"| no grad | {entropy} | {peak / (512 * vocab):.2f} |")
        model.model.norm.weight.requires_grad_(True)
        logprobs, entropies = token_logprobs(model, ids, start=8, with_entropy=entropy)
        loss = logprobs.sum() + (entropies.sum() if entropy else 0)
        peak, _ = _profiled(loss.backward)
        model.model.norm.weight.requires_grad_(False)
        print(f"| backward | {entropy} | {peak / (512 * vocab):.2f} |")


def measure_layers() -> None:
    """No-grad working set per token of one decoder layer (plan_bytes.no_grad_layer_transient)."""
    from transformers import AutoModelForCausalLM

    from sdar.config import ModelConfig
    from sdar.models import token_logprobs
    from sdar.models.architectures import ARCHITECTURES, hf_config
    from sdar.models.loading import add_lora
    from sdar.training.plan_bytes import no_grad_layer_transient

    # Qwen2.5-0.5B's layers with a 512-token vocabulary, so that the layers, not the logits, set the peak.
    arch = dataclasses.replace(ARCHITECTURES["qwen2.5-0.5b"], vocab_size=512, num_layers=2)
    rows, length = 4, 1024
    print(f"\n### no-grad working set per token, {arch.name} layers, {rows} x {length} tokens\n")
    print("| weights | LoRA | autocast | estimated B/token | measured B/token |")
    print("|---|---|---|---:|---:|")
    for dtype, lora, autocast in [
        (torch.bfloat16, False, False), (torch.float32, False, False), (torch.bfloat16, False, True),
        (torch.bfloat16, True, False), (torch.float32, True, False), (torch.bfloat16, True, True),
    ]:  # fmt: skip
        model = AutoModelForCausalLM.from_config(hf_config(arch, eos_token_id=2, pad_token_id=0), dtype=dtype)
        model = add_lora(model, ModelConfig(lora_rank=16)) if lora else model
        model.requires_grad_(False)  # no autocast copies: only the layers' own tensors
        ids = torch.randint(3, 500, (rows, length))
        mask = torch.ones_like(ids)
        mask[1, :7] = 0
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            peak, _ = _profiled(token_logprobs, model.eval(), ids, mask, start=length - 8)
        weight = 2 if dtype == torch.bfloat16 else 4
        estimated = no_grad_layer_transient(arch, weight, autocast, length, lora) + length  # + the bool mask
        name = "bf16" if weight == 2 else "fp32"
        print(f"| {name} | {lora} | {autocast} | {estimated} | {peak / (rows * length):.0f} |")


def _profiled(function, *arguments, **options) -> tuple[int, int]:
    """(peak, final) bytes allocated above the start while `function` runs, from torch's profiler."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        function(*arguments, **options)
    events = [e for e in profiler.profiler.kineto_results.events() if e.name() == "[memory]"]
    held = peak = 0
    for event in sorted(events, key=lambda event: event.start_ns()):
        held += event.nbytes()
        peak = max(peak, held)
    return peak, held


def plan_presets(memory_gib: float = 80.0) -> None:
    """One row per paper preset and GPU count: the peak, its phase, and the smallest setting that fits."""
    from sdar.config import preset_names
    from sdar.training.plan import GIB

    print(f"\n| preset | GPUs | peak GiB | phase | fits {memory_gib:g} GiB | smallest setting that fits |")
    print("|---|---:|---:|---|---|---|")
    for preset in preset_names():
        if "_qwen" not in preset:
            continue
        for gpus in (1, 8):
            plan = make_plan(load_config(preset), gpus=gpus, gpu_memory_gib=memory_gib)
            estimate = plan.estimate
            advice = "none" if plan.recommendation is None else " ".join(plan.changes()) or "as configured"
            print(
                f"| {preset} | {gpus} | {estimate.peak / GIB:.1f} | {estimate.peak_phase} | "
                f"{'yes' if plan.fits else 'no'} | {advice} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", action="append", choices=sorted(CASES), help="run only these cases")
    parser.add_argument("--logits", action="store_true", help="measure the bytes per logit of a chunk")
    parser.add_argument("--layers", action="store_true", help="measure the no-grad layer working set")
    parser.add_argument(
        "--presets", action="store_true", help="sdar plan of every paper preset (no measuring)"
    )
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    if args.presets:
        plan_presets()
        return
    if args.logits or args.layers:
        if args.logits:
            measure_logits()
        if args.layers:
            measure_layers()
        return
    ratios = {name: run_case(name) for name in (args.case or CASES)}
    worst = max(ratios, key=lambda name: abs(ratios[name] - 1))
    print(f"\nlargest peak deviation: {worst}, estimated / measured = {ratios[worst]:.3f}")


if __name__ == "__main__":
    main()
