"""Evaluation on fixed panels: scripted and model policies, determinism, summaries, checkpoints, the CLI."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from sdar.cli import main
from sdar.config import load_config
from sdar.envs import env_factory, make_env
from sdar.envs.policies import run_episodes
from sdar.envs.pool import EnvPool
from sdar.errors import ConfigError
from sdar.evaluation import (
    EpisodeRecord,
    Panel,
    PerEpisodeRandomPolicy,
    build_panel,
    evaluate,
    load_trainable_weights,
    panel_fingerprint,
    portable_task_id,
    print_summary,
    resolve_checkpoint,
    summarize,
)
from sdar.models import load_model

pytest.importorskip("alfworld")

# smoke: tiny model, alfworld-gen with 12 train / 6 valid games (one per task type), in-process envs
FAST_MODEL = ["eval.policy=model", "eval.split=valid", "eval.num_tasks=2", "env.max_turns=2"]
FAST_MODEL += ["rollout.max_new_tokens=12"]
TRAIN_ONE_STEP = ["trainer.steps=1", "rollout.tasks_per_step=1", "rollout.group_size=2", "env.max_turns=2"]
TRAIN_ONE_STEP += ["rollout.max_new_tokens=12", "trainer.save_every=1"]


def smoke(*overrides):
    return load_config("smoke", list(overrides))


def without_timing(summary: dict) -> dict:
    return {key: value for key, value in summary.items() if key != "timing"}


def read_episodes(directory) -> list[dict]:
    return [json.loads(line) for line in (directory / "episodes.jsonl").read_text().splitlines()]


# ---- panels -----------------------------------------------------------------------------------------------
def test_panel_is_the_first_tasks_in_env_order_with_a_portable_fingerprint():
    ids = [f"/home/a/cache/alfworld-gen/key/task{i}/trial" for i in range(5)]
    moved = [task_id.replace("/home/a/cache", "/other/place") for task_id in ids]
    panel = build_panel(lambda split: ids, "alfworld-gen", "valid", num_tasks=3)
    assert panel.task_ids == tuple(ids[:3]) and panel.available == 5
    assert panel.name == "alfworld-gen/valid[:3]"
    assert build_panel(lambda split: ids, "alfworld-gen", "valid").name == "alfworld-gen/valid"
    assert portable_task_id(ids[0]) == "key/task0/trial"
    assert portable_task_id("valid_seen/task/trial_1") == "valid_seen/task/trial_1"
    assert panel_fingerprint(ids) == panel_fingerprint(moved)  # machine-independent
    assert panel_fingerprint(ids) != panel_fingerprint(ids[::-1])  # order is part of the panel
    assert len(panel.fingerprint) == 16 and panel.describe()["size"] == 3


def test_a_spread_panel_keeps_every_task_type_of_a_split_listed_by_type():
    """ALFWorld lists valid_seen grouped by type: its first tasks are one type, a spread subset covers all."""
    types = ["look", "pick", "clean", "heat", "cool", "pick2"]
    ids = [f"valid_seen/{kind}-{i}/trial" for kind in types for i in range(10)]
    panel = build_panel(lambda split: ids, "alfworld", "valid_seen", num_tasks=12, spread=True)
    assert panel.name == "alfworld/valid_seen[12 spread]" and panel.available == 60
    assert panel.task_ids == tuple(ids[::5]) and panel.task_ids[0] == ids[0]
    assert {task_id.split("/")[1].split("-")[0] for task_id in panel.task_ids} == set(types)
    first = build_panel(lambda split: ids, "alfworld", "valid_seen", num_tasks=12)
    assert {task_id.split("-")[0] for task_id in first.task_ids} == {"valid_seen/look", "valid_seen/pick"}
    assert panel.fingerprint != first.fingerprint
    uneven = build_panel(lambda split: ids[:7], "alfworld", "valid_seen", num_tasks=3, spread=True)
    assert uneven.task_ids == (ids[0], ids[2], ids[4])  # floor(i * 7 / 3)
    whole = build_panel(lambda split: ids, "alfworld", "valid_seen", num_tasks=60, spread=True)
    assert whole.task_ids == tuple(ids) and whole.name == "alfworld/valid_seen"


def test_unknown_split_is_a_config_error_listing_the_env_splits(tmp_path):
    with pytest.raises(ConfigError, match="alfworld-gen has splits train, valid, test"):
        evaluate(smoke("eval.policy=random", "eval.split=valid_seen"), output_dir=tmp_path)


def test_bad_seeds_and_checkpoint_arguments_fail_early(tmp_path):
    with pytest.raises(ConfigError, match="repeats"):
        evaluate(smoke("eval.policy=random", "eval.split=valid", "eval.seeds=[1,1]"), output_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="neither a run directory"):
        resolve_checkpoint(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        resolve_checkpoint(tmp_path)


def test_cli_eval_refuses_a_missing_checkpoint_before_announcing_an_output(tmp_path, capsys):
    assert main(["eval", "smoke", "--checkpoint", str(tmp_path / "missing")]) != 0
    error = capsys.readouterr().err
    assert "neither a run directory" in error and "evaluating into" not in error


# ---- summaries --------------------------------------------------------------------------------------------
def test_summary_means_and_population_std_over_seeds_and_per_type_counts():
    def record(seed, task, task_type, won, valid):
        return EpisodeRecord(seed, task, task_type, won, len(valid), ["look"] * len(valid), valid=valid)

    records = [
        record(0, "a", "pick_and_place_simple", True, [True, False]),
        record(0, "b", "look_at_obj_in_light", False, [True]),
        record(1, "a", "pick_and_place_simple", True, [True, True, True]),
        record(1, "b", "look_at_obj_in_light", True, [False]),
    ]
    panel = Panel("alfworld-gen", "valid", ("a", "b"), 2)
    summary = summarize(records, [0, 1], panel, ("look_at_obj_in_light", "pick_and_place_simple"))
    assert summary["success_rate"] == 0.75 and summary["success_rate_std"] == 0.25
    assert [entry["success_rate"] for entry in summary["per_seed"]] == [0.5, 1.0]
    assert list(summary["per_task_type"]) == ["look_at_obj_in_light", "pick_and_place_simple"]  # env order
    look = summary["per_task_type"]["look_at_obj_in_light"]
    assert look == {"label": "Look", "tasks": 1, "episodes": 2, "won": 1, "success_rate": 0.5, "metrics": {}}
    assert summary["valid_action_ratio"] == 5 / 7 and summary["mean_turns"] == 7 / 4
    assert summary["admissible_action_ratio"] is None  # no record says whether its actions were admissible
    assert summary["episodes"] == 4 and summary["won"] == 3
    assert summary["metrics"] == {}
    records[0] = dataclasses.replace(records[0], admissible=[True, False])
    records[2] = dataclasses.replace(records[2], admissible=[True, False, False])
    assert summarize(records, [0, 1], panel)["admissible_action_ratio"] == 2 / 5  # over the turns that say


def test_env_metrics_average_per_seed_and_type_and_count_a_missing_metric_as_zero():
    def record(seed, task, task_type, metrics):
        return EpisodeRecord(seed, task, task_type, False, 1, ["x"], metrics=metrics)

    records = [
        record(0, "a", "apparel", {"score": 0.5}),
        record(0, "b", "other", {"score": 1.0, "f1": 0.4}),
        record(1, "a", "apparel", {}),  # e.g. an episode that ended on an env error
        record(1, "b", "other", {"score": 0.25}),
    ]
    summary = summarize(records, [0, 1], Panel("webshop", "test", ("a", "b"), 2))
    assert [entry["metrics"] for entry in summary["per_seed"]] == [
        {"f1": 0.2, "score": 0.75},
        {"score": 0.125},
    ]
    assert summary["metrics"]["score"] == {"mean": 0.4375, "std": 0.3125}
    assert summary["metrics"]["f1"] == {"mean": 0.1, "std": 0.1}
    assert summary["per_task_type"]["apparel"]["metrics"] == {"score": 0.25}
    assert summary["per_task_type"]["other"]["metrics"] == {"f1": 0.2, "score": 0.625}


# ---- scripted policies ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_expert_solves_the_generated_panel_and_the_summary_has_every_field(tmp_path, capsys):
    config = smoke("eval.policy=expert", "eval.split=valid", "env.max_turns=50")
    summary = evaluate(config, output_dir=tmp_path)
    assert summary["success_rate"] == 1.0 and summary["success_rate_std"] == 0.0
    expected = [
        "panel", "seeds", "success_rate", "success_rate_std", "per_seed", "per_task_type", "episodes",
        "won", "mean_turns", "valid_action_ratio", "failed_episodes", "policy", "seed_independent", "config",
        "timing",
    ]  # fmt: skip
    assert [key for key in expected if key not in summary] == []
    assert summary["panel"]["name"] == "alfworld-gen/valid" and summary["panel"]["size"] == 6
    assert summary["policy"] == "expert" and summary["valid_action_ratio"] is None
    assert summary["config"]["eval"]["policy"] == "expert"
    per_type = summary["per_task_type"]
    assert len(per_type) == 6 and sum(entry["tasks"] for entry in per_type.values()) == 6
    assert sum(entry["episodes"] for entry in per_type.values()) == summary["episodes"] == 6
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    episodes = read_episodes(tmp_path)
    env = make_env(config.env)
    try:
        assert [e["task_id"] for e in episodes] == env.task_ids("valid")  # the env's order, whole split
    finally:
        env.close()
    assert all(e["won"] and e["turns"] == len(e["actions"]) > 0 for e in episodes)
    assert summary["panel"]["fingerprint"] == panel_fingerprint([e["task_id"] for e in episodes])
    print_summary(summary)
    shown = capsys.readouterr().out
    assert "Pick2" in shown and "100.0" in shown and summary["panel"]["fingerprint"] in shown


@pytest.mark.slow
def test_random_policy_is_deterministic_per_seed_and_independent_of_slots(tmp_path):
    config = smoke("eval.policy=random", "eval.split=valid", "eval.num_tasks=2", "eval.seeds=[0,1]")
    first = evaluate(config, output_dir=tmp_path / "a")
    second = evaluate(config, output_dir=tmp_path / "b")
    assert without_timing(first) == without_timing(second)
    episodes = read_episodes(tmp_path / "a")
    assert episodes == read_episodes(tmp_path / "b") and len(episodes) == 4
    by_seed = {seed: [e["actions"] for e in episodes if e["seed"] == seed] for seed in (0, 1)}
    assert by_seed[0] != by_seed[1]  # each seed has its own streams
    assert first["seed_independent"] is False and first["episodes"] == 4
    # the same streams on a pool with more slots (episodes interleaved differently)
    ids = [e["task_id"] for e in episodes if e["seed"] == 0]
    with EnvPool(env_factory(config.env), num_slots=2, num_workers=0) as pool:
        outcomes = run_episodes(pool, PerEpisodeRandomPolicy(0), ids, max_turns=config.env.max_turns)
    assert [list(outcome.actions) for outcome in outcomes] == by_seed[0]


# ---- the model policy -------------------------------------------------------------------------------------
def test_model_policy_runs_and_two_runs_are_identical(tmp_path):
    config = smoke(*FAST_MODEL, "eval.temperature=0.4", "eval.seeds=[3]")
    first = evaluate(config, output_dir=tmp_path / "a")
    second = evaluate(config, output_dir=tmp_path / "b")
    assert without_timing(first) == without_timing(second)
    episodes = read_episodes(tmp_path / "a")
    assert episodes == read_episodes(tmp_path / "b")
    assert len(episodes) == 2 and all(e["seed"] == 3 for e in episodes)
    assert all(len(e["replies"]) == len(e["valid"]) == len(e["actions"]) == e["turns"] for e in episodes)
    assert all(len(e["admissible"]) == e["turns"] for e in episodes)  # ALFWorld lists admissible actions
    assert 0.0 <= first["valid_action_ratio"] <= 1.0 and first["temperature"] == 0.4
    assert 0.0 <= first["admissible_action_ratio"] <= first["valid_action_ratio"]
    assert first["model"] == "tiny" and first["checkpoint"] is None
    other_seed = evaluate(
        smoke(*FAST_MODEL, "eval.temperature=0.4", "eval.seeds=[4]"), output_dir=tmp_path / "c"
    )
    assert [e["replies"] for e in read_episodes(tmp_path / "c")] != [e["replies"] for e in episodes]
    assert other_seed["panel"] == first["panel"]


def test_greedy_model_is_played_once_and_stands_for_every_seed(tmp_path):
    summary = evaluate(smoke(*FAST_MODEL, "eval.temperature=0", "eval.seeds=[0,1]"), output_dir=tmp_path)
    assert summary["seed_independent"] is True and summary["success_rate_std"] == 0.0
    episodes = read_episodes(tmp_path)
    assert [e["seed"] for e in episodes] == [0, 0, 1, 1]
    assert [e["replies"] for e in episodes[:2]] == [e["replies"] for e in episodes[2:]]


# ---- checkpoints ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A smoke run of one training step with a checkpoint, and its trained trainable weights."""
    from sdar.training.trainer import Trainer

    run_dir = tmp_path_factory.mktemp("trained") / "run"
    trainer = Trainer(load_config("smoke", [*TRAIN_ONE_STEP, "trainer.lr=1e-2"]), run_dir)
    try:
        trainer.train()
        weights = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    finally:
        trainer.close()
    return run_dir, weights


