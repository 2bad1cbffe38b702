"""Model layer: load a model + tokenizer (embedded SmolLM2, tiny test model, HF id, folder); token log-probs.

Usage:
    model, tokenizer = load_model(ModelConfig(name="smollm2-135m"))
    logprobs, entropy = token_logprobs(model, input_ids, attention_mask, start=prompt_length)
    reply = generate_chat(model, tokenizer, "What is the capital of France?")
"""

from sdar.models.chat import generate_chat
from sdar.models.embedded import EmbeddedModelMissingError, embedded_gguf_path, embedded_model_dir
from sdar.models.loading import ModelUnavailableError, load_model
from sdar.models.logprobs import backbone_and_head, position_ids_from_mask, prefix_cache, token_logprobs
from sdar.models.tiny import CHATML_TEMPLATE, build_tiny_model, build_tiny_tokenizer

__all__ = [
    "CHATML_TEMPLATE",
    "EmbeddedModelMissingError",
    "ModelUnavailableError",
    "backbone_and_head",
    "build_tiny_model",
    "build_tiny_tokenizer",
    "embedded_gguf_path",
    "embedded_model_dir",
    "generate_chat",
    "load_model",
    "position_ids_from_mask",
    "prefix_cache",
    "token_logprobs",
]
