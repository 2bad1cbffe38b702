"""Config files and overrides: presets and YAML files in, dotted `section.field=value` overrides on top, and
the plain mapping they make turned into frozen dataclasses (and back), with a named error for every unknown
key or ill-typed value. Generic over the dataclass: `sdar.config` holds the sections and builds a `Config`
with these.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from sdar.errors import ConfigError
from sdar.plugins import anchor_plugin_paths

PRESET_DIR = Path(__file__).parent / "configs"
_SCIENTIFIC = re.compile(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+")


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Convert a YAML/CLI value to the field's annotated type, or raise naming the field."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (hint,) = [a for a in args if a is not type(None)]
        return _coerce(value, hint, where)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}={value!r} must be true or false")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}={value!r} must be an integer")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}={value!r} must be a number")
    if hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}={value!r} must be a string")
    if hint is tuple or origin is tuple:
        if isinstance(value, (list, tuple)):
            return tuple(value)
        return (value,)
    if hint is dict or origin is dict:
        if isinstance(value, dict):
            return dict(value)
        raise ConfigError(f"{where}={value!r} must be a mapping")
    return value


def _unknown_key(cls: type, key: str, where: str) -> ConfigError:
    names = [f.name for f in dataclasses.fields(cls)]
    close = difflib.get_close_matches(key, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"unknown config key {where}{key!r}{hint}; valid keys: {', '.join(names)}")


def from_dict(cls: type, data: Any, where: str = "") -> Any:
    """Build dataclass `cls` from a nested mapping, rejecting unknown keys and ill-typed values."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise _unknown_key(cls, key, f"{where}." if where else "")
        kwargs[key] = _coerce(value, hints[key], f"{where}.{key}" if where else key)
    return cls(**kwargs)


def to_dict(config: Any) -> dict:
    """Plain nested dict (tuples as lists) for YAML/JSON."""
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            value = to_dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """`trainer.steps=10` -> (["trainer", "steps"], 10); values are read as YAML scalars."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} must look like section.field=value (e.g. trainer.steps=10)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as error:
        raise ConfigError(f"override {text!r}: cannot read the value: {error}") from None
    if isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):
        value = float(value)  # YAML 1.1 reads "3e-4" (no dot) as a string; users mean a number
    return key.strip().split("."), value


def merge_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply dotted overrides to a nested mapping (a copy); `env.options.x=1` reaches into dict fields."""
    data = yaml.safe_load(yaml.safe_dump(data))  # deep copy of plain data
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {part!r} is a value, not a section")
            node = child
        node[path[-1]] = value
    return data


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def read_source(source: str) -> dict:
    """A preset name or a YAML path -> its mapping (presets may name a `base:` preset to extend)."""
    path = Path(source)
    # a preset name may hold dots ("search_qa_qwen2.5-3b_sdar"): only a .yaml/.yml suffix marks a file path
    if path.suffix not in (".yaml", ".yml") and (PRESET_DIR / f"{source}.yaml").exists():
        path = PRESET_DIR / f"{source}.yaml"
    if not path.exists():
        raise ConfigError(
            f"config {source!r} is neither a preset nor a YAML file; presets: {', '.join(preset_names())}"
        )
    if not path.is_file():
        raise ConfigError(f"config {str(path)!r} is a directory, not a YAML file; give a preset or YAML file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text (a binary file?); give a YAML config file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    if "plugins" in data:
        data["plugins"] = anchor_plugin_paths(data["plugins"], path.parent)
    base = data.pop("base", None)
    if base is None:
        return data
    beside = path.parent / str(base)  # a relative YAML path is read beside the file that names it
    if Path(str(base)).suffix in (".yaml", ".yml") and not Path(str(base)).is_absolute() and beside.exists():
        base = beside
    return _deep_merge(read_source(str(base)), data)


def _deep_merge(low: dict, high: dict) -> dict:
    """`high` over `low`, mapping by mapping. An env's `options` belong to that env: they merge key by key
    while the env stays the same, and a file that names another env starts its options afresh."""
    merged = dict(low)
    other_env = "name" in high and high["name"] != low.get("name")
    if other_env and "options" in merged:
        merged["options"] = {}
    for key, value in high.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
