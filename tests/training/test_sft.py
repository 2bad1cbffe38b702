"""Supervised warm start on expert demonstrations, with the tiny model on generated ALFWorld games."""

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from sdar.config import load_config
from sdar.envs.replies import parse_action_reply
from sdar.models import load_model
from sdar.training.logging import machine, record_process, warm_start_record
from sdar.training.sft import demonstration_pairs, recipe_key, warm_start, warm_start_key, with_warm_start

pytest.importorskip("alfworld")

SMALL = ["sft.games=2", "sft.epochs=2", "sft.batch_rows=8", "sft.lr=3e-3", "sft.lora_rank=0"]


def test_demonstrations_use_the_rollout_prompt_and_reply_format():
    config = load_config("smoke", SMALL)
    _, tokenizer = load_model(config.model)
    prompts, replies, counts = demonstration_pairs(config, tokenizer)
    assert counts["expert_won_episodes"] == 2 and counts["pairs"] == len(prompts) == len(replies) > 2
    text = tokenizer.decode(prompts[0])
    assert text.startswith("<|im_start|>user") and text.endswith("<|im_start|>assistant\n")
    reply = parse_action_reply(tokenizer.decode(replies[0]))
    assert reply.valid and reply.action.startswith("go to")


@pytest.mark.parametrize("placement", ["prefix", "system"])
def test_skill_conditioned_copies_are_the_teacher_prompts_or_the_student_format(placement):
    """Each demonstration is repeated with skills: by default exactly where the teacher sees them."""
    from sdar.rollout.engine import SKILLS_HEADER
    from sdar.teacher.prompts import SKILL_HEADER

    config = load_config("smoke", [*SMALL, f"teacher.placement={placement}"])
    _, tokenizer = load_model(config.model)
    plain, plain_replies, _ = demonstration_pairs(config, tokenizer)
    teacher, teacher_replies, _ = demonstration_pairs(
        load_config("smoke", [*SMALL, f"teacher.placement={placement}", "sft.with_skills=true"]), tokenizer
    )
    assert len(teacher) == 2 * len(plain) and teacher[0::2] == plain
    assert teacher_replies[1::2] == plain_replies
    assert all(SKILL_HEADER.strip() in tokenizer.decode(ids) for ids in teacher[1::2])
    if placement == "prefix":  # the raw skill block, then the student's own prompt tokens
        assert all(copy[-len(ids) :] == ids for copy, ids in zip(teacher[1::2], plain, strict=True))
    student, _, _ = demonstration_pairs(
        load_config("smoke", [*SMALL, "sft.with_skills=true", "sft.skills_format=student"]), tokenizer
    )
    assert all(SKILLS_HEADER in tokenizer.decode(ids) for ids in student[1::2])


def test_warm_start_trains_once_lowers_the_loss_and_is_reused(tmp_path):
    config = load_config("smoke", [*SMALL, f"model.cache_dir={tmp_path}", "sft.warm_start=true"])
    directory = warm_start(config)
    summary = json.loads((directory / "sft_summary.json").read_text())
    assert summary["loss_last"] < summary["loss_first"]
    assert summary["recipe"] == recipe_key(config)  # and runs from it record it (run_info.json)
    assert warm_start_record(str(directory))["recipe"] == summary["recipe"]
    stamp = (directory / "sft_summary.json").stat().st_mtime_ns
    trained = with_warm_start(config)  # second call: the cached directory, not retrained
    assert trained.model.name == str(directory)
    assert (directory / "sft_summary.json").stat().st_mtime_ns == stamp
    assert not trained.sft.warm_start and with_warm_start(trained) == trained  # never stacked twice
    model, tokenizer = load_model(trained.model)  # a normal model directory
    assert tokenizer.pad_token_id is not None and model.config.vocab_size > 0
    # A run from it records what its model is, which its config (a cache path) does not say.
    (tmp_path / "run").mkdir()
    record_process(tmp_path / "run", trained, start_step=0)
    recorded = json.loads((tmp_path / "run" / "run_info.json").read_text())["warm_start"]
    assert recorded["key"] == directory.name and recorded["base_model"] == config.model.name
    assert recorded["pairs"] == summary["pairs"] and recorded["seconds"] == summary["seconds"]
    # ... and on what machine it was trained: a rebuild elsewhere may round differently
    assert recorded["machine"] == summary["machine"] == machine()


def test_processes_needing_the_same_warm_start_make_it_once(tmp_path, monkeypatch):
    from filelock import FileLock

    from sdar.training import sft

    config = load_config("smoke", [*SMALL, f"model.cache_dir={tmp_path}", "sft.warm_start=true"])
    directory = sft.cache_root(config) / warm_start_key(config)
    directory.parent.mkdir(parents=True)
    monkeypatch.setattr(sft, "train_sft", lambda *a, **k: pytest.fail("made a second time"))
    other = FileLock(directory.with_name(f".{directory.name}.lock"))  # stands for a process making it
    other.acquire()
    said, waiting = [], threading.Event()

    def log(text: str) -> None:
        said.append(text)
        if "waiting for it" in text:
            waiting.set()

    with ThreadPoolExecutor(1) as pool:
        made = pool.submit(warm_start, config, log=log)
        try:
            assert waiting.wait(timeout=30)
            directory.mkdir()
            (directory / "sft_summary.json").write_text("{}")  # what the other process made, last
        finally:
            other.release()  # never leave the thread waiting
        assert made.result(timeout=30) == directory
    assert said[-1] == f"sft: reusing the warm start another process made: {directory}"


