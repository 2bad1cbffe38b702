"""End-to-end training on the tiny model and generated ALFWorld games: every method, the run directory."""

import json
import math
import shutil

import pytest
import torch
from safetensors.torch import load_file

from sdar.config import load_config
from sdar.errors import ActionableError
from sdar.models.trained import WEIGHTS
from sdar.training.trainer import Trainer

pytest.importorskip("alfworld")

FAST = [
    "trainer.steps=1",
    "rollout.tasks_per_step=1",
    "rollout.group_size=2",
    "env.max_turns=2",
    "rollout.max_new_tokens=16",
    "trainer.save_every=1",
    "trainer.eval_at_ends=false",
]


def run(tmp_path, *overrides):
    config = load_config("smoke", [*FAST, *overrides])
    trainer = Trainer(config, tmp_path / "run")
    try:
        history = trainer.train()
    finally:
        trainer.close()
    return history, tmp_path / "run"


@pytest.mark.parametrize("method", ["grpo", "sdar", "grpo_opsd", "opsd", "skill_sd", "rlsd", "skill_grpo"])
def test_every_method_trains_two_steps_with_finite_losses(tmp_path, method):
    history, run_dir = run(tmp_path, f"algorithm.method={method}", "trainer.steps=2")
    assert [metrics["step"] for metrics in history] == [1, 2]
    for metrics in history:
        losses = {key: value for key, value in metrics.items() if key.startswith("loss/")}
        assert losses and all(math.isfinite(value) for value in losses.values())
    metrics = history[-1]
    if method == "grpo":
        assert "loss/distill" not in metrics and "distill/gate_mean" not in metrics
        assert "time/teacher_s" not in metrics  # GRPO never pays for a teacher pass
    if method == "grpo_opsd":
        assert metrics["distill/gate_mean"] == 0.5
    if method == "sdar":
        assert 0.0 < metrics["distill/gate_mean"] < 1.0 and "distill/gap_by_turn" in metrics
    if method == "opsd":
        assert "loss/policy" not in metrics and "loss/distill" in metrics
    if method in ("sdar", "grpo_opsd", "opsd", "skill_sd"):
        assert "loss/distill" in metrics


