"""Plugins (sdar/plugins.py): your own env and skills named in a config; examples/lockbox end to end."""

import json
import math
from pathlib import Path

import pytest

from sdar.config import load_config
from sdar.envs import get_env_spec, make_env
from sdar.errors import ConfigError

LOCKBOX = Path(__file__).parents[1] / "examples" / "lockbox" / "config.yaml"

PLUGIN = """
from sdar.envs import EnvSpec, register_env
from sdar.envs.alfworld.prompts import build_alfworld_prompt
from sdar.envs.replies import parse_action_reply

IMPORTS = globals().get("IMPORTS", 0) + 1
register_env(EnvSpec("{name}", dict, "a test plugin", build_alfworld_prompt, parse_action_reply))
"""


def write_plugin(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(PLUGIN.replace("{name}", name))
    return folder / f"{name}.py"


def test_a_file_plugin_is_found_from_its_yaml_file_imported_once_and_saved_by_absolute_path(tmp_path):
    plugin = write_plugin(tmp_path / "plugins", "plugin_from_yaml")
    config_file = tmp_path / "configs" / "mine.yaml"
    config_file.parent.mkdir()
    yaml = "plugins: [../plugins/plugin_from_yaml.py]\nbase: smoke\nenv: {name: plugin_from_yaml}\n"
    config_file.write_text(yaml)
    config = load_config(str(config_file))
    assert config.plugins == (str(plugin.resolve()),)
    assert get_env_spec("plugin_from_yaml").description == "a test plugin"
    again = load_config(str(config_file))  # imported once: registering twice would raise
    import plugin_from_yaml

    assert again.plugins == config.plugins and plugin_from_yaml.IMPORTS == 1


def test_a_plugin_named_in_an_override_is_relative_to_the_working_directory(tmp_path, monkeypatch):
    write_plugin(tmp_path, "plugin_from_override")
    monkeypatch.chdir(tmp_path)
    config = load_config("smoke", ["plugins=[plugin_from_override.py]", "env.name=plugin_from_override"])
    assert config.plugins == (str(tmp_path.resolve() / "plugin_from_override.py"),)


def test_bad_plugins_are_named_in_the_error(tmp_path):
    with pytest.raises(ConfigError, match="there is no file .*missing.py"):
        load_config("smoke", [f"plugins=[{tmp_path / 'missing.py'}]"])
    with pytest.raises(ConfigError, match="no module 'no_such_plugin_module' on sys.path"):
        load_config("smoke", ["plugins=[no_such_plugin_module]"])
    clash = tmp_path / "json.py"  # a plugin file named like a module already imported elsewhere
    clash.write_text("")
    with pytest.raises(ConfigError, match="a module named 'json' is already imported .* rename the plugin"):
        load_config("smoke", [f"plugins=[{clash}]"])
    with pytest.raises(ConfigError, match="plugins must be a list"):
        (tmp_path / "bad.yaml").write_text("plugins: lockbox.py\n")
        load_config(str(tmp_path / "bad.yaml"))
    broken = write_plugin(tmp_path / "broken", "plugin_with_a_missing_import")
    broken.write_text("import a_package_the_plugin_needs\n")
    with pytest.raises(ModuleNotFoundError, match="a_package_the_plugin_needs"):  # the user's own traceback
        load_config("smoke", [f"plugins=[{broken}]"])


def test_the_lockbox_example_is_solvable_routes_its_skills_and_trains_with_env_workers(tmp_path):
    from sdar.evaluation import evaluate
    from sdar.skills.library import teacher_context
    from sdar.training.trainer import Trainer

    config = load_config(str(LOCKBOX), ["eval.num_tasks=8"])
    expert = evaluate(load_config(str(LOCKBOX), ["eval.policy=expert"]), output_dir=tmp_path / "expert")
    randomly = evaluate(load_config(str(LOCKBOX), ["eval.policy=random"]), output_dir=tmp_path / "random")
    assert expert["success_rate"] == 1.0 and randomly["success_rate"] < 0.5
    assert sorted(expert["per_task_type"]) == ["blue", "gold", "green", "red"]

    env = make_env(config.env)
    task, first = env.reset("train-3")  # index 3: red
    assert task.task_type == "red" and "search rug" in first.admissible_actions
    skills = teacher_context("lockbox", task)
    assert skills.startswith("## General skills (lockbox rooms)") and "under the rug" in skills
    assert "rug" not in env.step("open red chest").observation  # locked: the student is not told where

    run_dir = tmp_path / "run"
    trainer = Trainer(load_config(str(LOCKBOX), ["env.workers=1", "trainer.steps=1"]), run_dir)
    try:  # env.workers=1: a spawned worker process must import the plugin to build the env
        (metrics,) = trainer.train()
    finally:
        trainer.close()
    assert all(math.isfinite(v) for k, v in metrics.items() if k.startswith("loss/"))
    assert 0.0 < metrics["distill/gate_mean"] < 1.0
    saved = load_config(str(run_dir / "config.yaml"))  # what --resume and `sdar eval RUN` read
    assert saved.plugins == (str(LOCKBOX.parent.resolve() / "lockbox.py"),)
    sample = json.loads((run_dir / "samples.jsonl").read_text().splitlines()[0])
    assert "usually kept" in sample["skills"]


def test_template_prompt_builds_an_env_prompt_from_your_own_files(tmp_path):
    from sdar.envs import Task, template_prompt

    (tmp_path / "first_turn.txt").write_text("Goal: {task}\nSeen: {observation}\n{admissible_actions}\n")
    (tmp_path / "with_history.txt").write_text("Goal: {task}\n{history}\nNow {current_step}: {observation}\n")
    build = template_prompt(tmp_path)
    task = Task("t-0", "red", "open the red chest")
    first = build(task, "a rug", ["search rug"], [], 0)
    assert first == "Goal: open the red chest\nSeen: a rug\n- search rug"
    later = build(task, "nothing", ["search rug"], [("a rug", "search rug")], 1)
    history = "[Observation 1: 'a rug', Action 1: 'search rug']"
    assert later == f"Goal: open the red chest\n{history}\nNow 2: nothing"
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "first_turn.txt").write_text("{goal}")
    (bad / "with_history.txt").write_text("{task}")
    with pytest.raises(ValueError, match=r"unknown placeholder\(s\) \{goal\}"):
        template_prompt(bad)


def test_sdar_envs_lists_the_envs_of_a_configs_plugins(capsys):
    from sdar.cli import main

    assert main(["envs", str(LOCKBOX)]) == 0
    assert "lockbox          find the key, open the chest" in capsys.readouterr().out
