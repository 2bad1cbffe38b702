"""`export_run(...)`: one checkpoint of a run as a Hugging Face model folder with a model card, and the push
of that folder to the Hub: `sdar export RUN --output DIR [--step N] [--adapter] [--push-to-hub REPO]`.

The folder holds what `transformers` and `peft` read with no sdar installed: full weights with any LoRA
merged in (the default) or the PEFT adapter alone (`adapter=True`), the tokenizer with the chat template the
run trained with, and a README.md model card (base model, method, exported step, the run's evaluations from
RUN/eval/*/summary.json, its config.yaml).

Failure semantics: every check that can refuse (not a run, no such checkpoint, an output in the way, an
adapter asked of a full fine-tuning run, a push without network or token) runs before anything is written.
The folder is written under a temporary name next to the output and renamed into place once complete, so a
failure or a kill leaves either no output or the previous one. A failed push leaves the complete export on
disk and says how to upload it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import uuid
from pathlib import Path

from sdar.config import load_config
from sdar.errors import ActionableError
from sdar.models import load_model
from sdar.models.export import save_model_folder
from sdar.models.loading import hub_offline
from sdar.models.trained import checkpoint_path, latest_checkpoint, load_trainable_weights
from sdar.training.model_card import base_hub_id, model_card

CARD = "README.md"


class ExportError(ActionableError):
    """A run cannot be exported (or pushed) as asked; the message says why and what to do."""


@dataclasses.dataclass(frozen=True)
class Export:
    """What `export_run` wrote: the folder, the checkpoint it came from, and the Hub URL if it was pushed."""

    folder: Path
    checkpoint: Path
    step: int
    url: str | None = None


def export_run(
    run_dir: str | Path,
    output: str | Path,
    *,
    step: int | None = None,
    adapter: bool = False,
    force: bool = False,
    push_to_hub: str | None = None,
    private: bool = True,
) -> Export:
    """Write checkpoint `step` (default: the latest) of `run_dir` into the folder `output`; then, with
    `push_to_hub="owner/name"`, upload it to that model repository (made private unless `private=False`)."""
    run_dir, output = Path(run_dir), Path(output)
    config = run_config(run_dir)
    checkpoint = find_checkpoint(run_dir, step)
    refuse_output(output, run_dir, force=force)
    if adapter and config.model.lora_rank == 0:
        raise ExportError(
            f"--adapter: {run_dir} fine-tuned every weight (model.lora_rank=0), so it has no LoRA adapter; "
            f"export it without --adapter"
        )
    if push_to_hub:
        check_can_push(push_to_hub)
    step = checkpoint_step(checkpoint)
    model_config = dataclasses.replace(config.model, gradient_checkpointing=False)  # else use_cache=False
    model, tokenizer = load_model(model_config)
    load_trainable_weights(checkpoint, model)
    card = model_card(run_dir, config, step=step, adapter=adapter, folder=output, repo_id=push_to_hub)
    with _staging(output, force=force) as staging:
        save_model_folder(model, tokenizer, staging, adapter=adapter)
        if adapter:
            _name_the_adapter_base(staging, config)
        (staging / CARD).write_text(card)
        mode = (staging / CARD).stat().st_mode & 0o777  # the umask's; safetensors files come out 0600
        for path in staging.iterdir():
            if path.is_file():
                path.chmod(mode)
    exported = Export(folder=output, checkpoint=checkpoint, step=step)
    if push_to_hub:
        url = upload(
            output, push_to_hub, private=private, message=f"sdar export of {run_dir.name}, step {step}"
        )
        exported = dataclasses.replace(exported, url=url)
    return exported


# ---- checks, all before anything is written ----------------------------------------------------------------
def run_config(run_dir: Path):
    """The run's resolved config.yaml, or an ExportError when `run_dir` is not a run directory."""
    if not (run_dir / "config.yaml").is_file():
        raise ExportError(
            f"{run_dir} is not a run directory (no config.yaml there); give the directory `sdar train` wrote"
        )
    return load_config(str(run_dir / "config.yaml"))


def saved_steps(run_dir: Path) -> list[int]:
    """The steps with a checkpoint folder in the run (a folder is renamed into place only once complete)."""
    found = (re.fullmatch(r"step_(\d+)", path.name) for path in (run_dir / "checkpoints").glob("step_*"))
    return sorted(int(match.group(1)) for match in found if match)


