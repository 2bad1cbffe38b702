"""token_logprobs: chunked, checkpointed log-probs and entropies equal the naive full log-softmax."""

import pytest
import torch

from sdar.config import ModelConfig
from sdar.models import load_model, position_ids_from_mask, prefix_cache, token_logprobs

TOLERANCE = 1e-5


def naive_logprobs(model, input_ids, attention_mask, temperature=1.0):
    """Reference: full [B, T, V] log-softmax, gathered; column 0 = 0 -> (logprobs [B, T], entropy [B, T])."""
    logits = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids_from_mask(attention_mask),
    ).logits.float()
    log_softmax = (logits[:, :-1] / temperature).log_softmax(-1)  # [B, T-1, V]
    logprobs = log_softmax.gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    entropy = -(log_softmax.exp() * log_softmax).sum(-1)
    zeros = logprobs.new_zeros(input_ids.shape[0], 1)
    return torch.cat([zeros, logprobs], 1), torch.cat([zeros, entropy], 1)


def scored_mask(attention_mask, start):
    """Positions token_logprobs fills in: real tokens after a real token, at t >= max(start, 1)."""
    real = attention_mask.bool()
    mask = torch.zeros_like(real)
    mask[:, 1:] = real[:, 1:] & real[:, :-1]
    mask[:, : max(start, 1)] = False
    return mask


def test_position_ids_skip_left_padding():
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert position_ids_from_mask(mask).tolist() == [[0, 0, 0, 1], [0, 1, 2, 3]]


@pytest.mark.parametrize("chunk_size", [1, 7, 4096])
@pytest.mark.parametrize("start", [0, 9, 40])
def test_values_equal_naive_with_left_padding(tiny, left_padded_batch, chunk_size, start):
    model, _ = tiny
    input_ids, attention_mask = left_padded_batch
    with torch.no_grad():
        expected_logprobs, expected_entropy = naive_logprobs(model, input_ids, attention_mask)
        logprobs, entropy = token_logprobs(
            model, input_ids, attention_mask, start=start, chunk_size=chunk_size, with_entropy=True
        )
    scored = scored_mask(attention_mask, start)
    assert logprobs.shape == entropy.shape == input_ids.shape
    assert scored.sum() > 0 and (logprobs[scored] < 0).all()
    torch.testing.assert_close(logprobs[scored], expected_logprobs[scored], atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(entropy[scored], expected_entropy[scored], atol=TOLERANCE, rtol=0)
    assert (logprobs[~scored] == 0).all() and (entropy[~scored] == 0).all()


def test_left_padding_does_not_change_a_row(tiny, left_padded_batch):
    model, _ = tiny
    input_ids, attention_mask = left_padded_batch
    row = 1  # the shortest row carries the most padding
    real = attention_mask[row].bool()
    with torch.no_grad():
        batched, _ = token_logprobs(model, input_ids, attention_mask)
        alone, _ = token_logprobs(model, input_ids[row : row + 1, real])
    torch.testing.assert_close(batched[row, real], alone[0], atol=TOLERANCE, rtol=0)


def test_temperature_scales_logits(tiny, left_padded_batch):
    model, _ = tiny
    input_ids, attention_mask = left_padded_batch
    with torch.no_grad():
        expected, _ = naive_logprobs(model, input_ids, attention_mask, temperature=0.5)
        logprobs, _ = token_logprobs(model, input_ids, attention_mask, temperature=0.5, chunk_size=16)
    scored = scored_mask(attention_mask, 0)
    torch.testing.assert_close(logprobs[scored], expected[scored], atol=TOLERANCE, rtol=0)


def test_start_past_the_end_and_no_entropy(tiny, left_padded_batch):
    model, _ = tiny
    input_ids, attention_mask = left_padded_batch
    logprobs, entropy = token_logprobs(model, input_ids, attention_mask, start=input_ids.shape[1])
    assert entropy is None and logprobs.shape == input_ids.shape and (logprobs == 0).all()


def loss_and_grads(model, logprobs, entropy, scored):
    # Weights make every position matter differently, so a misaligned gradient cannot pass.
    weights = torch.linspace(0.5, 1.5, scored.shape[1]).expand_as(scored) * scored
    loss = (logprobs * weights).sum() + 0.3 * (entropy * weights).sum()
    parameters = [parameter for parameter in model.parameters() if parameter.requires_grad]
    return torch.autograd.grad(loss, parameters)


def assert_grads_match_naive(model, input_ids, attention_mask, start, chunk_size):
    model.train()
    scored = scored_mask(attention_mask, start)
    logprobs, entropy = token_logprobs(
        model, input_ids, attention_mask, start=start, chunk_size=chunk_size, with_entropy=True
    )
    chunked = loss_and_grads(model, logprobs, entropy, scored)
    naive = loss_and_grads(model, *naive_logprobs(model, input_ids, attention_mask), scored)
    assert len(chunked) > 0
    for got, expected in zip(chunked, naive, strict=True):
        assert got.abs().max() > 0 or expected.abs().max() == 0
        assert_grads_close(got, expected)
    return chunked


def assert_grads_close(got, expected):
    # Gradients sum many fp32 terms in a different order (and thread count): tolerance scales with their size.
    scale = max(1.0, expected.abs().max().item())
    torch.testing.assert_close(got, expected, atol=TOLERANCE * scale, rtol=1e-4)


@pytest.mark.parametrize("chunk_size", [5, 4096])
def test_gradients_equal_naive(tiny, left_padded_batch, chunk_size):
    model, _ = tiny
    assert_grads_match_naive(model, *left_padded_batch, start=9, chunk_size=chunk_size)


def test_gradients_with_lora_and_gradient_checkpointing_equal_plain_lora(left_padded_batch):
    def lora_model(checkpointing):
        model, _ = load_model(ModelConfig(name="tiny", lora_rank=4, gradient_checkpointing=checkpointing))
        with torch.no_grad():  # identical adapters in both models, with nonzero B so they change outputs
            generator = torch.Generator().manual_seed(0)
            for name, parameter in model.named_parameters():
                if "lora_" in name:
                    parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator))
        return model

    plain = assert_grads_match_naive(lora_model(False), *left_padded_batch, start=9, chunk_size=6)
    checkpointed_model = lora_model(True)
    assert all(layer.gradient_checkpointing for layer in checkpointed_model.get_base_model().model.layers)
    checkpointed = assert_grads_match_naive(checkpointed_model, *left_padded_batch, start=9, chunk_size=6)
    for got, expected in zip(checkpointed, plain, strict=True):
        assert_grads_close(got, expected)