def test_run_directory_holds_config_metrics_checkpoint_and_samples(tmp_path):
    _, run_dir = run(tmp_path, "algorithm.method=sdar")
    assert load_config(str(run_dir / "config.yaml")).algorithm.beta == 5.0
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["seed"] == 0 and "torch" in info["versions"] and "resumed" not in info
    assert info["machine"]["threads"] == torch.get_num_threads() and info["machine"]["cpu"]
    assert info["machine"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert len(info["code"]["commit"]) == 40 and isinstance(info["code"]["dirty"], bool)  # a git checkout
    (line,) = (run_dir / "metrics.jsonl").read_text().splitlines()
    metrics = json.loads(line)
    required = [
        "step", "train/won_rate", "train/return_mean", "train/valid_action_ratio",
        "train/admissible_action_ratio", "loss/policy", "loss/kl",
        "distill/gate_mean", "distill/gap_mean", "distill/gap_std", "distill/positive_gap_ratio",
        "time/rollout_s", "time/teacher_s", "time/update_s", "time/step_s",
    ]  # fmt: skip
    assert [key for key in required if key not in metrics] == []
    assert (run_dir / "checkpoints" / "latest").read_text() == "step_000001"
    sample = json.loads((run_dir / "samples.jsonl").read_text().splitlines()[0])
    turn = sample["turns"][0]
    assert len(turn["tokens"]) == len(turn["gap"]) == len(turn["gate"]) > 0
    assert isinstance(turn["observation"], str) and "General skills" in sample["skills"]  # for `sdar view`
    assert isinstance(turn["admissible"], bool)  # ALFWorld lists its admissible actions


def test_keep_last_leaves_the_newest_checkpoint(tmp_path):
    _, run_dir = run(tmp_path, "trainer.steps=2", "trainer.keep_last=1")
    assert sorted(path.name for path in (run_dir / "checkpoints").iterdir()) == ["latest", "step_000002"]


def test_panel_evaluations_before_and_after_match_sdar_eval_of_the_saved_checkpoints(tmp_path):
    """The run's eval/step_0 and eval/final are what `sdar eval` gives for the base model and checkpoint."""
    from sdar.evaluation import evaluate

    ends = ["trainer.eval_at_ends=true", "eval.num_tasks=3", "eval.seeds=[0,1]"]
    _, run_dir = run(tmp_path, "algorithm.method=sdar", *ends)
    config = load_config(str(run_dir / "config.yaml"))
    for label, checkpoint, step in (("step_0", None, 0), ("final", run_dir, 1)):
        recorded = json.loads((run_dir / "eval" / label / "summary.json").read_text())
        assert recorded["checkpoint"]["step"] == step and recorded["panel"]["size"] == 3
        assert [entry["seed"] for entry in recorded["per_seed"]] == [0, 1]
        again = evaluate(config, output_dir=tmp_path / label, checkpoint=checkpoint)
        assert again["per_seed"] == recorded["per_seed"]
        episodes = (run_dir / "eval" / label / "episodes.jsonl").read_text()
        assert (tmp_path / label / "episodes.jsonl").read_text() == episodes


def test_periodic_evaluations_write_eval_dirs_and_log_their_success(tmp_path):
    """eval_every=1 over 2 steps: eval/step_1, then the last step's is eval/final; no step_0 when off."""
    every = ["trainer.eval_every=1", "trainer.eval_at_ends=true", "trainer.eval_at_start=false"]
    history, run_dir = run(tmp_path, "algorithm.method=grpo", "trainer.steps=2", "eval.num_tasks=2", *every)
    assert sorted(path.name for path in (run_dir / "eval").iterdir()) == ["final", "step_1"]
    for metrics, label in zip(history, ("step_1", "final"), strict=True):
        summary = json.loads((run_dir / "eval" / label / "summary.json").read_text())
        assert summary["checkpoint"]["step"] == metrics["step"]
        assert summary["checkpoint"]["path"].endswith(f"step_{metrics['step']:06d}")
        assert metrics["val/won_rate"] == summary["success_rate"] and metrics["val/episodes"] == 2
    logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [entry["val/won_rate"] for entry in logged] == [m["val/won_rate"] for m in history]


def test_a_non_finite_loss_is_logged_then_stops_the_run_before_evaluating_or_saving(tmp_path, monkeypatch):
    from sdar.training.trainer import StepResult

    config = load_config("smoke", [*FAST, "trainer.eval_every=1", "trainer.eval_at_ends=false"])
    trainer = Trainer(config, tmp_path / "run")
    monkeypatch.setattr(
        trainer, "train_step", lambda step: StepResult({"step": step + 1, "loss/policy": math.nan}, [])
    )
    monkeypatch.setattr(trainer, "evaluate_panel", lambda *a: pytest.fail("evaluated a non-finite step"))
    try:
        with pytest.raises(FloatingPointError, match="step 1: a non-finite loss") as stopped:
            trainer.train()
    finally:
        trainer.close()
    assert isinstance(stopped.value, ActionableError)  # the CLI prints it as one line
    assert "(loss/policy)" in str(stopped.value) and "--resume" in str(stopped.value)
    (logged,) = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(logged)["step"] == 1
    assert not (tmp_path / "run" / "checkpoints" / "latest").exists()


def test_a_grpo_step_without_reward_signal_skips_the_old_and_update_passes(tmp_path):
    """The random tiny model loses every episode: every advantage is 0, and without a KL or entropy term the
    objective has no gradient, so the step scores no old log-probs and runs no update pass."""
    grpo = ["algorithm.method=grpo", "algorithm.kl_coef=0", "algorithm.entropy_coef=0"]
    (metrics,), _ = run(tmp_path / "grpo", *grpo, "trainer.skip_zero_gradient=true")
    assert metrics["train/won_rate"] == 0 and metrics["train/advantage_abs_mean"] == 0
    assert metrics["update/without_gradient"] == 1 and "time/old_s" not in metrics
    assert metrics["update/optimizer_steps"] == 0 and metrics["update/zero_gradient_skips"] == 1
    (metrics,), _ = run(tmp_path / "sdar", "algorithm.method=sdar", "algorithm.kl_coef=0")
    assert metrics["train/advantage_abs_mean"] == 0  # no reward signal either, but a distillation term
    assert metrics["update/without_gradient"] == 0 and metrics["update/optimizer_steps"] == 1
    assert metrics["update/old_from_forward"] == 1 and "time/old_s" not in metrics  # one pass: π_old from it


@pytest.mark.parametrize("mini_batch_rows, from_forward", [(1, 0), (8, 1)])
def test_a_grpo_step_scores_old_logprobs_only_of_rows_with_gradient(
    tmp_path, monkeypatch, mini_batch_rows, from_forward
):
    """Every other row with advantage 0 (GRPO, no KL or entropy term): those rows get no old log-probs (left
    0) and no update pass; the other rows' old log-probs are the model's, from the old pass (several
    mini-batches) or from the update's own forward (one)."""
    import sdar.training.trainer as trainer_module
    from sdar.training.update import score_batch

    def every_other_row(algorithm, returns, group_index, episode_index=None):
        advantages = torch.zeros(len(returns))
        advantages[::2] = 1.0
        return advantages

    seen = {}
    update = Trainer._update

    def scored_then_update(self, batch, step, **options):
        seen["batch"] = batch
        seen["every_row"], _ = score_batch(self.model, batch, micro_batch_rows=len(batch))
        return update(self, batch, step, **options)

    monkeypatch.setattr(trainer_module, "advantages_from_config", every_other_row)
    monkeypatch.setattr(Trainer, "_update", scored_then_update)
    grpo = ["algorithm.method=grpo", "algorithm.kl_coef=0", "algorithm.entropy_coef=0"]
    (metrics,), _ = run(tmp_path, *grpo, f"trainer.mini_batch_rows={mini_batch_rows}")
    assert metrics["update/old_from_forward"] == from_forward and ("time/old_s" in metrics) != from_forward
    batch, rows = seen["batch"], seen["batch"].advantages != 0
    assert metrics["update/rows_without_gradient"] == int((~rows).sum()) == len(batch) // 2
    assert metrics["update/without_gradient"] == 0 and metrics["update/optimizer_steps"] >= 1
    assert not batch.old_logprobs[~rows].any()
    torch.testing.assert_close(batch.old_logprobs[rows], seen["every_row"][rows], atol=1e-5, rtol=0)


def trained(tmp_path, *overrides) -> tuple[list[dict], dict]:
    """The metrics of a run and its weights after it."""
    trainer = Trainer(load_config("smoke", [*FAST, *overrides]), tmp_path / "run")
    try:
        history = trainer.train()
    finally:
        trainer.close()
    return history, {name: p.detach().clone() for name, p in trainer.model.named_parameters()}


@pytest.mark.parametrize("method", ["sdar", "rlsd"])
def test_a_one_pass_update_trains_as_with_a_separate_old_pass(tmp_path, monkeypatch, method):
    """One mini-batch, one epoch: no old pass, π_old from the update's forward; the same two steps with the
    old pass forced give the same losses (rel 1e-5), weights (1e-6; AdamW lr 1e-4) and samples' gaps."""
    import sdar.training.trainer as trainer_module

    def with_reward_signal(algorithm, returns, group_index, episode_index=None):
        return torch.tensor([1.0, -0.5] * len(returns))[: len(returns)]  # the tiny model wins nothing

    monkeypatch.setattr(trainer_module, "advantages_from_config", with_reward_signal)
    overrides = [f"algorithm.method={method}", "trainer.steps=2", "trainer.save_every=0"]
    history, weights = trained(tmp_path / "forward", *overrides)
    monkeypatch.setattr(trainer_module, "one_on_policy_pass", lambda *args, **kwargs: False)
    old_pass_history, old_pass_weights = trained(tmp_path / "old", *overrides)
    for metrics, old_pass in zip(history, old_pass_history, strict=True):
        assert metrics["update/old_from_forward"] == 1 and "time/old_s" not in metrics
        assert old_pass["update/old_from_forward"] == 0 and old_pass["time/old_s"] > 0
        assert metrics["loss/policy"] != 0
        for key in [key for key in old_pass if key.startswith(("loss/", "distill/gap_mean", "rollout/"))]:
            assert metrics[key] == pytest.approx(old_pass[key], rel=1e-5, abs=1e-6), key
    for name, value in old_pass_weights.items():
        torch.testing.assert_close(weights[name], value, atol=1e-6, rtol=0)
    gaps, old_pass_gaps = (
        [
            gap
            for line in (tmp_path / label / "run" / "samples.jsonl").read_text().splitlines()
            for turn in json.loads(line)["turns"]
            for gap in turn["gap"]
        ]
        for label in ("forward", "old")
    )
    assert gaps and gaps == pytest.approx(old_pass_gaps, abs=2e-4)  # logged rounded to 4 decimals


def test_samples_spread_over_the_step_tasks(tmp_path):
    """trainer.sample_episodes=3 of 2 tasks x 2 episodes: the first episode of each task, then the second of
    the first task, in the order played, each with per-token gap and gate."""
    _, run_dir = run(
        tmp_path, "algorithm.method=sdar", "rollout.tasks_per_step=2", "trainer.sample_episodes=3"
    )
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    tasks = [sample["task_id"] for sample in samples]
    assert len(tasks) == 3 and tasks[0] == tasks[1] != tasks[2]
    for turn in (turn for sample in samples for turn in sample["turns"]):
        assert len(turn["gap"]) == len(turn["gate"]) == len(turn["tokens"]) > 0


def sampled_batch():
    """Episodes of unequal lengths (3, 1, 2, 4 turns; tasks 0, 0, 1, 1) and their batch: every row's
    advantage and gap are the row's index."""
    from sdar.records import Batch, Episode, Task, Turn

    episodes, row = [], 0
    for index, (task, turns) in enumerate([(0, 3), (0, 1), (1, 2), (1, 4)]):
        episode = Episode(Task(f"task-{task}", "pick", "goal"), group_index=task, episode_index=index)
        for turn_index in range(turns):
            episode.turns.append(
                Turn(episode.task, task, index, turn_index, "prompt", [1], [5, 6], "reply", "look", True)
            )
            row += 1
        episodes.append(episode)
    rows = torch.arange(row, dtype=torch.float32)
    batch = Batch(*[None] * 8, advantages=rows, old_logprobs=torch.zeros(row, 2))
    batch.teacher_logprobs = rows[:, None].expand(row, 2).clone()  # gap = the row's index
    return episodes, batch


def test_each_sampled_turn_carries_its_own_batch_row():
    """One episode skipped: each sampled turn's advantage and gap are its own row's."""
    from sdar.algorithms import settings_for_method
    from sdar.training.session import sampled_episodes

    episodes, batch = sampled_batch()
    settings = settings_for_method("sdar")
    samples = sampled_episodes(episodes, batch, settings, limit=2, decode=str)  # episodes 0 and 2
    assert [(sample["task_id"], len(sample["turns"])) for sample in samples] == [("task-0", 3), ("task-1", 2)]
    rows_seen = [turn["advantage"] for sample in samples for turn in sample["turns"]]
    assert rows_seen == [0, 1, 2, 4, 5]  # episode 1's row 3 skipped
    assert [turn["gap"] for sample in samples for turn in sample["turns"]] == [[r, r] for r in rows_seen]


@pytest.mark.parametrize(
    "method, overrides, gate_of_gap",
    [
        ("sdar", {}, lambda gap: round(1 / (1 + math.exp(-5 * gap)), 4)),
        ("sdar", {"beta": 2.0}, lambda gap: round(1 / (1 + math.exp(-2 * gap)), 4)),
        ("grpo_opsd", {}, lambda gap: 0.5),
        ("sdar", {"gate": "entropy"}, None),  # depends on the update's entropy: not logged
        ("skill_sd", {}, None),  # no gate in its term
    ],
)
def test_sampled_turns_log_the_gate_the_update_weighs_with(method, overrides, gate_of_gap):
    from sdar.algorithms import settings_for_method
    from sdar.training.session import sampled_episodes

    episodes, batch = sampled_batch()
    settings = settings_for_method(method, **overrides)
    turns = [
        turn
        for sample in sampled_episodes(episodes, batch, settings, limit=4, decode=str)
        for turn in sample["turns"]
    ]
    assert all(len(turn["gap"]) == 2 for turn in turns)
    if gate_of_gap is None:
        assert all("gate" not in turn for turn in turns)
    else:
        assert [turn["gate"] for turn in turns] == [[gate_of_gap(g) for g in turn["gap"]] for turn in turns]


def test_a_second_trainer_into_a_run_directory_in_use_is_refused_before_loading_a_model(
    tmp_path, monkeypatch
):
    from sdar.locking import DirectoryInUse
    from sdar.training import trainer as trainer_module

    config = load_config("smoke", FAST)
    first = Trainer(config, tmp_path / "run")
    load_model = trainer_module.load_model
    try:
        monkeypatch.setattr(trainer_module, "load_model", lambda *a, **k: pytest.fail("loaded a model"))
        with pytest.raises(DirectoryInUse, match="another training run is writing into this directory"):
            Trainer(config, tmp_path / "run", resume=True)
    finally:
        first.close()  # ended (a killed process's lock goes with it: tests/training/test_resume.py)
    monkeypatch.setattr(trainer_module, "load_model", load_model)
    Trainer(config, tmp_path / "run", resume=True).close()  # the lock was free (nothing saved: from step 0)
    Trainer(config, tmp_path / "run").close()  # and was released again


def test_a_new_run_is_refused_a_directory_holding_another_runs_steps(tmp_path, monkeypatch):
    from sdar.errors import ConfigError
    from sdar.training import trainer as trainer_module

    _, run_dir = run(tmp_path)
    metrics = (run_dir / "metrics.jsonl").read_text()
    monkeypatch.setattr(trainer_module, "load_model", lambda *a, **k: pytest.fail("loaded a model"))
    with pytest.raises(ConfigError, match=r"holds a run \(metrics.jsonl, samples.jsonl, checkpoints up to "):
        Trainer(load_config("smoke", FAST), run_dir)
    shutil.rmtree(run_dir / "checkpoints")
    with pytest.raises(ConfigError, match=r"--resume .*saved no checkpoint yet, so that starts it over"):
        Trainer(load_config("smoke", FAST), run_dir)
    assert (run_dir / "metrics.jsonl").read_text() == metrics  # nothing mixed in


def test_a_run_that_fails_to_start_leaves_no_directory_and_keeps_an_existing_one(tmp_path):
    from sdar.errors import ConfigError

    missing_model = [*FAST, f"model.name={tmp_path / 'no-such-model'}"]
    with pytest.raises(ConfigError):
        Trainer(load_config("smoke", missing_model), tmp_path / "new" / "run")
    assert not (tmp_path / "new" / "run").exists()

    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError):
        Trainer(load_config("smoke", missing_model), existing)
    assert (existing / "notes.txt").read_text() == "mine"


