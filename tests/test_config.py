import dataclasses
import typing

import pytest
import yaml

from sdar.config import (
    AlgorithmConfig,
    Config,
    TrainerConfig,
    load_config,
    merge_overrides,
    parse_override,
    preset_names,
    save_config,
    to_dict,
)
from sdar.errors import ConfigError


def test_defaults_are_the_paper_alfworld_settings():
    config = load_config()
    assert config.algorithm.method == "sdar"
    assert config.algorithm.advantage_stats == "per_row"
    assert config.rollout.group_size == 8
    assert config.trainer.lr == 1e-6
    assert config.env.history_length == 2


def test_resolve_fills_method_defaults():
    config = load_config()
    algorithm = config.algorithm
    assert (algorithm.beta, algorithm.distill_coef, algorithm.kl_coef, algorithm.entropy_coef) == (
        5.0,
        0.01,
        0.01,
        0.001,
    )
    assert load_config(None, ["algorithm.method=grpo_opsd"]).algorithm.beta == 0.0
    assert load_config(None, ["algorithm.method=opsd"]).algorithm.policy_coef == 0.0
    # an explicit value wins over the method default
    assert load_config(None, ["algorithm.method=grpo_opsd", "algorithm.beta=2"]).algorithm.beta == 2.0


def test_dotted_overrides_are_typed():
    config = load_config(
        "smoke", ["trainer.steps=10", "trainer.lr=3e-4", "model.gradient_checkpointing=true"]
    )
    assert config.trainer.steps == 10 and isinstance(config.trainer.steps, int)
    assert config.trainer.lr == 3e-4
    assert config.model.gradient_checkpointing is True
    assert config.model.name == "tiny"  # from the preset


def test_env_options_reach_into_the_dict():
    config = load_config(None, ["env.options.num_objects=4", "env.options.room=kitchen"])
    assert config.env.options == {"num_objects": 4, "room": "kitchen"}


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("algorithm.method=ppo", "algorithm.method='ppo' is not valid; choose one of: grpo, sdar"),
        ("algorithm.gate=cosine", "algorithm.gate='cosine' is not valid"),
        ("model.dtype=fp16", "model.dtype='fp16' is not valid; choose one of: fp32, bf16"),
        ("trainer.steps=-1", "trainer.steps=-1 is out of range"),
        ("rollout.top_p=1.5", "rollout.top_p=1.5 is out of range; it must lie in [0.0, 1.0]"),
        ("trainer.steps=ten", "trainer.steps='ten' must be an integer"),
        ("model.gradient_checkpointing=maybe", "must be true or false"),
        ("trainer.stepz=3", "unknown config key trainer.'stepz' (did you mean 'steps'?)"),
        ("traner.steps=3", "unknown config key 'traner' (did you mean 'trainer'?)"),
        ("trainer.steps", "must look like section.field=value"),
    ],
)
def test_bad_values_name_the_field_and_the_choices(override, fragment):
    with pytest.raises(ConfigError) as error:
        load_config(None, [override])
    assert fragment in str(error.value)


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ConfigError, match="neither a preset nor a YAML file; presets: .*smoke"):
        load_config("no-such-preset")


def test_yaml_round_trip(tmp_path):
    config = load_config("smoke", ["algorithm.method=rlsd", "env.options.size=2"])
    path = tmp_path / "config.yaml"
    save_config(config, path)
    again = load_config(str(path))
    assert again == config
    assert yaml.safe_load(path.read_text())["algorithm"]["beta"] == 5.0  # resolved values are saved


def test_yaml_base_preset_is_extended(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("base: smoke\ntrainer:\n  steps: 7\n")
    config = load_config(str(path))
    assert config.trainer.steps == 7
    assert config.model.name == "tiny"  # from the base preset
    assert config.rollout.group_size == 2  # sibling fields of the section are kept


def test_env_options_merge_key_by_key_over_a_base_of_the_same_env(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("base: smoke\nenv:\n  options:\n    valid_games: 9\n")
    assert load_config(str(path)).env.options == {"train_games": 12, "valid_games": 9}  # train_games: smoke's


def test_a_file_naming_another_env_starts_its_options_afresh(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("base: smoke\nenv:\n  name: toy\n")
    assert load_config(str(path)).env.options == {}  # smoke's alfworld-gen options do not reach the toy env
    path.write_text("base: smoke\nenv:\n  name: toy\n  options: {places: 3}\n")
    assert load_config(str(path)).env.options == {"places": 3}


def test_a_relative_yaml_base_is_read_beside_the_file_naming_it(tmp_path, monkeypatch):
    folder = tmp_path / "experiment"
    folder.mkdir()
    (folder / "common.yaml").write_text("base: smoke\ntrainer:\n  steps: 7\n")
    (folder / "variant.yaml").write_text("base: common.yaml\ntrainer:\n  lr: 0.5\n")
    monkeypatch.chdir(tmp_path)  # not the folder holding both files
    config = load_config("experiment/variant.yaml")
    assert (config.trainer.steps, config.trainer.lr, config.model.name) == (7, 0.5, "tiny")


def test_every_preset_loads():
    assert {"smoke", "quickstart"} <= set(preset_names())
    for name in preset_names():
        assert isinstance(load_config(name), Config)


def test_configs_are_frozen():
    config = load_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.trainer.steps = 3


def test_parse_override_reads_yaml_scalars():
    assert parse_override("a.b=1e-3") == (["a", "b"], 1e-3)
    assert parse_override("a.b=[0, 1]") == (["a", "b"], [0, 1])
    assert parse_override("a.b=") == (["a", "b"], "")
    assert merge_overrides({"a": {"c": 1}}, ["a.b=2"]) == {"a": {"c": 1, "b": 2}}
    with pytest.raises(ConfigError, match="'a' is a value, not a section"):
        merge_overrides({"a": 1}, ["a.b=2"])


def test_to_dict_is_plain_data():
    data = to_dict(load_config(None, ["eval.seeds=[0, 1, 2]"]))
    assert data["eval"]["seeds"] == [0, 1, 2]
    assert yaml.safe_load(yaml.safe_dump(data)) == data


def _float_fields(cls: type = Config, prefix: str = "") -> list[str]:
    """Dotted names of every float field (optional or not) of the config, nested sections included."""
    names = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            names += _float_fields(hint, f"{prefix}{f.name}.")
        elif hint is float or float in typing.get_args(hint):
            names.append(f"{prefix}{f.name}")
    return names


def test_every_float_field_is_found():
    names = _float_fields()
    assert {"trainer.lr", "rollout.temperature", "algorithm.clip_low", "algorithm.dual_clip"} <= set(names)
    assert {"env.step_timeout_s", "rollout.vllm.cpu_kv_cache_gb", "eval.temperature"} <= set(names)


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
@pytest.mark.parametrize("name", _float_fields())
def test_non_finite_floats_are_refused_naming_the_field(name, value):
    with pytest.raises(ConfigError) as error:
        load_config("smoke", [f"{name}={value}"])
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"{name}=") and ("not a finite number" in message or "out of range" in message)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_floats_are_refused_when_built_in_python(value):
    with pytest.raises(ConfigError, match=r"trainer\.lr=(nan|inf) is not a finite number"):
        TrainerConfig(lr=value)
    with pytest.raises(ConfigError, match=r"algorithm\.clip_high=(nan|inf) is not a finite number"):
        AlgorithmConfig(clip_high=value)
