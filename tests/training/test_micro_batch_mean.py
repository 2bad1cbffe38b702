"""algorithm.loss_aggregation=micro-batch-mean: the release's mean over micro-batches of each one's
token-mean, through `policy_update`, against the release's loop written out on a 2-micro-batch mini-batch."""

import os
import socket

import torch
import torch.multiprocessing

import sdar.training.update as update_module
from sdar.algorithms.objective import policy_objective, settings_from_config
from sdar.config import TrainerConfig, load_config
from sdar.models import load_model, token_logprobs
from sdar.records import Batch, pack_sequences
from sdar.training.distributed import DataParallel
from sdar.training.update import Learner, micro_batch_mean_row_normalisers, policy_update, score_batch

# Four rows whose responses hold 5, 1, 2 and 6 tokens: micro-batches of 2 rows differ in token count.
LENGTHS = [(6, 5), (5, 1), (7, 2), (4, 6)]
SHUFFLE_SEED = 0


def setup(aggregation: str, advantages: list[float]):
    config = load_config(
        "smoke",
        ["algorithm.method=grpo", "algorithm.entropy_coef=0", "algorithm.kl_coef=0",
         f"algorithm.loss_aggregation={aggregation}"],
    )  # fmt: skip
    torch.manual_seed(0)
    model, _ = load_model(config.model)
    generator = torch.Generator().manual_seed(7)
    prompts = [torch.randint(1, 200, (p,), generator=generator).tolist() for p, _ in LENGTHS]
    responses = [torch.randint(1, 200, (r,), generator=generator).tolist() for _, r in LENGTHS]
    input_ids, attention_mask, response_mask, start = pack_sequences(prompts, responses, 0)
    zeros = torch.zeros(len(LENGTHS), dtype=torch.long)
    batch = Batch(
        input_ids, attention_mask, response_mask, start, torch.zeros(len(LENGTHS)), zeros, zeros, zeros
    )
    batch.old_logprobs, _ = score_batch(model, batch, micro_batch_rows=4)
    batch.old_logprobs -= 0.05 * batch.response_mask  # ratios away from 1
    batch.advantages = torch.tensor(advantages)
    return model, batch, settings_from_config(config.algorithm)


def update_gradient(aggregation: str, advantages: list[float]) -> dict[str, torch.Tensor]:
    """The gradient `policy_update` steps along: SGD with lr 1 and no clipping moves the weights by −grad."""
    model, batch, settings = setup(aggregation, advantages)
    before = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    policy_update(
        Learner(model, optimizer, scheduler), batch, objective=settings, step=0,
        trainer=TrainerConfig(mini_batch_rows=4, micro_batch_rows=2, grad_clip=0.0, ppo_epochs=1,
        max_bad_updates=3), generator=torch.Generator().manual_seed(SHUFFLE_SEED),
    )  # fmt: skip
    return {name: before[name] - p.detach() for name, p in model.named_parameters() if p.requires_grad}


def release_gradient(advantages: list[float]) -> dict[str, torch.Tensor]:
    """The release's loop: each micro-batch's token-mean loss over its own tokens, divided by the number of
    micro-batches, backward; the micro-batches cut from the shuffled rows as `policy_update` cuts them."""
    model, batch, settings = setup("token-mean", advantages)
    order = torch.randperm(len(batch), generator=torch.Generator().manual_seed(SHUFFLE_SEED))
    micro_batches = [order[:2], order[2:]]
    for rows in micro_batches:
        micro = batch.select(rows).compact()
        logprobs, _ = token_logprobs(model, micro.input_ids, micro.attention_mask, start=micro.response_start)
        loss, _ = policy_objective(
            logprobs[:, micro.response_start :], micro.old_logprobs, None, None, None, micro.advantages,
            micro.response_mask, settings=settings,
        )  # fmt: skip
        (loss / len(micro_batches)).backward()
    return {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def assert_same(gradient: dict, expected: dict) -> None:
    for name, value in expected.items():
        torch.testing.assert_close(gradient[name], value, atol=1e-6, rtol=1e-5)


def test_micro_batch_mean_update_is_the_release_mean_of_micro_batch_means():
    advantages = [1.0, -0.5, 0.7, -1.2]
    expected = release_gradient(advantages)
    assert_same(update_gradient("micro-batch-mean", advantages), expected)
    token_mean = update_gradient("token-mean", advantages)
    difference = max((token_mean[name] - value).abs().max().item() for name, value in expected.items())
    assert difference > 1e-3  # the two modes weigh the tokens differently on this mini-batch


def test_micro_batch_mean_leaves_out_rows_without_gradient_exactly(monkeypatch):
    """Rows of advantage 0 get no pass, yet still count in their micro-batch's tokens, as in the release."""
    advantages = [1.0, 0.0, -0.7, 0.0]
    expected = release_gradient(advantages)
    assert_same(update_gradient("micro-batch-mean", advantages), expected)
    calls = []
    original = update_module.rows_with_gradient
    monkeypatch.setattr(
        update_module, "rows_with_gradient", lambda *args: calls.append(original(*args)) or calls[-1]
    )
    update_gradient("micro-batch-mean", advantages)
    assert calls[0].tolist() == [True, False, True, False]  # the shortcut was taken


class OtherProcessAdds(DataParallel):
    """One process's view of `sum` where another process holds `extra` of each summed value."""

    def __init__(self, extra: float):
        super().__init__()
        object.__setattr__(self, "extra", extra)

    def sum(self, values: list[float]) -> list[float]:
        return [value + self.extra for value in values]


def test_micro_batch_mean_counts_the_micro_batches_of_every_process():
    # This process: 3 rows in micro-batches of 2 (5 + 1 tokens, then 2 tokens); another process: 1 more.
    mask = torch.arange(6)[None, :] < torch.tensor([5, 1, 2])[:, None]
    assert micro_batch_mean_row_normalisers(mask, 2, DataParallel()).tolist() == [12, 12, 4]  # M = 2
    assert micro_batch_mean_row_normalisers(mask, 2, OtherProcessAdds(1)).tolist() == [18, 18, 6]  # M = 3


def two_process_normalisers(rank: int, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    try:
        lengths = [[5, 1, 2], [3]][rank]  # 2 micro-batches of rows 2 here, 1 on the other process
        mask = torch.arange(6)[None, :] < torch.tensor(lengths)[:, None]
        results[rank] = micro_batch_mean_row_normalisers(
            mask, 2, DataParallel(rank=rank, world_size=2)
        ).tolist()
    finally:
        torch.distributed.destroy_process_group()


def test_micro_batch_mean_normalisers_over_two_gloo_processes():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    results = torch.multiprocessing.Manager().dict()
    torch.multiprocessing.spawn(two_process_normalisers, args=(port, results), nprocs=2)
    assert dict(results) == {0: [18, 18, 6], 1: [9]}  # M = 3 micro-batches: 6, 2 and 3 tokens
