"""Loss aggregation: the ONE place where per-token values become a scalar.

Every loss in `sdar.algorithms` returns per-token values [B, T]; `aggregate` reduces them. Gradient
accumulation is exact when the caller passes the normaliser of the whole mini-batch (`num_tokens`,
`num_rows`, from `count_tokens_and_rows` on the mini-batch's `response_mask`): then the sum of the
micro-batch losses equals the mini-batch loss, value and gradient.

Modes (docs/method.md §3):
- "token-mean":           Σ_{b,t} m·x / N_tokens                     (every token of the mini-batch alike)
- "micro-batch-mean":     Σ_{b,t} m·x / (M · N_tokens(μ(b)))         (the release: the mean over the M
                                                                      micro-batches of each one's token-mean)
- "seq-mean-token-mean":  Σ_b [Σ_t m·x / Σ_t m] / N_rows
- "constant":             Σ_{b,t} m·x / (C · N_rows)                 (Dr. GRPO: C = a fixed length, e.g. 512)

"token-mean" and "micro-batch-mean" agree when the mini-batch is one micro-batch, or its micro-batches hold
equally many tokens; otherwise "micro-batch-mean" weighs a token of a micro-batch with fewer tokens more, so
the loss depends on how the rows are cut into micro-batches. μ(b) is row b's micro-batch: its normaliser
M · N_tokens(μ(b)) comes per row (`micro_batch_mean_normalisers`), a [B] tensor passed as `num_tokens`.

A "row" counts when it has at least one valid token; rows without any (padding rows) count in no mode.
"""

from __future__ import annotations

import torch
from torch import Tensor

AGGREGATIONS = ("token-mean", "micro-batch-mean", "seq-mean-token-mean", "constant")

Normaliser = int | float | Tensor


def masked_token_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean over valid tokens: Σ x·m / max(Σ m, 1); masked positions may hold anything (even NaN)."""
    mask = mask.bool()
    total = torch.where(mask, values, torch.zeros_like(values)).sum()
    return total / mask.sum().clamp(min=1)


def masked_token_std(values: Tensor, mask: Tensor) -> Tensor:
    """Population std over valid tokens: sqrt(masked_mean((x − masked_mean(x))²)); 0 for no tokens."""
    mean = masked_token_mean(values, mask)
    return masked_token_mean((values - mean) ** 2, mask).sqrt()


def count_tokens_and_rows(response_mask: Tensor) -> tuple[Tensor, Tensor]:
    """(number of valid tokens, number of rows with ≥ 1 valid token): the global normalisers of a batch."""
    response_mask = response_mask.bool()
    return response_mask.sum(), response_mask.any(dim=-1).sum()


def micro_batch_mean_normalisers(
    response_mask: Tensor, micro_batch_rows: int, num_micro_batches: int
) -> Tensor:
    """Per-row normalisers [R] of "micro-batch-mean": M · (valid tokens of the row's micro-batch, at least 1).

    response_mask [R, T]: the rows of a mini-batch in the order they are cut into micro-batches of
    `micro_batch_rows` consecutive rows; M = `num_micro_batches`, the count the mean is over (under data
    parallelism, every process's micro-batches of the mini-batch). A micro-batch without valid tokens adds 0.
    """
    if micro_batch_rows < 1 or num_micro_batches < 1:
        raise ValueError(
            f"micro_batch_rows={micro_batch_rows} and num_micro_batches={num_micro_batches} must be ≥ 1"
        )
    tokens_per_row = response_mask.bool().sum(dim=-1)  # [R]
    micro_batch_of_row = torch.arange(len(tokens_per_row)) // micro_batch_rows  # [R]
    local_micro_batches = -(-len(tokens_per_row) // micro_batch_rows)  # ceil(R / micro_batch_rows)
    tokens_per_micro_batch = tokens_per_row.new_zeros(local_micro_batches).index_add(
        0, micro_batch_of_row, tokens_per_row
    )  # [local micro-batches]
    return num_micro_batches * tokens_per_micro_batch[micro_batch_of_row].clamp(min=1)


def aggregate(
    per_token: Tensor,
    mask: Tensor,
    mode: str = "token-mean",
    *,
    num_tokens: Normaliser | None = None,
    num_rows: Normaliser | None = None,
    constant: float | None = None,
) -> Tensor:
    """Reduce per-token values [B, T] under `mask` [B, T] to a scalar (see the module docstring).

    `num_tokens` / `num_rows` replace the micro-batch's own counts (pass the mini-batch totals when
    accumulating gradients); left None, the micro-batch's counts are used (clamped to ≥ 1). In
    "micro-batch-mean", `num_tokens` may be a [B] tensor: each row's own normaliser.
    """
    if per_token.shape != mask.shape:
        raise ValueError(f"per_token {tuple(per_token.shape)} and mask {tuple(mask.shape)} must match")
    mask = mask.bool()
    masked = torch.where(mask, per_token, torch.zeros_like(per_token))  # [B, T]
    if mode in ("token-mean", "micro-batch-mean"):
        denominator = mask.sum().clamp(min=1) if num_tokens is None else num_tokens
        if mode == "micro-batch-mean" and isinstance(denominator, Tensor) and denominator.dim() == 1:
            return (masked.sum(dim=-1) / denominator).sum()  # [B] row sums, each over its own normaliser
        return masked.sum() / denominator
    if num_rows is None:
        num_rows = mask.any(dim=-1).sum().clamp(min=1)
    if mode == "seq-mean-token-mean":
        row_means = masked.sum(dim=-1) / mask.sum(dim=-1).clamp(min=1)  # [B]; 0 for rows without tokens
        return row_means.sum() / num_rows
    if mode == "constant":
        if constant is None or constant <= 0:
            raise ValueError(f"aggregation 'constant' needs a positive constant, got {constant!r}")
        return masked.sum() / (constant * num_rows)
    raise ValueError(f"unknown aggregation mode {mode!r}; choose one of: {', '.join(AGGREGATIONS)}")
