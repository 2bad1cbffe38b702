"""A prepared tokenizer's length limit is its model's positions: transformers' "Token indices sequence length
is longer than the specified maximum" warning comes exactly where the model cannot hold the text."""

import logging

import pytest

from sdar.models.loading import prepare_tokenizer
from sdar.models.tiny import build_tiny_model, build_tiny_tokenizer

TOO_LONG = "Token indices sequence length is longer than the specified maximum sequence length"


@pytest.fixture
def tokenizer_log():
    """The records transformers' tokenizer module logs (its library logger does not propagate to caplog)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("transformers.tokenization_utils_base")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def warns_too_long(tokenizer, text: str, records: list) -> bool:
    records.clear()
    tokenizer(text)
    return any(TOO_LONG in record.getMessage() for record in records)


@pytest.mark.parametrize("positions", [512, 16384])  # below and above the tiny tokenizer's own 8192
def test_the_too_long_warning_comes_exactly_past_the_models_positions(positions, tokenizer_log):
    tokenizer = build_tiny_tokenizer()
    prepare_tokenizer(tokenizer, build_tiny_model(max_positions=positions))
    assert tokenizer.model_max_length == positions
    assert len(tokenizer("a" * positions).input_ids) == positions  # one token per byte
    assert not warns_too_long(tokenizer, "a" * positions, tokenizer_log)
    assert warns_too_long(tokenizer, "a" * (positions + 1), tokenizer_log)
