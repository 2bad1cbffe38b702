"""Fixtures of the model-layer tests: offline always, a fresh tiny model per test."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402

from sdar.config import ModelConfig  # noqa: E402
from sdar.models import load_model  # noqa: E402


@pytest.fixture
def tiny():
    """(model, tokenizer) of the tiny random-init test model, fp32, eval mode."""
    return load_model(ModelConfig(name="tiny"))


@pytest.fixture
def left_padded_batch(tiny):
    """A left-padded batch of three rows of different lengths: (input_ids [3, T], attention_mask [3, T])."""
    _, tokenizer = tiny
    texts = [
        "<|im_start|>user\nfind a mug<|im_end|>\n<|im_start|>assistant\n"
        "<think>look</think><action>go to desk 1</action>",
        "short row",
        "<|im_start|>assistant\n<action>take mug 1 from desk 1</action><|im_end|>",
    ]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    return batch.input_ids, batch.attention_mask
