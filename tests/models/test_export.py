"""`sdar export`: trained runs (tiny model, LoRA and full fine-tuning) read back by plain transformers / peft
with the log-probs of the run's checkpoint; --step; the model card; every refusal leaves nothing written;
--push-to-hub checked by the calls it makes to a stand-in HfApi."""

import dataclasses
import json
import tempfile
from importlib import metadata
from pathlib import Path

import huggingface_hub
import pytest
import torch
from huggingface_hub import RepoUrl
from transformers import AutoModelForCausalLM, AutoTokenizer

from sdar.cli import main
from sdar.config import load_config, save_config
from sdar.models import build_tiny_model, embedded, load_model, token_logprobs
from sdar.models.trained import checkpoint_path, load_trainable_weights
from sdar.training import export as export_module
from sdar.training.checkpoint import save_checkpoint

CHEAP = [
    "trainer.save_every=1",
    "rollout.tasks_per_step=1",
    "rollout.group_size=2",
    "env.max_turns=1",
    "rollout.max_new_tokens=8",
]
# Merged LoRA is W + scale·B·A summed in another order than the unmerged forward: float32 rounding only,
# in nats per token; it grows with depth
MERGED_TOLERANCE = 1e-5  # the tiny model (2 layers): measured 4.8e-7 on this file's runs
SMOLLM2_MERGED_TOLERANCE = 1e-4  # SmolLM2-135M (30 layers), adapters of this file's test: measured 4.4e-5
MESSAGES = [
    {"role": "user", "content": "You are in the middle of a room. Your task is to: put a mug in the desk."},
    {"role": "assistant", "content": "<think>the mug is on the shelf</think><action>go to shelf 1</action>"},
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """{"lora": run of 2 steps (checkpoints 1 and 2, evaluations step_0 and final), "full": run of 1 step}."""
    pytest.importorskip("alfworld")
    root = tmp_path_factory.mktemp("runs")
    lora = [*CHEAP, "model.lora_rank=4", "trainer.steps=2", "eval.num_tasks=1"]
    full = [*CHEAP, "trainer.steps=1", "trainer.eval_at_ends=false"]
    for name, overrides in (("lora", lora), ("full", full)):
        assert main(["train", "smoke", "--output", str(root / name), *overrides]) == 0
    return {"lora": root / "lora", "full": root / "full"}


def sdar_way(run_dir, step):
    """The run's model with the checkpoint of `step`, loaded as `sdar eval --checkpoint` loads it."""
    model, tokenizer = load_model(load_config(str(run_dir / "config.yaml")).model)
    load_trainable_weights(checkpoint_path(run_dir, step), model)
    return model.eval(), tokenizer


def scored(model, tokenizer):
    """(token ids [1, T] of MESSAGES through the tokenizer's chat template, their log-probs [1, T])."""
    ids = tokenizer.apply_chat_template(MESSAGES, return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        return ids, token_logprobs(model, ids)[0]


def export(*arguments):
    return main(["export", *map(str, arguments)])


def current_umask():
    probe = Path(tempfile.mkdtemp()) / "probe"
    probe.write_text("")
    return 0o666 & ~probe.stat().st_mode & 0o777


def plain_transformers(folder):
    return AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


def test_a_merged_lora_export_loads_with_plain_transformers_and_scores_as_the_checkpoint(trained, tmp_path):
    assert export(trained["lora"], "--output", tmp_path / "merged") == 0
    model, tokenizer = plain_transformers(tmp_path / "merged")
    assert not any("lora_" in name for name in model.state_dict())
    ids, logprobs = scored(model, tokenizer)
    expected_ids, expected = scored(*sdar_way(trained["lora"], 2))  # the latest checkpoint
    assert torch.equal(ids, expected_ids)  # same tokenizer and chat template
    torch.testing.assert_close(logprobs, expected, atol=MERGED_TOLERANCE, rtol=0)
    _, untrained = scored(*load_model(load_config(str(trained["lora"] / "config.yaml")).model))
    assert (untrained - expected).abs().max() > 100 * MERGED_TOLERANCE  # training moved what is compared
    assert json.loads((tmp_path / "merged" / "config.json").read_text())["use_cache"] is True
    modes = {path.name: path.stat().st_mode & 0o777 for path in (tmp_path / "merged").iterdir()}
    assert set(modes.values()) == {0o666 & ~current_umask()}, modes  # as any file this process writes


def test_a_full_fine_tuning_export_scores_exactly_as_the_checkpoint(trained, tmp_path):
    assert export(trained["full"], "--output", tmp_path / "full") == 0
    _, logprobs = scored(*plain_transformers(tmp_path / "full"))
    _, expected = scored(*sdar_way(trained["full"], 1))
    assert torch.equal(logprobs, expected)  # the same weights, nothing merged


def test_an_adapter_export_loads_with_peft_on_the_base_model(trained, tmp_path):
    from peft import PeftModel

    assert export(trained["lora"], "--output", tmp_path / "adapter", "--adapter", "--step", 1) == 0
    folder = tmp_path / "adapter"
    assert (folder / "adapter_model.safetensors").is_file() and not (folder / "model.safetensors").exists()
    assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] == "tiny"
    model = PeftModel.from_pretrained(build_tiny_model(seed=0), folder).eval()  # `tiny` is built, not stored
    _, logprobs = scored(model, AutoTokenizer.from_pretrained(folder))
    _, expected = scored(*sdar_way(trained["lora"], 1))
    torch.testing.assert_close(logprobs, expected, atol=1e-6, rtol=0)


def test_step_picks_that_checkpoint(trained, tmp_path):
    assert export(trained["lora"], "--output", tmp_path / "one", "--step", 1) == 0
    _, logprobs = scored(*plain_transformers(tmp_path / "one"))
    _, first = scored(*sdar_way(trained["lora"], 1))
    _, second = scored(*sdar_way(trained["lora"], 2))
    torch.testing.assert_close(logprobs, first, atol=MERGED_TOLERANCE, rtol=0)
    assert (logprobs - second).abs().max() > 100 * MERGED_TOLERANCE
    card = (tmp_path / "one" / "README.md").read_text()
    assert "| step exported | 1 of 2 (`checkpoints/step_000001` of `lora`) |" in card


def test_the_model_card_holds_base_method_step_evaluations_and_the_run_config(trained, tmp_path):
    assert export(trained["lora"], "--output", tmp_path / "card") == 0
    card = (tmp_path / "card" / "README.md").read_text()
    metadata = huggingface_hub.ModelCard(card).data
    assert (
        metadata.library_name == "transformers"
        and "sdar" in metadata.tags
        and "alfworld-gen" in metadata.tags
    )
    assert "| base model | `tiny`, sdar's random-init test model" in card
    assert "| method | `sdar`: SDAR: GRPO + " in card and "| step exported | 2 of 2 " in card
    assert "LoRA (rank 4, alpha 32) merged into the base weights; dtype fp32" in card
    for label, step in (("step_0", 0), ("final", 2)):
        summary = json.loads((trained["lora"] / "eval" / label / "summary.json").read_text())
        success = f"{100 * summary['success_rate']:.1f}"
        assert f"| {label} | {step} | {summary['panel']['name']} | 1 x 1 | model | {success} |" in card
    assert card.index("| step_0 |") < card.index("| final |")
    assert (trained["lora"] / "config.yaml").read_text().rstrip() in card


def _smollm2_installed() -> bool:
    try:
        metadata.distribution(embedded.PACKAGE)
    except metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.smollm2
@pytest.mark.skipif(not _smollm2_installed(), reason=f"needs {embedded.INSTALL_HINT}")
def test_a_smollm2_run_exports_merged_with_tied_embeddings_and_as_an_adapter(tmp_path):
    """The embedded SmolLM2 (converted into a fresh cache, ~20 s), a LoRA checkpoint with nonzero adapters."""
    from peft import PeftModel

    overrides = ["model.name=smollm2-135m", f"model.cache_dir={tmp_path / 'cache'}", "model.lora_rank=8"]
    config = load_config("smoke", overrides)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    save_config(config, run_dir / "config.yaml")
    model, _ = load_model(config.model)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_" in name:  # B starts at 0, which would make the adapters a no-op
                parameter.copy_(0.02 * torch.randn(parameter.shape, generator=generator))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    save_checkpoint(run_dir, 3, model, optimizer, scheduler, {})
    _, expected = scored(*sdar_way(run_dir, 3))

    assert export(run_dir, "--output", tmp_path / "merged") == 0
    merged, tokenizer = plain_transformers(tmp_path / "merged")
    assert merged.config.tie_word_embeddings and merged.lm_head.weight is merged.model.embed_tokens.weight
    _, logprobs = scored(merged, tokenizer)
    torch.testing.assert_close(logprobs, expected, atol=SMOLLM2_MERGED_TOLERANCE, rtol=0)
    base, _ = load_model(dataclasses.replace(config.model, lora_rank=0))  # the weights it was trained on
    _, untrained = scored(base, tokenizer)
    assert (untrained - expected).abs().max() > 100 * SMOLLM2_MERGED_TOLERANCE
    card = (tmp_path / "merged" / "README.md").read_text()
    assert huggingface_hub.ModelCard(card).data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"

    assert export(run_dir, "--output", tmp_path / "adapter", "--adapter") == 0
    adapter_config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    _, logprobs = scored(PeftModel.from_pretrained(base, tmp_path / "adapter").eval(), tokenizer)
    torch.testing.assert_close(logprobs, expected, atol=1e-6, rtol=0)
    assert "acts slightly differently" in (tmp_path / "adapter" / "README.md").read_text()


# ---- refusals: one line each, nothing written ------------------------------------------------------------
def untrained_run(run_dir, lora_rank):
    """A run directory as the trainer leaves it (config.yaml, checkpoints of steps 2 and 4), made without
    training."""
    config = load_config("smoke", [f"model.lora_rank={lora_rank}"])
    run_dir.mkdir()
    save_config(config, run_dir / "config.yaml")
    model, _ = load_model(config.model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    for step in (2, 4):
        save_checkpoint(run_dir, step, model, optimizer, scheduler, {})
    return run_dir


@pytest.fixture
def saved_run(tmp_path):
    return untrained_run(tmp_path / "run", lora_rank=4)


def refused(capsys, *arguments):
    """The one stderr line of an `sdar export` that must fail with exit status 2."""
    assert export(*arguments) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("sdar export: error: ")
    return line


def leftovers(folder):
    return sorted(path.name for path in folder.iterdir() if ".export" in path.name)


def test_the_model_card_names_the_warm_start_and_leaves_out_a_broken_evaluation(saved_run, tmp_path):
    warm_start = {"key": "0123456789abcdef", "base_model": "smollm2-135m", "pairs": 120}
    (saved_run / "run_info.json").write_text(json.dumps({"warm_start": warm_start}))
    (saved_run / "eval" / "broken").mkdir(parents=True)
    (saved_run / "eval" / "broken" / "summary.json").write_text("{")
    with pytest.warns(UserWarning, match="not an sdar eval summary"):
        export_module.export_run(saved_run, tmp_path / "merged")
    card = (tmp_path / "merged" / "README.md").read_text()
    assert huggingface_hub.ModelCard(card).data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert (
        "after sdar's supervised warm start (cache key `0123456789abcdef`, 120 demonstration pairs)" in card
    )
    assert "| broken |" not in card and "The run holds no evaluation" in card
    with pytest.warns(UserWarning):
        export_module.export_run(saved_run, tmp_path / "adapter", adapter=True)
    card = (tmp_path / "adapter" / "README.md").read_text()
    assert "The adapter applies to the SFT warm-start model" in card
    assert huggingface_hub.ModelCard(card).data.base_model is None  # `tiny` here: no Hub id to name


def test_a_step_that_was_not_saved_is_refused_listing_the_saved_ones(saved_run, tmp_path, capsys):
    line = refused(capsys, saved_run, "--output", tmp_path / "out", "--step", 3)
    assert "--step 3" in line and "saved steps: 2, 4" in line
    assert not (tmp_path / "out").exists()


def test_a_run_without_checkpoints_and_a_folder_that_is_not_a_run_are_refused(saved_run, tmp_path, capsys):
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "config.yaml").write_text((saved_run / "config.yaml").read_text())
    assert "has no checkpoint yet" in refused(capsys, fresh, "--output", tmp_path / "out")
    assert "is not a run directory" in refused(capsys, tmp_path / "elsewhere", "--output", tmp_path / "out")
    assert "is not a run directory" in refused(
        capsys, saved_run / "checkpoints", "--output", tmp_path / "out"
    )
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_an_existing_output_is_refused_unless_forced_and_never_the_run_itself(saved_run, tmp_path, capsys):
    output = tmp_path / "out"
    output.mkdir()
    (output / "keep.txt").write_text("mine")
    assert "already exists and is not empty" in refused(capsys, saved_run, "--output", output)
    assert sorted(path.name for path in output.iterdir()) == ["keep.txt"]
    assert "the run directory or holds it" in refused(capsys, saved_run, "--output", tmp_path, "--force")
    assert "the run directory or holds it" in refused(capsys, saved_run, "--output", saved_run, "--force")
    assert export(saved_run, "--output", output, "--force") == 0
    assert not (output / "keep.txt").exists() and (output / "model.safetensors").is_file()
    assert leftovers(tmp_path) == []
    (tmp_path / "empty").mkdir()
    assert export(saved_run, "--output", tmp_path / "empty") == 0  # an empty folder is no output in the way


def test_an_adapter_is_refused_for_a_full_fine_tuning_run(tmp_path, capsys):
    run_dir = untrained_run(tmp_path / "run", lora_rank=0)
    line = refused(capsys, run_dir, "--output", tmp_path / "out", "--adapter")
    assert "model.lora_rank=0" in line and "without --adapter" in line
    assert not (tmp_path / "out").exists()


def test_a_failure_while_writing_leaves_no_output_and_keeps_a_replaced_one(saved_run, tmp_path, monkeypatch):
    def fails_halfway(model, tokenizer, folder, adapter=False):
        (folder / "config.json").write_text("{}")
        raise OSError("disk full")

    monkeypatch.setattr(export_module, "save_model_folder", fails_halfway)
    with pytest.raises(OSError, match="disk full"):
        export_module.export_run(saved_run, tmp_path / "new" / "out")
    assert not (tmp_path / "new").exists()  # nor the parent folder the export made
    previous = tmp_path / "previous"
    previous.mkdir()
    (previous / "model.safetensors").write_text("the earlier export")
    with pytest.raises(OSError, match="disk full"):
        export_module.export_run(saved_run, previous, force=True)
    assert (previous / "model.safetensors").read_text() == "the earlier export"
    assert leftovers(tmp_path) == []


# ---- --push-to-hub --------------------------------------------------------------------------------------
class RecordingHfApi:
    """Stands in for huggingface_hub.HfApi: records create_repo / upload_folder and what the folder held."""

    calls: list = []
    fail_upload = False

    def create_repo(self, repo_id, **options):
        self.calls.append(("create_repo", repo_id, options))
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, **options):
        files = sorted(path.name for path in Path(options["folder_path"]).iterdir())
        self.calls.append(("upload_folder", options, files))
        if self.fail_upload:  # what huggingface_hub raises for an HTTP error status
            import httpx2

            request = httpx2.Request(
                "POST", f"https://huggingface.co/api/models/{options['repo_id']}/commit/main"
            )
            response = httpx2.Response(403, request=request)
            raise huggingface_hub.errors.HfHubHTTPError("403 Forbidden: no write access", response=response)