@pytest.mark.slow
def test_checkpoint_from_a_run_dir_or_a_checkpoint_dir_loads_the_trained_weights(tmp_path, trained_run):
    run_dir, trained = trained_run
    checkpoint = resolve_checkpoint(run_dir)
    assert checkpoint == run_dir / "checkpoints" / "step_000001" == resolve_checkpoint(checkpoint)
    model, _ = load_model(load_config("smoke").model)
    changed = [name for name, p in model.named_parameters() if not torch.equal(p, trained[name])]
    assert changed  # the step moved the weights (lr 1e-2)
    assert load_trainable_weights(checkpoint, model) == len(trained)
    assert all(torch.equal(p, trained[name]) for name, p in model.named_parameters())

    config = smoke(*FAST_MODEL)
    summary = evaluate(config, output_dir=tmp_path / "run", checkpoint=run_dir)
    assert summary["checkpoint"] == {"path": checkpoint.resolve().as_posix(), "step": 1}
    again = evaluate(config, output_dir=tmp_path / "ckpt", checkpoint=checkpoint)
    assert without_timing(summary) == without_timing(again)
    assert read_episodes(tmp_path / "run") == read_episodes(tmp_path / "ckpt")
    evaluate(config, output_dir=tmp_path / "base")
    assert [e["replies"] for e in read_episodes(tmp_path / "base")] != [
        e["replies"] for e in read_episodes(tmp_path / "run")
    ]  # the trained weights were used


