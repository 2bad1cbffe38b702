"""Which weights the teacher scores with (`TeacherConfig.weights`): live, base or ema.

- `live` (release default): the current policy model. The teacher pass runs before the step's update, so
  these are the step's start weights, π_old (docs/method.md §2).
- `base`: the frozen initial model. With LoRA, the same PeftModel under `disable_adapter()` (no copy); without
  LoRA, a frozen copy made at construction, or a frozen model the caller already holds (e.g. the KL
  reference model) passed as `base_model`.
- `ema`: an exponential moving average of the trainable parameters (`EmaTeacher`), swapped into the policy
  model for scoring and swapped out after; `update(model)` after each optimizer step.

Usage:
    teacher = TeacherWeights("ema", model, ema_decay=0.99)
    with teacher.scoring_model() as scorer:
        batch.teacher_logprobs = teacher_logprobs(scorer, tokenizer, turns, env_name=...)
    ... optimizer.step(); teacher.update()
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import torch

from sdar.config import TeacherConfig
from sdar.errors import ConfigError
from sdar.models.sharding import copy_full_, full_tensor

WEIGHT_KINDS = ("live", "base", "ema")


def is_peft_model(model) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


class EmaTeacher:
    """EMA of the trainable parameters: shadow ← decay · shadow + (1 − decay) · θ, kept in float32.

    The shadow starts at the parameters given at construction (the initial weights). float32 keeps small
    updates that bf16 would round away (1 − decay = 0.01 of a bf16 weight is below its precision).
    """

    def __init__(self, model, decay: float = 0.99):
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"ema decay must lie in [0, 1], got {decay}")
        self.decay = decay
        self.updates = 0
        self.shadow: dict[str, torch.Tensor] = {
            name: parameter.detach().float().clone()
            for name, parameter in model.named_parameters()
            if parameter.requires_grad
        }
        if not self.shadow:
            raise ValueError("the model has no trainable parameters to average")

    def _parameters(self, model) -> dict[str, torch.nn.Parameter]:
        parameters = dict(model.named_parameters())
        missing = [name for name in self.shadow if name not in parameters]
        if missing:
            raise KeyError(f"the model lacks {len(missing)} averaged parameter(s), e.g. {missing[0]!r}")
        return {name: parameters[name] for name in self.shadow}

    @torch.no_grad()
    def update(self, model) -> None:
        """One EMA step from the model's current parameters (call after each optimizer step)."""
        for name, parameter in self._parameters(model).items():
            self.shadow[name].lerp_(parameter.detach().float(), 1.0 - self.decay)
        self.updates += 1

    @contextlib.contextmanager
    def swapped_in(self, model) -> Iterator:
        """Copy the EMA weights into `model`; on exit copy the live weights back, bit for bit."""
        parameters = self._parameters(model)
        live = {}
        try:
            with torch.no_grad():
                for name, parameter in parameters.items():
                    live[name] = parameter.detach().clone()
                    parameter.copy_(self.shadow[name].to(parameter.dtype))
            yield model
        finally:
            with torch.no_grad():
                for name, saved in live.items():
                    parameters[name].copy_(saved)

    def state_dict(self) -> dict:
        """The shadow whole, also of a sharded model (collective there: every process must call it)."""
        shadow = {name: full_tensor(value) for name, value in self.shadow.items()}
        return {"decay": self.decay, "updates": self.updates, "shadow": shadow}

    def load_state_dict(self, state: dict) -> None:
        unknown = set(state["shadow"]) ^ set(self.shadow)
        if unknown:
            raise KeyError(
                f"EMA state does not match the model's trainable parameters: {sorted(unknown)[:3]}"
            )
        for name, value in state["shadow"].items():
            copy_full_(self.shadow[name], value)
        self.decay, self.updates = state["decay"], state["updates"]


class TeacherWeights:
    """One entry point for the teacher's weights: `with weights.scoring_model() as model: ...`."""

    def __init__(self, kind: str, model, *, base_model=None, ema_decay: float = 0.99):
        if kind not in WEIGHT_KINDS:
            raise ConfigError(
                f"teacher.weights={kind!r} is not valid; choose one of: {', '.join(WEIGHT_KINDS)}"
            )
        self.kind = kind
        self.model = model
        self.base_model = None
        self.ema = None
        if kind == "base" and not is_peft_model(model):
            # Without adapters the policy's own weights move: the teacher needs its own frozen copy.
            self.base_model = base_model if base_model is not None else copy.deepcopy(model)
            self.base_model.eval().requires_grad_(False)
        elif kind == "ema":
            self.ema = EmaTeacher(model, ema_decay)

    @classmethod
    def from_config(cls, config: TeacherConfig, model, *, base_model=None) -> TeacherWeights:
        return cls(config.weights, model, base_model=base_model, ema_decay=config.ema_decay)

    def update(self) -> None:
        """After each optimizer step: advances the EMA (a no-op for live and base)."""
        if self.ema is not None:
            self.ema.update(self.model)

    @contextlib.contextmanager
    def scoring_model(self) -> Iterator:
        """The model to score teacher log-probs with, valid inside the block only."""
        if self.kind == "live":
            yield self.model
        elif self.kind == "base" and self.base_model is None:
            with self.model.disable_adapter():
                yield self.model
        elif self.kind == "base":
            yield self.base_model
        else:
            with self.ema.swapped_in(self.model) as model:
                yield model

    def state_dict(self) -> dict:
        """What a checkpoint must keep to resume (the EMA shadow; nothing for live and base)."""
        return {"kind": self.kind, "ema": self.ema.state_dict() if self.ema is not None else None}

    def load_state_dict(self, state: dict) -> None:
        if state["kind"] != self.kind:
            raise ValueError(f"checkpoint teacher weights are {state['kind']!r}, this run uses {self.kind!r}")
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
