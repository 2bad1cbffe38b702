"""`Journal`: what an evaluation has already played, so that a killed `sdar eval` resumes where it stopped.

An evaluation plays its panel in units: one chunk of tasks of one seed for the model policy (as many tasks as
the env pool has slots), one whole seed for a scripted policy. After each unit its episodes are appended to
OUTPUT/episodes.partial.jsonl and flushed to disk; rerunning the same evaluation with the same --output reads
them back and plays only the units left. A kill therefore loses at most the unit being played. Every unit is
played exactly as in an uninterrupted run (the model's turn seeds depend on the eval seed and turn only, and
each unit resets its envs), so the resumed results are the uninterrupted ones.

The file's first line is the evaluation's resume key: the panel fingerprint, the checkpoint, and every config
field that changes what is played (model, env, rollout, teacher, and eval but its seeds). A file written
under another key is refused with the fields that differ, never mixed in. When the evaluation completes and
summary.json + episodes.jsonl are written, the journal is removed; an output directory holding them is
refused (a new evaluation there would overwrite them).

While a `Journal` is open it holds the output directory's lock (`sdar.locking`), so a second evaluation into
the same --output is refused instead of interleaving its units with the first one's.

Only `evaluate` (`sdar eval`) keeps a journal. The trainer's own evaluations do not: a run killed during one
resumes from its last checkpoint and evaluates again with the weights it has then.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from sdar.config import Config, to_dict
from sdar.errors import ConfigError
from sdar.evaluation.panels import Panel
from sdar.evaluation.summary import EpisodeRecord
from sdar.locking import DirectoryLock

PARTIAL = "episodes.partial.jsonl"
FINISHED = "summary.json"  # written with episodes.jsonl when an evaluation completes (summary.write_results)
# The sections that decide what is played (algorithm, trainer and sft only train; a warm start is in
# model.name), less the fields that do not: where env workers run, how long a step may take, and which seeds
# (each unit names its seed).
KEYED_SECTIONS = ("model", "env", "rollout", "teacher", "eval")
IGNORED = {"env": ("workers", "step_timeout_s"), "eval": ("seeds",)}


def resume_key(config: Config, panel: Panel, checkpoint: dict | None) -> dict:
    """What a journal must have been written under to be resumed (see the module docstring)."""
    settings = to_dict(config)
    sections = {
        name: {key: value for key, value in settings[name].items() if key not in IGNORED.get(name, ())}
        for name in KEYED_SECTIONS
    }
    return {"panel": panel.fingerprint, "checkpoint": checkpoint, **sections}


def _flat(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _record(data: dict) -> EpisodeRecord:
    names = EpisodeRecord.__dataclass_fields__
    return EpisodeRecord(**{key: value for key, value in data.items() if key in names})


class Journal:
    """The units played so far in OUTPUT/episodes.partial.jsonl; `played(unit)` gives a unit's records back,
    `add(unit, records)` appends a finished one, `close()` removes the file once the results are written.
    Use it as a context manager: leaving the block releases the output directory's lock."""

    def __init__(self, output_dir: str | Path, key: dict):
        self.path = Path(output_dir) / PARTIAL
        self.key = json.loads(json.dumps(key))  # as it reads back from the file (tuples as lists)
        self.units: dict[str, list[EpisodeRecord]] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = DirectoryLock(
            self.path.parent, "evaluation", "wait for it to end, or choose another --output"
        )
        try:
            if self.path.exists():
                self._read()
            elif (self.path.parent / FINISHED).exists():  # overwriting it could lose another evaluation
                raise ConfigError(
                    f"{self.path.parent} already holds a finished evaluation ({FINISHED}); choose another "
                    f"--output, or move it away to evaluate there again"
                )
            else:
                self._write_lines([json.dumps({"resume_key": self.key})])
        except BaseException:
            self.release()
            raise

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

    @property
    def episodes(self) -> int:
        return sum(len(records) for records in self.units.values())

    def played(self, unit: str) -> list[EpisodeRecord] | None:
        return self.units.get(unit)

    def add(self, unit: str, records: list[EpisodeRecord]) -> None:
        line = json.dumps({"unit": unit, "episodes": [record.as_dict() for record in records]})
        with open(self.path, "a") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.units[unit] = list(records)

    def close(self) -> None:
        """The evaluation is complete: remove the file and release the lock."""
        self.path.unlink(missing_ok=True)
        self.release()

    def release(self) -> None:
        self._lock.release()

    def _read(self) -> None:
        lines = self.path.read_text().splitlines()
        try:
            header = json.loads(lines[0])["resume_key"] if lines else None
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ConfigError(
                f"{self.path}: its first line is not a resume key ({error}); it is not an evaluation journal "
                f"of sdar, or it is damaged: move it away or choose another --output"
            ) from None
        units, torn = self._units(lines)
        if not units:  # nothing was played under the old key (or there is none): start afresh under ours
            self._write_lines([json.dumps({"resume_key": self.key})])
            return
        if header != self.key:
            theirs, ours = _flat(header), _flat(self.key)
            differ = sorted(
                name for name in theirs.keys() | ours.keys() if theirs.get(name) != ours.get(name)
            )
            shown = ", ".join(f"{name}: {theirs.get(name)!r} -> {ours.get(name)!r}" for name in differ[:6])
            more = f" and {len(differ) - 6} more" if len(differ) > 6 else ""
            raise ConfigError(
                f"{self.path} holds a partial evaluation made with other settings ({shown}{more}); rerun "
                f"with those to resume it, or delete the file (or choose another --output) to start over"
            )
        self.units = units
        if torn:  # appends must not continue a torn line
            self._write_lines(lines[:-1])

    def _units(self, lines: list[str]) -> tuple[dict[str, list[EpisodeRecord]], bool]:
        """The units of the lines after the key, and whether the last line was torn (and dropped)."""
        units = {}
        for number, line in enumerate(lines[1:], start=2):
            try:
                entry = json.loads(line)
                units[entry["unit"]] = [_record(data) for data in entry["episodes"]]
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                if number == len(lines):  # the line a kill cut short: its unit is played again
                    warnings.warn(
                        f"{self.path}: dropped a torn last line; that unit is played again", stacklevel=4
                    )
                    return units, True
                raise ConfigError(
                    f"{self.path}, line {number}: not a journal entry ({error}); the file is damaged: delete "
                    f"it (or choose another --output) to start over"
                ) from None
        return units, False

    def _write_lines(self, lines: list[str]) -> None:
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text("".join(line + "\n" for line in lines))
        os.replace(temporary, self.path)


__all__ = ["PARTIAL", "Journal", "resume_key"]