def test_one_process_sharded_run_equals_the_unsharded_run(tmp_path):
    """FSDP over a world of one process (a group made for it) computes what the unsharded trainer does."""
    (plain, _), (sharded, _) = (
        run(tmp_path / name, "trainer.steps=2", *extra)
        for name, extra in (("plain", []), ("sharded", ["trainer.sharding=fsdp"]))
    )
    for line_plain, line_sharded in zip(plain, sharded, strict=True):
        kept = [key for key in line_plain if not key.startswith("time/") and not key.endswith("_s")]
        assert {key: line_plain[key] for key in kept} == {key: line_sharded[key] for key in kept}
    weights = [
        load_file(tmp_path / name / "run" / "checkpoints" / "step_000002" / WEIGHTS)
        for name in ("plain", "sharded")
    ]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])


def test_a_run_that_cannot_fit_its_gpu_is_refused_before_loading_a_model(tmp_path, monkeypatch):
    """trainer.memory_check on a GPU (faked here: an 80 GiB device, a 7B model trained whole on it)."""
    from types import SimpleNamespace

    from sdar.errors import ConfigError
    from sdar.training import trainer as trainer_module
    from sdar.training.distributed import DataParallel

    monkeypatch.setattr(
        torch.cuda, "get_device_properties", lambda device: SimpleNamespace(total_memory=80 * 2**30)
    )
    monkeypatch.setattr(trainer_module, "load_model", lambda *a, **k: pytest.fail("loaded a model"))
    on_a_gpu = DataParallel(device="cuda:0")
    too_big = [*FAST, "model.name=random:qwen2.5-7b", "model.dtype=bf16"]
    with pytest.raises(
        ConfigError, match=r"would not fit on its 1 GPU\(s\): peak .* trainer.sharding|cpu_offload"
    ):
        Trainer(load_config("smoke", too_big), tmp_path / "run", parallel=on_a_gpu)
    assert not (tmp_path / "run").exists()

    class Loaded(Exception):
        pass

    def loaded(*args, **kwargs):
        raise Loaded

    monkeypatch.setattr(trainer_module, "load_model", loaded)
    with pytest.raises(Loaded):  # without the check it goes on to load the model
        Trainer(
            load_config("smoke", [*too_big, "trainer.memory_check=false"]),
            tmp_path / "run",
            parallel=on_a_gpu,
        )