def test_full_fine_tune_with_gradient_checkpointing(left_padded_batch):
    model, _ = load_model(ModelConfig(name="tiny", gradient_checkpointing=True))
    assert model.config.use_cache is False
    assert_grads_match_naive(model, *left_padded_batch, start=0, chunk_size=32)


def test_prefix_cache_gives_the_same_logprobs_as_the_full_sequence(tiny):
    model, tokenizer = tiny
    prefix = tokenizer(
        "[Privileged Skill Information]\n1. look before acting\n\n", return_tensors="pt"
    ).input_ids
    rows = ["<|im_start|>user\nfind a mug<|im_end|>", "go to desk 1"]
    full = tokenizer([tokenizer.decode(prefix[0]) + row for row in rows], padding=True, return_tensors="pt")
    # Rows keep the last prefix token: its hidden state predicts each row's first token.
    last = tokenizer.decode(prefix[0, -1:])
    tails = tokenizer([last + row for row in rows], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected, _ = token_logprobs(model, full.input_ids, full.attention_mask)
        cache = prefix_cache(model, prefix[:, :-1])
        first, _ = token_logprobs(model, tails.input_ids, tails.attention_mask, past_key_values=cache)
        again, _ = token_logprobs(model, tails.input_ids, tails.attention_mask, past_key_values=cache)
    assert torch.equal(first, again)  # the caller's cache is not consumed
    prefix_length = prefix.shape[1] - 1
    for row in range(len(rows)):
        want = expected[row, full.attention_mask[row].bool()][prefix_length + 1 :]
        got = first[row, tails.attention_mask[row].bool()][1:]
        assert want.numel() == got.numel() > 0
        torch.testing.assert_close(got, want, atol=TOLERANCE, rtol=0)
