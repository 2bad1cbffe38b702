"""The CUDA paths: bf16 weights and autocast, seeded sampling, scoring, and training and resuming on a GPU.

Skipped without a CUDA device (CI has none). On a GPU machine: `pytest tests/test_gpu.py`; the training
cases also need the Search-QA data ($SEARCHQA_DATA, or ../shared/data/searchqa beside the checkout) and bm25s.
"""

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sdar.config import ModelConfig, load_config
from sdar.models import load_model, token_logprobs
from sdar.models.generation import HFBackend
from sdar.records import Batch, pack_sequences
from sdar.training import checkpoint
from sdar.training.trainer import Trainer
from sdar.training.update import bf16_autocast, score_batch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
# trainer.deterministic sets it too, but cuBLAS reads it once, at the first matrix product of the process.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

SEARCHQA = Path(
    os.environ.get("SEARCHQA_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data" / "searchqa"
)


def random_batch(count=6, vocab=200, seed=3) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    lengths = [(40, 12), (6, 3), (9, 2), (31, 9), (5, 1), (12, 7)][:count]
    prompts = [torch.randint(1, vocab, (p,), generator=generator).tolist() for p, _ in lengths]
    responses = [torch.randint(1, vocab, (r,), generator=generator).tolist() for _, r in lengths]
    input_ids, attention_mask, response_mask, start = pack_sequences(prompts, responses, 0)
    zeros = torch.zeros(count, dtype=torch.long)
    return Batch(input_ids, attention_mask, response_mask, start, torch.zeros(count), zeros, zeros, zeros)


def test_bf16_lora_model_loads_onto_the_gpu():
    model, _ = load_model(ModelConfig(name="tiny", dtype="bf16", lora_rank=4), device="cuda")
    devices = {parameter.device.type for parameter in model.parameters()}
    frozen = {p.dtype for p in model.parameters() if not p.requires_grad}
    assert devices == {"cuda"} and frozen == {torch.bfloat16}
    assert any(p.requires_grad for p in model.parameters())


def test_seeded_sampling_on_the_gpu_repeats_and_reports_the_sampled_log_probs():
    model, tokenizer = load_model(ModelConfig(name="tiny"), device="cuda")
    backend = HFBackend(model, tokenizer, seed=0)
    prompts = [tokenizer("find a mug").input_ids, tokenizer("look around the room, please").input_ids]
    options = dict(max_new_tokens=12, temperature=1.0, top_p=1.0, seed=7)
    first, again = backend.generate(prompts, **options), backend.generate(prompts, **options)
    assert [g.token_ids for g in first] == [g.token_ids for g in again]
    for prompt, generation in zip(prompts, first, strict=True):
        ids = torch.tensor([prompt + generation.token_ids], device="cuda")
        with torch.no_grad():
            expected, _ = token_logprobs(model, ids, start=len(prompt))
        expected = expected[0, len(prompt) :].cpu()
        torch.testing.assert_close(torch.tensor(generation.logprobs), expected, atol=1e-4, rtol=0)


def test_gpu_scores_match_the_cpu_and_bf16_autocast_stays_close():
    cpu_model, _ = load_model(ModelConfig(name="tiny"))
    gpu_model, _ = load_model(ModelConfig(name="tiny"), device="cuda")
    batch = random_batch()
    on_cpu, _ = score_batch(cpu_model, batch, micro_batch_rows=2)
    on_gpu, _ = score_batch(gpu_model, batch, micro_batch_rows=2)
    assert on_gpu.device.type == "cpu"  # results come back like the batch
    torch.testing.assert_close(on_gpu, on_cpu, atol=1e-4, rtol=0)
    with bf16_autocast(True, "cuda"):
        in_bf16, _ = score_batch(gpu_model, batch, micro_batch_rows=2)
    assert in_bf16.dtype == torch.float32
    assert (in_bf16 - on_cpu).abs().max() < 0.05  # bf16 keeps ~3 significant digits of log-probs near -5


def search_qa_config(*overrides):
    if not (SEARCHQA / "questions").is_dir():
        pytest.skip(f"needs the Search-QA data at {SEARCHQA} (or $SEARCHQA_DATA)")
    pytest.importorskip("bm25s")
    pytest.importorskip("pyarrow")
    return load_config("search_qa_smoke", [f"env.data_dir={SEARCHQA}", *overrides])


BF16_LORA = ["model.dtype=bf16", "trainer.autocast_bf16=true", "model.lora_rank=4", "trainer.lr=1e-3"]


def train(config, run_dir, *, resume=False) -> list[dict]:
    trainer = Trainer(config, run_dir, resume=resume)
    try:
        assert {p.device.type for p in trainer.model.parameters()} == {"cuda"}
        return trainer.train()
    finally:
        trainer.close()


def test_sdar_trains_on_the_gpu_in_bf16(tmp_path):
    history = train(search_qa_config(*BF16_LORA), tmp_path / "run")
    assert [metrics["step"] for metrics in history] == [1, 2]
    for metrics in history:
        losses = [value for key, value in metrics.items() if key.startswith("loss/")]
        assert losses and all(torch.isfinite(torch.tensor(losses)))
        assert 0.0 < metrics["distill/gate_mean"] < 1.0
    weights = load_file(tmp_path / "run" / "checkpoints" / "step_000002" / checkpoint.WEIGHTS)
    assert weights and all(tensor.device.type == "cpu" for tensor in weights.values())
    moved = [name for name, tensor in weights.items() if "lora_B" in name and tensor.abs().sum() > 0]
    assert moved, "every LoRA B weight is still zero: the update did not reach the adapters"


class Killed(BaseException):
    """Stands for SIGKILL right after a checkpoint (a BaseException: `except Exception` misses it)."""


@pytest.fixture
def deterministic_kernels():
    """trainer.deterministic switches torch's deterministic algorithms on for the process: off again after."""
    yield
    torch.use_deterministic_algorithms(False)


def test_a_gpu_run_with_dropout_killed_and_resumed_equals_the_uninterrupted_run(
    tmp_path, monkeypatch, deterministic_kernels
):
    """Bit for bit, with trainer.deterministic. Dropout on the GPU draws from the CUDA generator, which
    checkpoints do not carry: the trainer seeds it per step, so the resumed run must draw the same masks.
    Without trainer.deterministic, runs differ slightly on a GPU (benchmarks/repeatability.py)."""
    overrides = ["model.lora_dropout=0.2", "trainer.save_every=1", "trainer.deterministic=true"]
    config = search_qa_config(*BF16_LORA, *overrides)
    uninterrupted, killed = tmp_path / "A", tmp_path / "B"
    train(config, uninterrupted)

    save = Trainer._save

    def save_then_die(self, step):
        save(self, step)
        if step == 1:
            raise Killed

    monkeypatch.setattr(Trainer, "_save", save_then_die)
    with pytest.raises(Killed):
        train(config, killed)
    monkeypatch.setattr(Trainer, "_save", save)
    train(config, killed, resume=True)

    final = Path("checkpoints") / "step_000002" / checkpoint.WEIGHTS
    weights_a, weights_b = load_file(uninterrupted / final), load_file(killed / final)
    assert weights_a.keys() == weights_b.keys()
    differing = [name for name in weights_a if not torch.equal(weights_a[name], weights_b[name])]
    assert differing == [], f"{len(differing)} tensors differ, e.g. {differing[0]}"
    samples = [
        [json.loads(line)["turns"][0]["tokens"] for line in (run / "samples.jsonl").read_text().splitlines()]
        for run in (uninterrupted, killed)
    ]
    assert samples[0] == samples[1]
