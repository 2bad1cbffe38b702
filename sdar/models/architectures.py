"""The published shapes of the models the paper presets name, and models of those shapes with random weights.

`ARCHITECTURES` holds the config.json values of Qwen2.5-0.5B/1.5B/3B/7B-Instruct, Qwen3-1.7B and
SmolLM2-135M-Instruct (hidden size, layers, heads, KV heads, head size, MLP size, vocabulary, positions, RoPE
base, RMSNorm epsilon, tied embeddings). Their parameter counts, built on the meta device, match the published
totals, rounded as published (tests/models/test_architectures.py): 0.49B, 1.54B, 3.09B, 7.62B, 1.72B
(2.03B untied), 135M.

`model.name=random:<architecture>[?option=value&...]` builds one of them with seeded random weights and a
local tokenizer, nothing downloaded. Options:
- `layers=N`: keep only N decoder layers (every other size stays the published one), so that a 7B-shaped
  model fits a laptop: memory and time of everything outside the layers (embeddings, LM head, logits over the
  full vocabulary) stay real, and what the layers cost scales with N.
- `seed=S` (default 0): the weights' seed; the same name always gives the same weights.
- `tokenizer=smollm2|tiny` (default smollm2): the embedded SmolLM2-135M-Instruct's BPE tokenizer (ChatML,
  49,152 tokens; its token counts per text are close to a real BPE tokenizer's, so prompts and replies have
  realistic lengths), or the in-process byte-level tiny tokenizer (no package needed; ~4x more tokens per
  text). Either is padded with placeholder entries `<|unused_N|>` up to the architecture's vocabulary, so
  every id the random model can sample decodes (the tokenizer has as many ids as the embedding has rows; a
  real Qwen tokenizer leaves a few hundred rows without a token).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass

import torch

from sdar.errors import ConfigError

RANDOM_PREFIX = "random:"
RANDOM_TOKENIZERS = ("smollm2", "tiny")


@dataclass(frozen=True)
class Architecture:
    """A decoder-only transformer's shapes (RMSNorm, rotary positions, gated SiLU MLP, grouped KV heads)."""

    name: str
    family: str  # the transformers model_type: qwen2 (q/k/v biases), qwen3 (per-head q/k norms), llama
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    max_positions: int
    rope_theta: float
    rms_norm_eps: float
    tie_word_embeddings: bool
    hf_id: str = ""
    published_parameters: float = 0.0  # the model card's total; 0 = not a published model

    @property
    def query_size(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_kv_heads * self.head_dim

    def with_layers(self, layers: int) -> Architecture:
        return dataclasses.replace(self, num_layers=layers)


FAMILIES = ("qwen2", "qwen3", "llama", "mistral")

ARCHITECTURES: dict[str, Architecture] = {
    arch.name: arch
    for arch in (
        Architecture(
            "qwen2.5-0.5b", "qwen2", 896, 24, 14, 2, 64, 4864, 151936, 32768, 1e6, 1e-6, True,
            "Qwen/Qwen2.5-0.5B-Instruct", 0.49e9,
        ),
        Architecture(
            "qwen2.5-1.5b", "qwen2", 1536, 28, 12, 2, 128, 8960, 151936, 32768, 1e6, 1e-6, True,
            "Qwen/Qwen2.5-1.5B-Instruct", 1.54e9,
        ),
        Architecture(
            "qwen2.5-3b", "qwen2", 2048, 36, 16, 2, 128, 11008, 151936, 32768, 1e6, 1e-6, True,
            "Qwen/Qwen2.5-3B-Instruct", 3.09e9,
        ),
        Architecture(
            "qwen2.5-7b", "qwen2", 3584, 28, 28, 4, 128, 18944, 152064, 32768, 1e6, 1e-6, False,
            "Qwen/Qwen2.5-7B-Instruct", 7.62e9,
        ),
        Architecture(
            "qwen3-1.7b", "qwen3", 2048, 28, 16, 8, 128, 6144, 151936, 40960, 1e6, 1e-6, True,
            "Qwen/Qwen3-1.7B", 1.72e9,
        ),
        Architecture(
            "smollm2-135m", "llama", 576, 30, 9, 3, 64, 1536, 49152, 8192, 1e5, 1e-5, True,
            "HuggingFaceTB/SmolLM2-135M-Instruct", 0.135e9,
        ),
    )
}  # fmt: skip


def get_architecture(name: str) -> Architecture:
    """A registry entry by its name (qwen2.5-3b) or Hugging Face id (Qwen/Qwen2.5-3B-Instruct)."""
    if name in ARCHITECTURES:
        return ARCHITECTURES[name]
    for arch in ARCHITECTURES.values():
        if arch.hf_id.lower() == name.lower():
            return arch
    close = difflib.get_close_matches(name, list(ARCHITECTURES), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"no architecture {name!r}{hint}; known: {', '.join(ARCHITECTURES)}")


def find_architecture(hf_id: str) -> Architecture | None:
    """The registry entry whose Hugging Face id is `hf_id` (any case), else None."""
    return next((arch for arch in ARCHITECTURES.values() if arch.hf_id.lower() == hf_id.lower()), None)


def hf_config(arch: Architecture, *, eos_token_id: int | None = None, pad_token_id: int | None = None):
    """The transformers config of `arch` (Qwen2Config, Qwen3Config or LlamaConfig); no bos, eos/pad given."""
    from transformers import AutoConfig

    options = dict(
        vocab_size=arch.vocab_size,
        hidden_size=arch.hidden_size,
        intermediate_size=arch.intermediate_size,
        num_hidden_layers=arch.num_layers,
        num_attention_heads=arch.num_heads,
        num_key_value_heads=arch.num_kv_heads,
        max_position_embeddings=arch.max_positions,
        rope_theta=arch.rope_theta,
        rms_norm_eps=arch.rms_norm_eps,
        tie_word_embeddings=arch.tie_word_embeddings,
        bos_token_id=None,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
    )
    if arch.family != "qwen2":  # Qwen2 derives the head size from hidden_size / num_heads
        options["head_dim"] = arch.head_dim
    return AutoConfig.for_model(arch.family, **options)


def architecture_from_config(config, name: str) -> Architecture:
    """An Architecture from a transformers config (a model folder's or the HF cache's config.json)."""
    family = getattr(config, "model_type", "")
    if family not in FAMILIES:
        raise ConfigError(
            f"{name}: model_type {family!r} is not a decoder sdar can size; supported: {', '.join(FAMILIES)}"
        )
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    parameters = getattr(config, "rope_parameters", None) or {}
    theta = parameters.get("rope_theta", getattr(config, "rope_theta", 10000.0))
    return Architecture(
        name=name,
        family=family,
        hidden_size=config.hidden_size,
        num_layers=config.num_hidden_layers,
        num_heads=heads,
        num_kv_heads=getattr(config, "num_key_value_heads", None) or heads,
        head_dim=head_dim,
        intermediate_size=config.intermediate_size,
        vocab_size=config.vocab_size,
        max_positions=config.max_position_embeddings,
        rope_theta=float(theta),
        rms_norm_eps=config.rms_norm_eps,
        tie_word_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
    )


def meta_model(arch: Architecture, dtype: torch.dtype = torch.bfloat16):
    """The causal LM of `arch` on the meta device: every parameter's shape and dtype, no memory."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(hf_config(arch), dtype=dtype)


# ------------------------------------------------------------------------------------ random-weight models


@dataclass(frozen=True)
class RandomModelSpec:
    """What `random:<architecture>?layers=N&seed=S&tokenizer=T` asks for."""

    architecture: Architecture
    seed: int = 0
    tokenizer: str = "smollm2"


def is_random_name(name: str) -> bool:
    return name.startswith(RANDOM_PREFIX)


def parse_random_name(name: str) -> RandomModelSpec:
    """`random:qwen2.5-7b?layers=2&seed=1&tokenizer=tiny` -> RandomModelSpec; bad parts raise ConfigError."""
    body = name.removeprefix(RANDOM_PREFIX)
    arch_name, _, query = body.partition("?")
    try:
        arch = get_architecture(arch_name)
    except ConfigError as error:
        raise ConfigError(f"model.name={name!r}: {error}") from None
    spec = RandomModelSpec(arch)
    for item in filter(None, query.split("&")):
        key, sep, value = item.partition("=")
        if key == "tokenizer" and sep and value in RANDOM_TOKENIZERS:
            spec = dataclasses.replace(spec, tokenizer=value)
        elif key in ("layers", "seed") and sep and value.isdigit() and (key == "seed" or int(value) >= 1):
            if key == "layers":
                spec = dataclasses.replace(spec, architecture=arch.with_layers(int(value)))
            else:
                spec = dataclasses.replace(spec, seed=int(value))
        else:
            raise ConfigError(
                f"model.name={name!r}: cannot read option {item!r}; options are layers=N (N >= 1), seed=S "
                f"(S >= 0) and tokenizer={'|'.join(RANDOM_TOKENIZERS)}, e.g. random:{arch.name}?layers=2"
            )
    return spec


def build_random_model(name: str, dtype: torch.dtype, *, cache_dir: str = ""):
    """`random:...` -> (causal LM with seeded random weights in `dtype`, eval mode; padded tokenizer)."""
    from transformers import AutoModelForCausalLM

    spec = parse_random_name(name)
    tokenizer = random_model_tokenizer(spec, cache_dir=cache_dir)
    config = hf_config(
        spec.architecture, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    # The global RNG stays untouched: a caller seeding its own run is not disturbed by building a model.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = None
    return model.eval(), tokenizer


def random_model_tokenizer(spec: RandomModelSpec, *, cache_dir: str = ""):
    """The spec's local tokenizer, padded to the architecture's vocabulary (see the module docstring)."""
    if spec.tokenizer == "tiny":
        from sdar.models.tiny import build_tiny_tokenizer

        tokenizer = build_tiny_tokenizer()
    else:
        from transformers import AutoTokenizer

        from sdar.models.embedded import embedded_model_dir

        tokenizer = AutoTokenizer.from_pretrained(str(embedded_model_dir(cache_dir)), local_files_only=True)
    return pad_vocabulary(tokenizer, spec.architecture.vocab_size)


def pad_vocabulary(tokenizer, size: int):
    """A copy of a fast tokenizer whose vocabulary also names every id below `size` it lacked (as
    `<|unused_N|>`, reachable by no merge: encoding is unchanged, and every such id decodes)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    if len(tokenizer) > size:
        raise ConfigError(
            f"the tokenizer has {len(tokenizer)} ids, more than the model's vocabulary of {size}; "
            "choose an architecture with a larger vocabulary"
        )
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    vocabulary = state["model"]["vocab"]
    taken = set(vocabulary.values()) | {token["id"] for token in state.get("added_tokens", [])}
    vocabulary.update({f"<|unused_{index}|>": index for index in range(size) if index not in taken})
    special = {key: value for key, value in tokenizer.special_tokens_map.items() if isinstance(value, str)}
    padded = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(state)),
        chat_template=tokenizer.chat_template,
        padding_side="left",
        clean_up_tokenization_spaces=False,
        model_max_length=tokenizer.model_max_length,
        **special,
    )
    return padded
