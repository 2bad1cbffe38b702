"""LoRA on vLLM: merged weights (what `VLLMBackend` does) against a LoRA adapter loaded every step.

Two engines in one process, both bf16 on every core, the embedded SmolLM2-135M-Instruct with a LoRA r = 16 on
all linear layers (B drawn at random so the adapters matter):
- merged: `VLLMBackend.load_weights` sends W + scale·B·A for every layer (the engine runs the plain model);
- adapter: vLLM started with `enable_lora`, the adapter saved with `save_pretrained` and sampled with a new
  `LoRARequest` each step (the engine applies B·A at every token).
Per mode: the sync after an update, and tokens per second of the same 4 prompts x 64 sampled tokens
(`ignore_eos`, so both generate the same count), the modes alternating, median of --repeats.

    python benchmarks/vllm_lora_sync.py            # ~3 min on 2 cores
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from sdar.config import ModelConfig, VLLMConfig  # noqa: E402
from sdar.models import load_model  # noqa: E402
from sdar.models.vllm_backend import VLLMBackend  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=64)
    args = parser.parse_args()

    model, tokenizer = load_model(ModelConfig(name="smollm2-135m", lora_rank=16))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.01, generator=torch.Generator().manual_seed(len(name)))
    texts = [f"Describe a kitchen with {count} apples, then list five objects you see." for count in range(4)]
    prompts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True, return_dict=False
        )
        for text in texts
    ]
    options = VLLMConfig(dtype="bf16")
    clock = time.perf_counter()
    merged = VLLMBackend(model, tokenizer, options, max_model_len=2048)
    merged_start = time.perf_counter() - clock
    clock = time.perf_counter()
    adapter_engine, adapter_folder = adapter_engine_for(merged)
    adapter_start = time.perf_counter() - clock

    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt
    from vllm.lora.request import LoRARequest

    timings = {"merged": {"sync": [], "tok/s": []}, "adapter": {"sync": [], "tok/s": []}}
    requests = [TokensPrompt(prompt_token_ids=prompt) for prompt in prompts]
    try:
        for repeat in range(args.repeats):
            params = [
                SamplingParams(
                    temperature=1.0, max_tokens=args.new_tokens, logprobs=0, seed=row, ignore_eos=True
                )
                for row in range(len(prompts))
            ]
            clock = time.perf_counter()
            merged.load_weights(model)
            timings["merged"]["sync"].append(time.perf_counter() - clock)
            clock = time.perf_counter()
            merged.llm.generate(requests, params, use_tqdm=False)
            timings["merged"]["tok/s"].append(len(prompts) * args.new_tokens / (time.perf_counter() - clock))

            clock = time.perf_counter()
            model.save_pretrained(adapter_folder)  # the adapter of this step, under a new id
            lora = LoRARequest(f"step-{repeat}", repeat + 1, adapter_folder)
            timings["adapter"]["sync"].append(time.perf_counter() - clock)
            clock = time.perf_counter()
            adapter_engine.generate(requests, params, use_tqdm=False, lora_request=lora)
            timings["adapter"]["tok/s"].append(len(prompts) * args.new_tokens / (time.perf_counter() - clock))
    finally:
        merged.close()
        adapter_engine.llm_engine.engine_core.shutdown()

    starts = {"merged": merged_start, "adapter": adapter_start}
    print(
        f"SmolLM2-135M-Instruct, LoRA r=16 on all linear layers, bf16, "
        f"{len(prompts)} prompts x {args.new_tokens} tokens"
    )
    print(f"{'mode':<9}{'start s':>9}{'sync s':>8}{'tok/s':>8}   per repeat tok/s")
    for mode, values in timings.items():
        sync, speed = statistics.median(values["sync"]), statistics.median(values["tok/s"])
        runs = ", ".join(f"{value:.1f}" for value in values["tok/s"])
        print(f"{mode:<9}{starts[mode]:>9.1f}{sync:>8.2f}{speed:>8.1f}   {runs}")


def adapter_engine_for(merged: VLLMBackend):
    """A second engine on the base model's folder with LoRA enabled, bound to the same cores as the first."""
    from vllm import LLM

    from sdar.models.embedded import embedded_model_dir

    folder = tempfile.mkdtemp(prefix="sdar-adapter-")
    with merged._cpu_binding():
        engine = LLM(
            str(embedded_model_dir()),
            dtype="bfloat16",
            enforce_eager=True,
            seed=0,
            generation_config="vllm",
            max_model_len=2048,
            kv_cache_memory_bytes=2 << 30,
            enable_chunked_prefill=False,
            max_num_batched_tokens=8192,
            enable_lora=True,
            max_lora_rank=16,
            max_loras=1,
        )
    return engine, folder


if __name__ == "__main__":
    main()
