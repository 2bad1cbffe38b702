"""`make_backend(config, model, tokenizer)`: the generation backend `rollout.backend` names, for training,
evaluation and `sdar chat` alike. Each entry of BACKENDS builds one; the config's choices are its keys."""

from __future__ import annotations

from collections.abc import Callable

from sdar.config import Config
from sdar.models.generation import GenerationBackend, HFBackend


def _hf(config: Config, model, tokenizer, seed: int) -> GenerationBackend:
    return HFBackend(model, tokenizer, seed=seed)


def _vllm(config: Config, model, tokenizer, seed: int) -> GenerationBackend:
    from sdar.models.vllm_backend import VLLMBackend

    return VLLMBackend(
        model, tokenizer, config.rollout.vllm, max_model_len=engine_length(config, model), seed=seed
    )


BACKENDS: dict[str, Callable[[Config, object, object, int], GenerationBackend]] = {"hf": _hf, "vllm": _vllm}


def engine_length(config: Config, model) -> int:
    """Tokens an engine must hold per sequence: `rollout.vllm.max_model_len`, or prompt budget + reply
    length, capped at the model's positions (what the model was built for; vLLM refuses more)."""
    if config.rollout.vllm.max_model_len:
        return config.rollout.vllm.max_model_len
    wanted = config.rollout.max_prompt_tokens + config.rollout.max_new_tokens
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    positions = getattr(base.config, "max_position_embeddings", None)
    return min(wanted, positions) if positions else wanted


def make_backend(config: Config, model, tokenizer, *, seed: int | None = None) -> GenerationBackend:
    """The backend of `config.rollout.backend` sampling with `model`; seed: default `config.seed`."""
    return BACKENDS[config.rollout.backend](config, model, tokenizer, config.seed if seed is None else seed)
