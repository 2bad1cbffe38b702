"""The tiny in-process test model and its byte-level ChatML tokenizer."""

import time

import pytest
import torch

from sdar.config import ModelConfig
from sdar.models import build_tiny_model, build_tiny_tokenizer, generate_chat, load_model
from sdar.models.generation import HFBackend

TAGGED_TEXT = (
    "Go <think>the mug is on desk 1</think>\n<action>take mug 1 from desk 1</action> ~!@#$%^&*()\t{}|"
)


def test_tiny_loads_fast_and_offline():
    started = time.perf_counter()
    model, tokenizer = load_model(ModelConfig(name="tiny"))
    assert time.perf_counter() - started < 1.0
    assert 300_000 < sum(parameter.numel() for parameter in model.parameters()) < 1_000_000
    assert model.dtype == torch.float32
    assert tokenizer.padding_side == "left"
    assert tokenizer.pad_token == "<|endoftext|>" and tokenizer.eos_token == "<|im_end|>"
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    assert len(tokenizer) <= model.config.vocab_size


def test_tiny_weights_are_deterministic_in_the_seed_and_leave_the_global_rng_alone():
    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)
    first, second, other = build_tiny_model(seed=0), build_tiny_model(seed=0), build_tiny_model(seed=1)
    assert torch.equal(torch.rand(3), expected_draw)
    pairs = list(zip(first.parameters(), second.parameters(), strict=True))
    assert all(torch.equal(a, b) for a, b in pairs)
    assert not torch.equal(first.model.embed_tokens.weight, other.model.embed_tokens.weight)


def test_tiny_bf16_dtype():
    model, _ = load_model(ModelConfig(name="tiny", dtype="bf16"))
    assert model.dtype == torch.bfloat16


def test_tokenizer_round_trips_tagged_text_one_token_per_byte():
    tokenizer = build_tiny_tokenizer()
    ids = tokenizer(TAGGED_TEXT).input_ids
    assert len(ids) == len(TAGGED_TEXT.encode())
    assert tokenizer.decode(ids) == TAGGED_TEXT
    unicode_text = "café – 日本"
    assert tokenizer.decode(tokenizer(unicode_text).input_ids) == unicode_text


def test_chat_template_is_chatml_and_round_trips():
    tokenizer = build_tiny_tokenizer()
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": TAGGED_TEXT}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == (
        f"<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\n{TAGGED_TEXT}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"]
    start, end = tokenizer.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
    assert ids.count(start) == 3 and ids.count(end) == 2  # specials are single tokens, not spelled out
    assert tokenizer.decode(ids) == text


def test_batches_are_left_padded():
    tokenizer = build_tiny_tokenizer()
    batch = tokenizer(["a", "abc"], padding=True, return_tensors="pt")
    assert batch.attention_mask.tolist() == [[0, 0, 1], [1, 1, 1]]
    assert batch.input_ids[0, :2].tolist() == [tokenizer.pad_token_id] * 2


@pytest.mark.parametrize("lora_rank", [0, 4])
def test_generate_chat_is_greedy_and_deterministic(lora_rank):
    model, tokenizer = load_model(ModelConfig(name="tiny", lora_rank=lora_rank))
    model.train()
    backend = HFBackend(model, tokenizer)
    first = generate_chat(backend, tokenizer, "hello", max_new_tokens=8)
    second = generate_chat(backend, tokenizer, [{"role": "user", "content": "hello"}], max_new_tokens=8)
    assert isinstance(first, str) and first == second
    assert model.training  # the caller's mode is restored
    messages = [{"role": "user", "content": "hello"}]
    prompt = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():  # greedy = transformers' own greedy decoding
        reference = model.generate(**prompt, max_new_tokens=8, do_sample=False, pad_token_id=0)
    expected = tokenizer.decode(reference[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True)
    assert first == expected.strip()
    sampled = generate_chat(backend, tokenizer, "hello", max_new_tokens=8, temperature=1.0)
    assert isinstance(sampled, str)
