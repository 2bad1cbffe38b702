"""Aggregation modes: hand cases, and micro-batching with global normalisers equals the full batch."""

import pytest
import torch

from sdar.algorithms import aggregate, count_tokens_and_rows, masked_token_mean, masked_token_std
from sdar.algorithms.aggregation import micro_batch_mean_normalisers

VALUES = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]], dtype=torch.float64)
MASK = torch.tensor([[True, True, False], [True, False, False], [False, False, False]])


def test_masked_token_mean_and_std():
    assert masked_token_mean(VALUES, MASK).item() == pytest.approx(7 / 3)  # (1 + 2 + 4) / 3
    # population std of [1, 2, 4]: mean 7/3, var (16 + 1 + 25)/27 = 14/9
    assert masked_token_std(VALUES, MASK).item() == pytest.approx((14 / 9) ** 0.5)
    assert masked_token_mean(VALUES, torch.zeros_like(MASK)).item() == 0.0
    with_nan = VALUES.clone()
    with_nan[0, 2] = float("nan")
    assert masked_token_mean(with_nan, MASK).item() == pytest.approx(7 / 3)


def test_modes_hand_cases():
    assert aggregate(VALUES, MASK, "token-mean").item() == pytest.approx(7 / 3)
    # row means 1.5 and 4; the third row has no valid token and does not count
    assert aggregate(VALUES, MASK, "seq-mean-token-mean").item() == pytest.approx(2.75)
    # Σ = 7 over C · rows = 2 · 2
    assert aggregate(VALUES, MASK, "constant", constant=2.0).item() == pytest.approx(1.75)
    assert aggregate(VALUES, MASK, "token-mean", num_tokens=7).item() == pytest.approx(1.0)
    assert aggregate(VALUES, MASK, "seq-mean-token-mean", num_rows=11).item() == pytest.approx(5.5 / 11)


def test_count_tokens_and_rows():
    tokens, rows = count_tokens_and_rows(MASK)
    assert (tokens.item(), rows.item()) == (3, 2)


def test_mode_errors():
    with pytest.raises(ValueError, match="constant"):
        aggregate(VALUES, MASK, "constant")
    with pytest.raises(ValueError, match="token-mean, micro-batch-mean, seq-mean-token-mean, constant"):
        aggregate(VALUES, MASK, "sum")
    with pytest.raises(ValueError, match="match"):
        aggregate(VALUES, MASK[:, :2], "token-mean")


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean", "constant"])
def test_micro_batches_with_global_normalisers_equal_the_full_batch(mode):
    generator = torch.Generator().manual_seed(0)
    values = torch.randn(6, 5, generator=generator, dtype=torch.float64).requires_grad_(True)
    lengths = torch.tensor([5, 1, 3, 0, 2, 4])  # unequal rows, one empty
    mask = torch.arange(5)[None, :] < lengths[:, None]
    num_tokens, num_rows = count_tokens_and_rows(mask)

    full = aggregate(values, mask, mode, constant=4.0)
    (full_grad,) = torch.autograd.grad(full, values)

    micro_total = sum(
        aggregate(values[rows], mask[rows], mode, num_tokens=num_tokens, num_rows=num_rows, constant=4.0)
        for rows in (slice(0, 2), slice(2, 3), slice(3, 6))
    )
    (micro_grad,) = torch.autograd.grad(micro_total, values)
    torch.testing.assert_close(micro_total, full)
    torch.testing.assert_close(micro_grad, full_grad)

    # without the global normalisers the sum of micro-batch means is NOT the full-batch mean
    local_total = sum(
        aggregate(values[rows], mask[rows], mode, constant=4.0) for rows in (slice(0, 2), slice(2, 6))
    )
    assert not torch.allclose(local_total, full)


# Two micro-batches of two rows: A = rows 0, 1 holds 4 tokens (1, 2, 3 | 5), B = rows 2, 3 holds 2 (10 | 20).
TWO_MICRO_VALUES = torch.tensor(
    [[1.0, 2.0, 3.0], [5.0, 99.0, 99.0], [10.0, 99.0, 99.0], [20.0, 99.0, 99.0]], dtype=torch.float64
)
TWO_MICRO_MASK = torch.tensor(
    [[True, True, True], [True, False, False], [True, False, False], [True, False, False]]
)


def test_micro_batch_mean_is_the_mean_of_the_micro_batch_token_means():
    # A's token-mean 11/4 = 2.75, B's 30/2 = 15: their mean 8.875; the token-mean of all six is 41/6.
    normalisers = micro_batch_mean_normalisers(TWO_MICRO_MASK, micro_batch_rows=2, num_micro_batches=2)
    assert normalisers.tolist() == [8, 8, 4, 4]  # M · tokens of the row's micro-batch: 2 · 4, 2 · 2
    total = sum(
        aggregate(
            TWO_MICRO_VALUES[rows], TWO_MICRO_MASK[rows], "micro-batch-mean", num_tokens=normalisers[rows]
        )
        for rows in (slice(0, 2), slice(2, 4))
    )
    assert total.item() == pytest.approx(8.875)
    # the same over the whole mini-batch at once, rows cut apart otherwise, or one row at a time
    whole = aggregate(TWO_MICRO_VALUES, TWO_MICRO_MASK, "micro-batch-mean", num_tokens=normalisers)
    assert whole.item() == pytest.approx(8.875)
    assert aggregate(TWO_MICRO_VALUES, TWO_MICRO_MASK, "token-mean").item() == pytest.approx(41 / 6)
    # alone (no normaliser given), a micro-batch is its own token-mean
    assert aggregate(TWO_MICRO_VALUES[:2], TWO_MICRO_MASK[:2], "micro-batch-mean").item() == 2.75


def test_micro_batch_mean_normalisers_count_every_process_micro_batches_and_empty_ones():
    # 3 local rows in micro-batches of 2: [4 tokens], [0 tokens]; M = 5 micro-batches over every process.
    mask = torch.tensor([[True, True, True], [True, False, False], [False, False, False]])
    assert micro_batch_mean_normalisers(mask, 2, 5).tolist() == [20, 20, 5]  # an empty one: M · 1, adds 0
    assert micro_batch_mean_normalisers(mask[:0], 2, 1).tolist() == []
    with pytest.raises(ValueError, match="micro_batch_rows=0"):
        micro_batch_mean_normalisers(mask, 0, 1)