def test_a_long_warm_start_says_how_far_it_got(tmp_path):
    """About ten progress lines an epoch (here one a batch: fewer than ten), each with the time left."""
    from sdar.training.sft import train_sft

    config = load_config("smoke", [*SMALL, "sft.batch_rows=2", "sft.epochs=1"])
    said = []
    summary = train_sft(config, tmp_path / "warm-start", log=said.append)
    batches = len(summary["losses"])
    progress = [line for line in said if ", batch " in line]
    assert batches > 2 and len(progress) == batches - 1  # the last batch: the epoch's own line
    assert progress[0].startswith(f"sft: epoch 1/1, batch 1/{batches}, loss ") and "min left" in progress[0]
    assert said[-1].startswith("sft: epoch 1/1 mean loss")


def test_a_lora_warm_start_keeps_its_adapter_and_is_rebuilt_from_it_elsewhere(tmp_path):
    """The adapter alone (what an experiment commits) rebuilds the same merged weights on another cache,
    under its own key (named by the adapter's weights)."""
    from safetensors.torch import load_file

    from sdar.training.sft import ADAPTER

    lora = [*SMALL, "sft.lora_rank=4", "sft.warm_start=true"]
    trained = warm_start(load_config("smoke", [*lora, f"model.cache_dir={tmp_path / 'here'}"]))
    adapter = trained / ADAPTER
    assert {"adapter_config.json", "adapter_model.safetensors", "sft_summary.json"} <= {
        path.name for path in adapter.iterdir()
    }
    elsewhere = load_config(
        "smoke", [*lora, f"model.cache_dir={tmp_path / 'there'}", f"sft.adapter={adapter}"]
    )
    said = []
    rebuilt = warm_start(elsewhere, log=said.append)
    assert "rebuilding the warm start from the adapter" in said[0] and rebuilt.name != trained.name
    weights, again = load_file(trained / "model.safetensors"), load_file(rebuilt / "model.safetensors")
    assert weights.keys() == again.keys() and all(torch.equal(weights[k], again[k]) for k in weights)
    summary = json.loads((rebuilt / "sft_summary.json").read_text())
    assert summary["rebuilt_from"] == str(adapter) and summary["losses"]
    assert (rebuilt / ADAPTER / "adapter_model.safetensors").is_file()
    assert warm_start(elsewhere) == rebuilt  # cached from now on
    assert warm_start_record(str(rebuilt))["rebuilt_from"] == str(adapter)  # what a run from it records


def test_an_adapter_folder_without_its_files_is_a_clear_error(tmp_path):
    from sdar.errors import ConfigError

    config = load_config("smoke", [*SMALL, f"sft.adapter={tmp_path}"])
    with pytest.raises(ConfigError, match="no adapter_config.json, adapter_model.safetensors, sft_summary"):
        warm_start_key(config)


def test_a_warm_start_with_an_unreadable_summary_is_recorded_by_its_key(tmp_path):
    directory = tmp_path / "sft" / "3e7376501cfe942a"
    directory.mkdir(parents=True)
    (directory / "sft_summary.json").write_text("{torn")
    with pytest.warns(UserWarning, match="not valid JSON"):
        assert warm_start_record(str(directory)) == {"key": "3e7376501cfe942a"}
    assert warm_start_record("smollm2-135m") == {} and warm_start_record(str(tmp_path)) == {}


def test_sft_seed_lets_several_run_seeds_share_one_warm_start():
    same = [load_config("smoke", [f"seed={seed}", "sft.seed=0"]) for seed in (0, 1, 2)]
    assert len({warm_start_key(config) for config in same}) == 1
    assert warm_start_key(load_config("smoke", ["seed=1"])) != warm_start_key(same[0])  # -1: the run's seed
    per_seed = [load_config("smoke", [f"seed={seed}"]) for seed in (0, 1, 2)]  # a warm start per run seed
    assert len({warm_start_key(config) for config in per_seed}) == 3
    assert {recipe_key(config) for config in per_seed} == {recipe_key(same[0])}  # one recipe: one row
    assert recipe_key(load_config("smoke", ["sft.epochs=5"])) != recipe_key(same[0])


def test_warm_start_names_stay_stable_and_new_settings_enter_them():
    # 938bf4834835e25d: the smoke config's key before sft.env_options and teacher.skill_library existed
    assert warm_start_key(load_config("smoke")) == "938bf4834835e25d"
    shuffled = load_config("smoke", ["sft.env_options.priors=shuffled"])
    places = load_config("smoke", ["teacher.skill_library=alfworld-places"])
    assert len({warm_start_key(config) for config in (shuffled, places)} | {"938bf4834835e25d"}) == 3


def test_demonstrations_from_other_games_and_another_skill_library():
    """sft.env_options: demonstration games of other settings; teacher.skill_library: what copies carry."""
    config = load_config("smoke", [*SMALL, "sft.with_skills=true", "teacher.skill_library=alfworld-places"])
    _, tokenizer = load_model(config.model)
    usual, _, _ = demonstration_pairs(config, tokenizer)
    copies = [tokenizer.decode(ids) for ids in usual[1::2]]
    assert all("is usually found in/on:" in text and "General skills" not in text for text in copies)
    shuffled = ["sft.with_skills=true", "sft.env_options.priors=shuffled"]
    shuffled_config = load_config("smoke", [*SMALL, *shuffled])
    assert shuffled_config.env.options == config.env.options  # RL's games are untouched
    shuffled, _, _ = demonstration_pairs(shuffled_config, tokenizer)
    assert shuffled[0] != usual[0]  # other rooms