@pytest.mark.slow
def test_checkpoint_of_another_model_shape_is_refused(tmp_path, trained_run):
    run_dir, _ = trained_run
    with pytest.raises(ConfigError, match=r"model.lora_rank=0 \(eval config: 4\)"):
        evaluate(smoke(*FAST_MODEL, "model.lora_rank=4"), output_dir=tmp_path, checkpoint=run_dir)
    with pytest.raises(ConfigError, match="only used by eval.policy=model"):
        evaluate(smoke("eval.policy=random", "eval.split=valid"), output_dir=tmp_path, checkpoint=run_dir)
    lora, _ = load_model(load_config("smoke", ["model.lora_rank=4"]).model)
    with pytest.raises(ValueError, match="wrong model/LoRA"):
        load_trainable_weights(resolve_checkpoint(run_dir), lora)


# ---- the command line -------------------------------------------------------------------------------------
def test_cli_eval_writes_results_and_prints_the_table(tmp_path, capsys):
    output = tmp_path / "out"
    arguments = ["eval", "smoke", "eval.policy=random", "--output", str(output), "eval.split=valid"]
    assert main([*arguments, "eval.num_tasks=2", "env.max_turns=1"]) == 0
    summary = json.loads((output / "summary.json").read_text())
    assert summary["policy"] == "random" and summary["panel"]["name"] == "alfworld-gen/valid[:2]"
    assert "Avg" in capsys.readouterr().out
    assert main(["eval"]) == 2
    assert "needs a CONFIG" in capsys.readouterr().err
    assert main(["eval", "smoke", "eval.split=nope", "--output", str(output)]) == 2
    assert "eval.split='nope'" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_eval_of_a_run_uses_the_run_config(tmp_path, trained_run, capsys):
    run_dir, _ = trained_run
    output = tmp_path / "out"
    overrides = ["eval.split=valid", "eval.num_tasks=1", "rollout.max_new_tokens=8"]
    assert main(["eval", "--checkpoint", str(run_dir), "--output", str(output), *overrides]) == 0
    summary = json.loads((output / "summary.json").read_text())
    assert summary["checkpoint"]["step"] == 1 and summary["config"]["trainer"]["lr"] == 1e-2
    assert summary["panel"]["size"] == 1


