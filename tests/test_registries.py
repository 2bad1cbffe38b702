"""Registries are the only source of truth: every config choice that names registry entries lists exactly the
registry's names, every method default is read from the method table, and the settings the objective and the
rollout run under are the config's, defaults included."""

import dataclasses
import subprocess
import sys

import pytest
import torch

from sdar.algorithms import (
    ADVANTAGE_MODES,
    ADVANTAGE_SHAPINGS,
    ADVANTAGES,
    AGGREGATIONS,
    DISTILL_TERMS,
    DISTILL_WEIGHTS,
    GATES,
    KL_ESTIMATORS,
    METHODS,
    ROLLOUT_CORRECTIONS,
    MethodSpec,
    ObjectiveSettings,
    settings_for_method,
    settings_from_config,
)
from sdar.config import AlgorithmConfig, Config
from sdar.models.backends import BACKENDS
from sdar.models.loading import DTYPES
from sdar.rollout.engine import RolloutSettings
from sdar.teacher import PLACEMENTS, WEIGHT_KINDS

# config field (dotted section, field) -> the registry whose names are its choices. sdar.config reads those of
# sdar.algorithms; the packages of the others import sdar.config, so their choices are written out there too.
REGISTRIES = {
    ("algorithm", "method"): METHODS,
    ("algorithm", "advantage"): ADVANTAGES,
    ("algorithm", "advantage_stats"): ADVANTAGE_MODES,
    ("algorithm", "kl_estimator"): KL_ESTIMATORS,
    ("algorithm", "loss_aggregation"): AGGREGATIONS,
    ("algorithm", "gate"): GATES,
    ("algorithm", "distill_weight"): DISTILL_WEIGHTS,
    ("algorithm", "rollout_correction"): ROLLOUT_CORRECTIONS,
    ("rollout", "backend"): BACKENDS,
    ("teacher", "placement"): PLACEMENTS,
    ("teacher", "weights"): WEIGHT_KINDS,
    ("model", "dtype"): DTYPES,
}
# Choices that name no registry: alternatives written out where they are used.
PLAIN_CHOICES = {
    ("env", "executor"),  # sdar.envs.executors.make_env_pool
    ("rollout.vllm", "dtype"),  # "auto" or a model dtype
    ("trainer", "sharding"),
    ("sft", "skills_format"),
    ("eval", "policy"),  # model, expert, random, and the envs' own policies (EnvSpec.policies)
    ("eval", "skills_placement"),
}


def choice_fields(cls: type = Config, prefix: str = "") -> dict[tuple[str, str], tuple]:
    """(dotted section, field) -> its choices, for every `choice(...)` field of every config section."""
    found = {}
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            found.update(choice_fields(type(default), f"{prefix}.{f.name}" if prefix else f.name))
        elif f.metadata.get("choices") is not None:
            found[(prefix, f.name)] = tuple(f.metadata["choices"])
    return found


def test_every_config_choice_of_a_registry_lists_exactly_its_names():
    fields = choice_fields()
    assert set(fields) == set(REGISTRIES) | PLAIN_CHOICES, "classify the new choice field above"
    for key, registry in REGISTRIES.items():
        assert fields[key] == tuple(registry), key
    assert fields[("rollout.vllm", "dtype")] == ("auto", *DTYPES)


def test_a_registry_entry_added_at_run_time_is_a_valid_config_choice(monkeypatch):
    always_open = dataclasses.replace(GATES["gap"], weight=lambda gap, beta, entropy: torch.ones_like(gap))
    monkeypatch.setitem(GATES, "always_open", always_open)
    assert AlgorithmConfig(gate="always_open").gate == "always_open"
    assert "always_open" in choice_fields()[("algorithm", "gate")]


def test_importing_the_config_loads_no_torch():
    """The choices of registries that import torch are read when first used, not at import."""
    code = "import sys, sdar.config; print('torch' in sys.modules)"
    printed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert printed.split() == ["False"]


def test_method_defaults_are_the_method_tables_fields_of_the_same_names():
    defaulted = [f.name for f in dataclasses.fields(AlgorithmConfig) if f.metadata.get("method_default")]
    assert defaulted == ["policy_coef", "kl_coef", "entropy_coef", "distill_coef", "beta"]
    method_fields = {f.name for f in dataclasses.fields(MethodSpec)}
    assert set(defaulted) <= method_fields
    for name, method in METHODS.items():
        resolved = AlgorithmConfig(method=name).resolved()
        assert {field: getattr(resolved, field) for field in defaulted} == {
            field: getattr(method, field) for field in defaulted
        }, name
        assert AlgorithmConfig(method=name, beta=1.5).resolved().beta == 1.5  # a value given stays


def test_objective_settings_of_the_default_config_are_the_method_entries_with_the_settings_defaults():
    for name in METHODS:
        from_config = settings_from_config(AlgorithmConfig(method=name))
        expected = settings_for_method(name, aggregation_constant=AlgorithmConfig().loss_constant)
        assert from_config == expected, name
    assert settings_for_method("grpo") == ObjectiveSettings()


def test_every_method_names_registered_terms():
    for method in METHODS.values():
        assert method.distill is None or method.distill in DISTILL_TERMS
        assert method.advantage_shaping is None or method.advantage_shaping in ADVANTAGE_SHAPINGS


def test_a_gate_reads_the_entropy_exactly_when_its_registry_entry_says_so():
    gap = torch.tensor([[0.3, -0.2]])
    for name, gate in GATES.items():
        if gate.reads_entropy:
            with pytest.raises(ValueError, match="entropy"):
                gate(gap, beta=2.0)
            assert settings_for_method("sdar", gate=name).needs_entropy
            assert settings_for_method("sdar", gate=name).gate_of_gap(gap) is None
        else:
            assert torch.equal(settings_for_method("sdar", gate=name).gate_of_gap(gap), gate(gap, beta=5.0))
        assert settings_for_method("sdar", gate=name, entropy_coef=0.0).needs_entropy == gate.reads_entropy


def test_rollout_settings_are_the_configs_rollout_and_env_fields():
    config = Config()
    assert RolloutSettings.from_config(config) == RolloutSettings()
    for f in dataclasses.fields(RolloutSettings):
        if f.name not in ("seed", "prompt_budget_reserve"):
            assert hasattr(config.rollout, f.name) != hasattr(config.env, f.name), f.name
