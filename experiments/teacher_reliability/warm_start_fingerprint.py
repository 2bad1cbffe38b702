"""The warm start's fingerprint: SHA-256 of its LoRA adapter's files, recorded in warm_start.json.

Every run starts from the one warm start `sdar sft config.yaml` makes. It is cached on the machine that made
it, not committed; training it again from the same config and seed gives the same adapter only on the same
torch build and thread count (and even then the fingerprint is what tells). The record keeps the fingerprint
with the torch version and thread count it was made with, and run.py refuses to start anything from a warm
start whose fingerprint differs from the recorded one (`--new-warm-start` records the new one instead; the
old one stays listed under "replaced").

The fingerprint is the SHA-256 of the adapter's weights (adapter/adapter_model.safetensors): its tensor names
and shapes carry the rank and the target modules, and config.yaml (under the commit check) holds the rest of
the LoRA settings. adapter/adapter_config.json is hashed too and kept in the record, but it is not part of
the fingerprint: peft writes it, and a newer peft adds fields to it (0.21.2 → 0.22.0 did) without changing
the adapter. Nor is sft_summary.json, which holds the training's wall time.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

WEIGHTS = "adapter_model.safetensors"  # the fingerprinted file
HASHED = ("adapter_config.json", WEIGHTS)  # what the record lists
ADAPTER = "adapter"  # sdar.training.sft.ADAPTER: the adapter's folder inside the warm start
SUMMARY = "sft_summary.json"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def adapter_fingerprint(warm_start: Path) -> dict:
    """{"fingerprint": sha256 of the adapter's weights, "files": {file: sha256}} of the warm start's adapter
    files. Raises FileNotFoundError naming a missing one."""
    adapter = Path(warm_start) / ADAPTER
    files = {}
    for name in HASHED:
        path = adapter / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the warm start has no LoRA adapter file {name}")
        files[name] = file_sha256(path)
    return {"fingerprint": files[WEIGHTS], "files": files}


def warm_start_record(warm_start: Path, torch_version: str) -> dict:
    """What warm_start.json keeps of a warm start: its fingerprint, cache key, torch version, and the thread
    count and machine its sft_summary.json says it was trained with."""
    summary_path = Path(warm_start) / SUMMARY
    summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file() else {}
    machine = summary.get("machine") or {}
    return {
        **adapter_fingerprint(warm_start),
        "key": Path(warm_start).name,
        "torch": torch_version,
        "threads": machine.get("threads"),
        "machine": machine,
        **{name: summary[name] for name in ("base_model", "pairs", "epochs", "loss_last") if name in summary},
    }


def read_record(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def write_record(path: Path, record: dict, replaced: dict | None = None) -> None:
    """Write `record` to `path`; a `replaced` record goes first into its "replaced" list (with its own)."""
    if replaced is not None:
        earlier = replaced.get("replaced", [])
        record = {**record, "replaced": [*earlier, {k: v for k, v in replaced.items() if k != "replaced"}]}
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def mismatch(recorded: dict | None, warm_start: Path) -> str:
    """Why the warm start here is not the recorded one; "" when it is (or nothing is recorded yet)."""
    if recorded is None:
        return ""
    here = adapter_fingerprint(warm_start)["fingerprint"]
    if here == recorded["fingerprint"]:
        return ""
    return (
        f"the warm start here ({warm_start}, fingerprint {here[:16]}) is not the one recorded in "
        f"warm_start.json (fingerprint {recorded['fingerprint'][:16]}, torch {recorded.get('torch')}, "
        f"{recorded.get('threads')} threads): runs from it would not compare with runs from that one. Make "
        "it again with that torch build and thread count, or pass --new-warm-start to record this one"
    )