@pytest.fixture
def online_hub(monkeypatch):
    """The Hub as seen online with a token, HfApi replaced by RecordingHfApi."""
    for flag in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(flag, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_test_token")
    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingHfApi)
    monkeypatch.setattr(RecordingHfApi, "calls", [])
    return RecordingHfApi


def test_push_to_hub_creates_a_private_repo_and_uploads_the_complete_folder(saved_run, tmp_path, online_hub):
    assert export(saved_run, "--output", tmp_path / "out", "--push-to-hub", "someone/tiny-sdar") == 0
    (create, repo_id, options), (upload, upload_options, files) = online_hub.calls
    assert (create, repo_id) == ("create_repo", "someone/tiny-sdar")
    assert options == {"repo_type": "model", "private": True, "exist_ok": True}
    assert upload == "upload_folder" and upload_options["folder_path"] == str(tmp_path / "out")
    assert upload_options["repo_id"] == "someone/tiny-sdar" and upload_options["repo_type"] == "model"
    assert "step 4" in upload_options["commit_message"]
    assert {"README.md", "config.json", "model.safetensors", "tokenizer.json"} <= set(files)
    assert "# someone/tiny-sdar" in (tmp_path / "out" / "README.md").read_text()
    assert export(saved_run, "--output", tmp_path / "public", "--push-to-hub", "someone/x", "--public") == 0
    assert online_hub.calls[2][2]["private"] is False


def test_a_failed_push_keeps_the_export_and_says_how_to_upload_it(saved_run, tmp_path, online_hub, capsys):
    online_hub.fail_upload = True
    try:
        line = refused(capsys, saved_run, "--output", tmp_path / "out", "--push-to-hub", "someone/x")
    finally:
        online_hub.fail_upload = False
    assert "403 Forbidden" in line and f"`hf upload --private someone/x {tmp_path / 'out'}`" in line
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_push_to_hub_offline_or_without_a_token_is_refused_before_writing(
    saved_run, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda: pytest.fail("the Hub was called"))
    line = refused(capsys, saved_run, "--output", tmp_path / "out", "--push-to-hub", "someone/x")
    assert "HF_HUB_OFFLINE" in line and "hf upload" in line  # tests run with HF_HUB_OFFLINE=1
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    line = refused(capsys, saved_run, "--output", tmp_path / "out", "--push-to-hub", "someone/x")
    assert "no Hugging Face token" in line and "HF_TOKEN" in line and "hf auth login" in line
    assert not (tmp_path / "out").exists()