def test_student_skills_put_the_routed_skill_text_into_the_model_prompt(tmp_path):
    """eval.student_skills (the Skill-Prompt baseline) shows the student what the teacher sees."""
    from sdar.skills import teacher_context

    overrides = ["eval.num_tasks=2", "env.max_turns=1", "rollout.max_new_tokens=4", "eval.temperature=0"]
    plain = evaluate(load_config("smoke", overrides), output_dir=tmp_path / "plain")
    skilled = evaluate(
        load_config("smoke", [*overrides, "eval.student_skills=true"]), output_dir=tmp_path / "skills"
    )
    assert plain["panel"] == skilled["panel"]
    config = load_config("smoke", overrides)
    env = make_env(config.env)
    try:
        task, _ = env.reset(env.task_ids("valid")[0])
    finally:
        env.close()

    def first_prompts(name):
        lines = (tmp_path / name / "episodes.jsonl").read_text().splitlines()
        return [json.loads(line)["first_prompt"] for line in lines]

    skill_line = teacher_context("alfworld", task).splitlines()[0]
    assert skill_line in first_prompts("skills")[0]
    assert all(skill_line not in prompt for prompt in first_prompts("plain"))


def test_under_several_teachers_the_policy_reads_the_skills_of_the_context_eval_names():
    from sdar.envs import get_env_spec
    from sdar.evaluation.evaluate import _student_skills
    from sdar.skills import library_name, teacher_context

    contexts = "teacher.contexts={places: {skill_library: alfworld-places}, plain: {skills: false}}"
    config = load_config("smoke", [contexts, "eval.student_skills=true", "eval.teacher_context=places"])
    env = make_env(config.env)
    try:
        task, _ = env.reset(env.task_ids("valid")[0])
    finally:
        env.close()
    places = library_name(get_env_spec(config.env.name), "alfworld-places", "")
    assert _student_skills(config)(task) == teacher_context(places, task) != teacher_context("alfworld", task)
    assert _student_skills(load_config("smoke", ["eval.student_skills=true"]))(task) == teacher_context(
        "alfworld", task
    )
    for overrides, message in [
        ([contexts, "eval.student_skills=true"], "name the one whose skills .*one of: places, plain"),
        ([contexts, "eval.student_skills=true", "eval.teacher_context=plain"], "reads no skills"),
        ([contexts, "eval.student_skills=true", "eval.teacher_context=nope"], "not a context"),
        ([contexts, "eval.teacher_context=places"], "only with eval.student_skills=true"),
        (["eval.student_skills=true", "eval.teacher_context=places"], "teacher.contexts names none"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_config("smoke", overrides)


def test_search_qa_average_is_the_plain_mean_of_the_datasets():
    """Spec §7: ALFWorld/WebShop Avg = over all episodes; Search-QA Avg = the mean of the datasets."""
    records = [EpisodeRecord(0, f"nq{i}", "nq", i < 3, 1, ["x"]) for i in range(4)]
    records.append(EpisodeRecord(0, "b0", "bamboogle", False, 1, ["x"]))
    panel = Panel("search-qa", "test", tuple(r.task_id for r in records), 5)
    pooled = summarize(records, [0], panel)
    assert pooled["average"] == {"over": "episodes", "mean": 0.6, "std": 0.0}
    by_dataset = summarize(records, [0], panel, average="task_types")
    assert by_dataset["average"] == {"over": "task_types", "mean": (0.75 + 0.0) / 2, "std": 0.0}
    assert by_dataset["success_rate"] == 0.6  # the pooled rate stays reported
    with pytest.raises(ValueError, match="choose one of episodes, task_types"):
        summarize(records, [0], panel, average="datasets")
