"""A tiny random-init causal LM with an in-process byte-level ChatML tokenizer, for offline tests.

Nothing is read from disk or the network; the same seed always gives the same weights. The tokenizer has one
token per byte (so any text, including `<think>`/`<action>` tags, round-trips exactly) plus the three ChatML
special tokens, and the chat template is ChatML without a default system prompt.
"""

from __future__ import annotations

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

# ChatML, as SmolLM2 and Qwen use it, without a default system message.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

PAD_TOKEN = "<|endoftext|>"
CHAT_START_TOKEN = "<|im_start|>"
CHAT_END_TOKEN = "<|im_end|>"  # end of a chat turn = end of generation, as in SmolLM2
SPECIAL_TOKENS = (PAD_TOKEN, CHAT_START_TOKEN, CHAT_END_TOKEN)  # ids 0, 1, 2
TINY_VOCAB_SIZE = 320  # 3 special + 256 byte tokens = 259, rounded up to a multiple of 64


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level tokenizer: ids 0-2 = ChatML specials, then the 256 byte symbols; left padding."""
    byte_symbols = sorted(pre_tokenizers.ByteLevel.alphabet())  # the 256 printable stand-ins for bytes
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    vocab.update({symbol: len(SPECIAL_TOKENS) + index for index, symbol in enumerate(byte_symbols)})
    # A BPE model without merges = exactly one token per byte.
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(
        [AddedToken(token, special=True, normalized=False) for token in SPECIAL_TOKENS]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=CHAT_END_TOKEN,
        pad_token=PAD_TOKEN,
        chat_template=CHATML_TEMPLATE,
        padding_side="left",
        clean_up_tokenization_spaces=False,
        model_max_length=8192,
    )


def build_tiny_model(
    seed: int = 0,
    *,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 384,
    max_positions: int = 8192,  # the smoke preset's byte-level prompts run to ~6k tokens
) -> Qwen2ForCausalLM:
    """Random-init Qwen2 decoder (~0.47 M parameters by default), deterministic in `seed`; fp32, eval mode."""
    config = Qwen2Config(
        vocab_size=TINY_VOCAB_SIZE,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=SPECIAL_TOKENS.index(CHAT_END_TOKEN),
        pad_token_id=SPECIAL_TOKENS.index(PAD_TOKEN),
    )
    # The global RNG stays untouched: callers seeding their own runs are not disturbed by building a model.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    model.generation_config.bos_token_id = None
    return model.eval()
