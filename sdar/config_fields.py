"""The kinds of config field and their validation: every field of a config section is made by one of
`setting`, `choice`, `bounded` or `method_default`, which put its meaning (`help`) and its allowed values
(`choices`, or bounds `low`, `high`, `above`) in the field's metadata. `ValidatedSection.__post_init__` checks
them when a section is constructed; scripts/config_reference.py writes docs/configuration.md from them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import field
from typing import Any

from sdar.errors import ConfigError


class RegistryNames(Sequence):
    """The names of a registry as a field's choices, read from it whenever they are used: the registries of
    `sdar.algorithms` import torch, which `import sdar.config` must not (the CLI and `sdar.api` start
    without it). Equal to the tuple of the names."""

    def __init__(self, read: Callable[[], Iterable[str]]):
        self._read = read

    def names(self) -> tuple[str, ...]:
        return tuple(self._read())

    def __getitem__(self, index):
        return self.names()[index]

    def __len__(self) -> int:
        return len(self.names())

    def __contains__(self, value) -> bool:
        return value in self.names()

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and self.names() == tuple(other)

    __hash__ = None

    def __repr__(self) -> str:
        return repr(self.names())


def algorithm_registry(name: str) -> RegistryNames:
    """The names of the registry `sdar.algorithms.<name>` (METHODS, GATES, ADVANTAGES, ...)."""

    def read() -> Iterable[str]:
        import sdar.algorithms

        return getattr(sdar.algorithms, name)

    return RegistryNames(read)


def setting(default: Any, help: str) -> Any:
    """A field with neither choices nor bounds: its default and its meaning. A dict default is copied for
    every instance (a dataclass refuses a shared mutable default)."""
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


def choice(default: Any, choices: Sequence, help: str = "") -> Any:
    """A field whose value is one of `choices` (a tuple, or the names of a registry)."""
    return field(default=default, metadata={"choices": choices, "help": help})


def bounded(
    default: Any,
    low: float | None = None,
    high: float | None = None,
    help: str = "",
    above: float | None = None,
) -> Any:
    """A numeric field within [low, high]; `above` is a strict lower bound."""
    return field(default=default, metadata={"low": low, "high": high, "above": above, "help": help})


def method_default(help: str = "") -> Any:
    """A non-negative coefficient whose `None` means the method's default: `AlgorithmConfig.resolved` takes it
    from the method's entry (sdar.algorithms.methods), which has a field of the same name."""
    return field(
        default=None,
        metadata={"low": 0.0, "high": None, "above": None, "help": help, "method_default": True},
    )


class ValidatedSection:
    """Validates the field metadata (choices, bounds) of a frozen dataclass section on construction."""

    def __post_init__(self) -> None:
        section = getattr(self, "_section", type(self).__name__)
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            # NaN passes every bound (all comparisons with it are false) and inf overflows what it scales or
            # bounds, so neither reaches a run. No float field takes inf as "no limit": where a field has
            # one it is spelled 0 or null (trainer.grad_clip: 0, algorithm.dual_clip: null), and a cap or a
            # timeout that should never bind is a large finite number.
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(
                    f"{section}.{f.name}={value!r} is not a finite number; give a finite value "
                    "(NaN and infinities are refused)"
                )
            choices = f.metadata.get("choices")
            if choices is not None and value not in choices:
                raise ConfigError(
                    f"{section}.{f.name}={value!r} is not valid; "
                    f"choose one of: {', '.join(map(str, choices))}"
                )
            low, high = f.metadata.get("low"), f.metadata.get("high")
            if low is not None and value < low or high is not None and value > high:
                span = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
                raise ConfigError(f"{section}.{f.name}={value!r} is out of range; it must lie in {span}")
            above = f.metadata.get("above")
            if above is not None and not value > above:
                raise ConfigError(f"{section}.{f.name}={value!r} is out of range; it must be above {above}")
