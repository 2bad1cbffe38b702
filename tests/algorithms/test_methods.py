"""The method table: contents, lookup, and how sdar.config resolves its defaults from it."""

import dataclasses

import pytest

from sdar.algorithms import METHODS, MethodSpec, get_method, settings_from_config

EXPECTED = {
    # policy_coef, kl_coef, entropy_coef, distill, distill_coef, beta, advantage_shaping, skills, teacher
    "grpo": (1.0, 0.01, 0.001, None, 0.0, 5.0, None, False, False),
    "sdar": (1.0, 0.01, 0.001, "sdar", 0.01, 5.0, None, False, True),
    "grpo_opsd": (1.0, 0.01, 0.001, "sdar", 0.01, 0.0, None, False, True),
    "opsd": (0.0, 0.01, 0.001, "sdar", 0.01, 5.0, None, False, True),
    "skill_sd": (1.0, 0.01, 0.001, "skill_sd", 0.001, 5.0, None, False, True),
    "rlsd": (1.0, 0.01, 0.001, None, 0.0, 5.0, "rlsd", False, True),
    "skill_grpo": (1.0, 0.01, 0.001, None, 0.0, 5.0, None, True, False),
}


def test_method_table_contents():
    assert list(METHODS) == list(EXPECTED)
    for name, expected in EXPECTED.items():
        method = get_method(name)
        actual = (
            method.policy_coef,
            method.kl_coef,
            method.entropy_coef,
            method.distill,
            method.distill_coef,
            method.beta,
            method.advantage_shaping,
            method.student_sees_skills,
            method.needs_teacher,
        )
        assert actual == expected, name
        assert method.name == name and "docs/method.md §" in method.description


def test_method_specs_are_frozen_and_validated():
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_method("sdar").beta = 1.0
    with pytest.raises(ValueError, match="distill"):
        MethodSpec(name="x", description="", distill="kd")


def test_unknown_method_lists_valid_names():
    with pytest.raises(KeyError, match="grpo, sdar, grpo_opsd, opsd, skill_sd, rlsd, skill_grpo"):
        get_method("ppo")


def test_config_resolution_reads_the_table():
    config = pytest.importorskip("sdar.config")
    resolved = config.resolve(config.Config(algorithm=config.AlgorithmConfig(method="grpo_opsd")))
    assert resolved.algorithm.beta == 0.0 and resolved.algorithm.distill_coef == 0.01


def test_settings_from_config_uses_method_defaults_and_overrides():
    config = pytest.importorskip("sdar.config")
    settings = settings_from_config(config.AlgorithmConfig(method="opsd", kl_coef=0.001))
    assert settings.policy_coef == 0.0 and settings.kl_coef == 0.001 and settings.distill == "sdar"
    assert settings.beta == 5.0 and settings.gate == "gap" and settings.dual_clip == 3.0
    settings = settings_from_config(config.AlgorithmConfig(method="rlsd", loss_aggregation="constant"))
    assert settings.advantage_shaping == "rlsd" and settings.distill is None and settings.distill_coef == 0.0
    assert settings.aggregation == "constant" and settings.aggregation_constant == 512.0
    assert settings.rlsd_lambda_start == 0.5 and settings.rlsd_decay_steps == 100