def find_checkpoint(run_dir: Path, step: int | None) -> Path:
    """The checkpoint of `step`, or the latest one when `step` is None; ExportError when there is none."""
    steps = saved_steps(run_dir)
    if step is None:
        latest = latest_checkpoint(run_dir)
        if latest is None:
            raise ExportError(
                f"{run_dir} has no checkpoint yet (checkpoints are saved every trainer.save_every steps and "
                f"after the last one); train it further with `sdar train --resume {run_dir}`"
            )
        return latest
    path = checkpoint_path(run_dir, step)
    if step not in steps or not path.is_dir():
        saved = ", ".join(map(str, steps)) or "none"
        raise ExportError(f"--step {step}: {run_dir} has no checkpoint of that step; saved steps: {saved}")
    return path


def checkpoint_step(checkpoint: Path) -> int:
    match = re.fullmatch(r"step_(\d+)", checkpoint.name)
    if match is None:
        raise ExportError(f"{checkpoint}: not a checkpoint folder name (step_NNNNNN)")
    return int(match.group(1))


def refuse_output(output: Path, run_dir: Path, *, force: bool) -> None:
    """An output that holds files is replaced only with `force`, and never when it is (or holds) the run."""
    resolved, run = output.resolve(), run_dir.resolve()
    if resolved == run or resolved in run.parents:
        raise ExportError(f"--output {output} is the run directory or holds it; export into another folder")
    if output.exists() and not output.is_dir():
        raise ExportError(f"--output {output} is a file; give a folder path")
    if output.is_dir() and any(output.iterdir()) and not force:
        raise ExportError(
            f"--output {output} already exists and is not empty; choose another folder, or add --force to "
            f"replace it"
        )


def check_can_push(repo_id: str) -> None:
    """A push needs the network and a token: refuse at once, before the export, when either is missing."""
    from huggingface_hub import get_token

    if hub_offline():
        raise ExportError(
            f"--push-to-hub {repo_id}: HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set, so nothing can be "
            f"uploaded; unset it, or export without --push-to-hub and upload the folder with `hf upload`"
        )
    if not get_token():
        raise ExportError(
            f"--push-to-hub {repo_id}: no Hugging Face token; set HF_TOKEN to a token with write access, or "
            f"run `hf auth login`"
        )


# ---- writing -----------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _staging(output: Path, *, force: bool):
    """A temporary folder beside `output`, renamed to `output` on success and removed on any failure."""
    made = [parent for parent in (output.parent, *output.parent.parents) if not parent.exists()]
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = output.parent / f".{output.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.export"
    staging.mkdir()  # not tempfile.mkdtemp: its 0700 would become the output's mode
    try:
        yield staging
        replaced = None
        if output.is_dir() and any(output.iterdir()):
            if not force:  # it appeared while the export was written
                raise ExportError(f"--output {output} was filled while exporting; add --force to replace it")
            replaced = staging.with_name(f"{staging.name}.replaced")
            os.rename(output, replaced)
        os.replace(staging, output)  # onto nothing, or onto an empty folder
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for parent in made:  # innermost first: only the folders this export made, and only if still empty
            with contextlib.suppress(OSError):
                parent.rmdir()
        raise
    if replaced is not None:
        shutil.rmtree(replaced)


def _name_the_adapter_base(folder: Path, config) -> None:
    """adapter_config.json's base_model_name_or_path: the Hub id of the base where there is one, else the
    run's model.name (peft writes the loaded folder's path, a cache path on this machine)."""
    path = folder / "adapter_config.json"
    settings = json.loads(path.read_text())
    settings["base_model_name_or_path"] = base_hub_id(config.model.name) or config.model.name
    path.write_text(json.dumps(settings, indent=2, sort_keys=True))


def upload(folder: Path, repo_id: str, *, private: bool, message: str) -> str:
    """create_repo (private unless told otherwise; an existing repository keeps its visibility), then
    upload_folder, with the token huggingface_hub finds (HF_TOKEN or `hf auth login`); returns its URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        repo = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        api.upload_folder(
            repo_id=repo.repo_id, folder_path=str(folder), repo_type="model", commit_message=message
        )
    except Exception as error:  # HTTP status, network, disk: the export is complete whatever stopped the push
        reason = " ".join(f"{type(error).__name__}: {error}".split())[:300]
        private_flag = " --private" if private else ""
        raise ExportError(
            f"--push-to-hub {repo_id}: {reason}; the export is complete in {folder}: upload it later with "
            f"`hf upload{private_flag} {repo_id} {folder}`"
        ) from None
    return str(repo)
