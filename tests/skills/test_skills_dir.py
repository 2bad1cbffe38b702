"""teacher.skills_dir: a folder of the user's own skill texts under a library's routing, and its errors."""

import shutil

import pytest

from sdar.config import load_config
from sdar.env_records import Task
from sdar.envs import get_env_spec
from sdar.errors import ConfigError
from sdar.skills.library import SKILL_DIR, library_name, skills_dir_fingerprint, teacher_context

ALFWORLD = get_env_spec("alfworld")
HEAT = Task(task_id="heat-game", task_type="pick_heat_then_place_in_recep", goal="heat some egg")
PICK_TWO = Task(task_id="two-game", task_type="pick_two_obj_and_place", goal="put two pens in a drawer")


def own_skills(folder, skip=()):
    """One file per skill of the alfworld library, each saying which file it is."""
    folder.mkdir()
    for path in sorted((SKILL_DIR / "alfworld").glob("*.md")):
        if path.stem not in skip:
            (folder / path.name).write_text(f"\n1. Own {path.stem} skill.\n", encoding="utf-8")
    return folder


def test_the_teacher_reads_the_folder_under_the_library_routing(tmp_path):
    folder = own_skills(tmp_path / "release")
    library = library_name(ALFWORLD, "", str(folder))
    assert library == f"alfworld@{folder.resolve()}"
    assert teacher_context(library, HEAT) == "1. Own general skill.\n\n1. Own heat skill."
    assert teacher_context(library, PICK_TWO) == (
        "1. Own general skill.\n\n1. Own pick skill.\n\n1. Own pick_two skill."
    )
    assert library_name(ALFWORLD, "", str(folder)) == library  # a second run in the process: the same one
    assert "Own" not in teacher_context("alfworld", HEAT)  # the built-in library keeps its own texts
    assert library_name(ALFWORLD, "") == "alfworld"


def test_a_missing_folder_is_one_line_naming_it(tmp_path):
    with pytest.raises(ConfigError, match=r"teacher.skills_dir=.*nowhere' is not a folder") as error:
        library_name(ALFWORLD, "", str(tmp_path / "nowhere"))
    assert "\n" not in str(error.value)


def test_a_task_type_without_its_file_is_named_with_the_file(tmp_path):
    folder = own_skills(tmp_path / "release", skip=("heat",))
    with pytest.raises(ConfigError) as error:
        library_name(ALFWORLD, "", str(folder))
    message = str(error.value)
    assert f"{folder.resolve() / 'heat.md'} is missing" in message and "add that file" in message
    assert "pick_heat_then_place_in_recep" in message and "\n" not in message
    general = own_skills(tmp_path / "no-general", skip=("general",))
    with pytest.raises(ConfigError, match="general.md is missing, and every task read"):
        library_name(ALFWORLD, "", str(general))


def test_an_empty_skill_file_is_named(tmp_path):
    folder = own_skills(tmp_path / "release")
    (folder / "cool.md").write_text("  \n\n", encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        library_name(ALFWORLD, "", str(folder))
    message = str(error.value)
    assert f"{folder.resolve() / 'cool.md'} is empty; write skill 'cool' into it" in message
    assert "\n" not in message


def test_a_library_that_reads_no_file_needs_none(tmp_path):
    (tmp_path / "empty").mkdir()
    assert library_name(ALFWORLD, "alfworld-places", str(tmp_path / "empty")).startswith("alfworld-places@")


def test_the_config_field_and_the_sft_key_follow_the_folder_texts(tmp_path):
    from sdar.training.sft import warm_start_key

    folder = own_skills(tmp_path / "release")
    config = load_config("smoke", [f"teacher.skills_dir={folder}"])
    assert config.teacher.skills_dir == str(folder)
    key = warm_start_key(config)
    assert key != warm_start_key(load_config("smoke"))
    copy = shutil.copytree(folder, tmp_path / "elsewhere")
    assert warm_start_key(load_config("smoke", [f"teacher.skills_dir={copy}"])) == key  # texts, not the path
    (folder / "heat.md").write_text("1. Another heat skill.\n", encoding="utf-8")
    assert skills_dir_fingerprint(folder) != skills_dir_fingerprint(copy)
    assert warm_start_key(config) != key


def test_a_training_run_teacher_reads_the_folder_and_logs_history_cuts(tmp_path):
    pytest.importorskip("alfworld")
    import json

    from sdar.training.trainer import Trainer

    folder = own_skills(tmp_path / "release")
    overrides = [
        f"teacher.skills_dir={folder}", "algorithm.method=sdar", "trainer.steps=1",
        "rollout.tasks_per_step=1", "rollout.group_size=2", "env.max_turns=2", "rollout.max_new_tokens=16",
        "trainer.save_every=0", "trainer.eval_at_ends=false",
    ]  # fmt: skip
    trainer = Trainer(load_config("smoke", overrides), tmp_path / "run")
    try:
        (metrics,) = trainer.train()
    finally:
        trainer.close()
    sample = json.loads((tmp_path / "run" / "samples.jsonl").read_text().splitlines()[0])
    assert sample["skills"].startswith("1. Own general skill.\n\n1. Own ")
    cuts = [metrics.get(f"train/prompts_history_cut{suffix}") for suffix in ("", "_by_reserve")]
    assert all(isinstance(count, int) for count in cuts), cuts  # logged every step
