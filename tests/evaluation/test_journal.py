"""A killed evaluation resumes from its journal (OUTPUT/episodes.partial.jsonl) to the same results."""

from __future__ import annotations

import importlib
import json

import pytest

from sdar.cli import main
from sdar.config import load_config
from sdar.errors import ConfigError
from sdar.evaluation import EpisodeRecord, evaluate
from sdar.evaluation.journal import PARTIAL, Journal
from sdar.locking import DirectoryInUse

pytest.importorskip("alfworld")
evaluate_module = importlib.import_module(
    "sdar.evaluation.evaluate"
)  # the package's `evaluate` is the function

# two tasks on one env slot: the model policy plays them as two units
TWO_UNITS = ["eval.policy=model", "eval.split=valid", "eval.num_tasks=2", "env.max_turns=2"]
TWO_UNITS += ["rollout.max_new_tokens=12", "rollout.tasks_per_step=1", "rollout.group_size=1"]
TWO_UNITS += ["eval.temperature=0.4", "eval.seeds=[3]"]


class Killed(Exception):
    """Stands for the kill: raised from the progress callback when the evaluation reaches `where`."""


def killed_at(where: str):
    def on_progress(text: str) -> None:
        if where in text:
            raise Killed(text)

    return on_progress


def without_timing(summary: dict) -> dict:
    return {key: value for key, value in summary.items() if key != "timing"}


def journal_lines(directory) -> list[dict]:
    return [json.loads(line) for line in (directory / PARTIAL).read_text().splitlines()]


def record(task_id: str, won: bool) -> EpisodeRecord:
    return EpisodeRecord(seed=0, task_id=task_id, task_type="pick", won=won, turns=1, actions=["look"])


# ---- the journal file -------------------------------------------------------------------------------------
def test_units_read_back_as_they_were_added_and_close_removes_the_file(tmp_path):
    with Journal(tmp_path, {"panel": "abc", "eval": {"temperature": 0.4}}) as journal:
        journal.add("seed 0, tasks 1-1 of 2", [record("a", True)])
    again = Journal(tmp_path, {"panel": "abc", "eval": {"temperature": 0.4}})
    assert again.played("seed 0, tasks 1-1 of 2") == [record("a", True)]
    assert again.played("seed 0, tasks 2-2 of 2") is None and again.episodes == 1
    again.close()
    assert not (tmp_path / PARTIAL).exists()


def played_one_unit(directory, key: dict) -> None:
    with Journal(directory, key) as journal:
        journal.add("unit 1", [record("a", True)])


def test_a_second_evaluation_into_the_same_directory_is_refused_while_one_writes(tmp_path):
    first = Journal(tmp_path, {"panel": "abc"})
    with pytest.raises(DirectoryInUse, match="another evaluation is writing into this directory"):
        Journal(tmp_path, {"panel": "abc"})
    first.add("unit 1", [record("a", True)])  # the first one is not disturbed
    first.release()  # ended (a killed process releases it too)
    with Journal(tmp_path, {"panel": "abc"}) as second:
        assert second.episodes == 1


def test_a_torn_last_line_is_dropped_and_not_continued(tmp_path):
    played_one_unit(tmp_path, {"panel": "abc"})
    with open(tmp_path / PARTIAL, "a") as handle:
        handle.write('{"unit": "unit 2", "episo')  # the kill came mid-write
    with pytest.warns(UserWarning, match="torn last line"):
        journal = Journal(tmp_path, {"panel": "abc"})
    assert journal.played("unit 2") is None and journal.episodes == 1
    journal.add("unit 2", [record("b", False)])
    assert [line.get("unit") for line in journal_lines(tmp_path)] == [None, "unit 1", "unit 2"]


def test_a_damaged_journal_or_one_of_other_settings_is_refused_not_mixed(tmp_path):
    played_one_unit(tmp_path, {"panel": "abc", "eval": {"temperature": 0.4}})
    kept = (tmp_path / PARTIAL).read_text()
    with pytest.raises(ConfigError, match=r"other settings \(eval.temperature: 0.4 -> 0.7\)"):
        Journal(tmp_path, {"panel": "abc", "eval": {"temperature": 0.7}})
    assert (tmp_path / PARTIAL).read_text() == kept  # nothing lost
    (tmp_path / PARTIAL).write_text(kept + "not json\n" + kept.splitlines()[1] + "\n")
    with pytest.raises(ConfigError, match="line 3: not a journal entry"):
        Journal(tmp_path, {"panel": "abc", "eval": {"temperature": 0.4}})
    (tmp_path / PARTIAL).write_text("some other file\n")
    with pytest.raises(ConfigError, match="not a resume key"):
        Journal(tmp_path, {"panel": "abc"})


def test_a_journal_with_nothing_played_yet_starts_afresh_under_new_settings(tmp_path):
    first = Journal(tmp_path, {"panel": "abc", "eval": {"temperature": 0.4}})  # e.g. the model failed to load
    first.release()
    journal = Journal(tmp_path, {"panel": "abc", "eval": {"temperature": 0.7}})
    assert journal.episodes == 0
    assert journal_lines(tmp_path) == [{"resume_key": {"panel": "abc", "eval": {"temperature": 0.7}}}]


# ---- evaluations ------------------------------------------------------------------------------------------
def test_a_killed_model_evaluation_resumes_to_the_uninterrupted_results(tmp_path):
    config = load_config("smoke", TWO_UNITS)
    whole = evaluate(config, output_dir=tmp_path / "whole")
    with pytest.raises(Killed):
        evaluate(config, output_dir=tmp_path / "pieces", on_progress=killed_at("tasks 2.."))
    assert not (tmp_path / "pieces" / "summary.json").exists()
    lines = journal_lines(tmp_path / "pieces")
    assert [line.get("unit") for line in lines] == [None, "seed 3, tasks 1-1 of 2"]
    assert lines[0]["resume_key"]["panel"] == whole["panel"]["fingerprint"]

    seen: list[str] = []
    resumed = evaluate(config, output_dir=tmp_path / "pieces", on_progress=seen.append)
    assert any(text.startswith("resuming: 1 episode(s) already played") for text in seen)
    assert not any("tasks 1.." in text for text in seen)  # the journaled unit was not played again
    assert without_timing(resumed) == without_timing(whole)
    episodes = (tmp_path / "pieces" / "episodes.jsonl").read_text()
    assert episodes == (tmp_path / "whole" / "episodes.jsonl").read_text()
    assert not (tmp_path / "pieces" / PARTIAL).exists()  # complete: the journal is gone

    with pytest.raises(Killed):
        evaluate(config, output_dir=tmp_path / "other", on_progress=killed_at("tasks 2.."))
    hotter = load_config("smoke", [*TWO_UNITS, "eval.temperature=0.7", "env.workers=0"])
    with pytest.raises(ConfigError, match=r"eval.temperature: 0.4 -> 0.7\)"):  # env.workers is not keyed
        evaluate(hotter, output_dir=tmp_path / "other")


@pytest.mark.slow
def test_a_scripted_evaluation_resumes_seed_by_seed(tmp_path, monkeypatch):
    config = load_config(
        "smoke", ["eval.policy=random", "eval.split=valid", "eval.num_tasks=2", "eval.seeds=[0,1]"]
    )
    whole = evaluate(config, output_dir=tmp_path / "whole")
    with pytest.raises(Killed):
        evaluate(config, output_dir=tmp_path / "pieces", on_progress=killed_at("seed 1:"))
    assert [line.get("unit") for line in journal_lines(tmp_path / "pieces")] == [None, "seed 0"]
    played = []
    play_scripted = evaluate_module.play_scripted
    monkeypatch.setattr(
        evaluate_module, "play_scripted", lambda *args: played.append(args[3]) or play_scripted(*args)
    )
    resumed = evaluate(config, output_dir=tmp_path / "pieces")
    assert played == [1]  # seed 0 came from the journal
    assert without_timing(resumed) == without_timing(whole)
    assert (tmp_path / "pieces" / "episodes.jsonl").read_text() == (
        tmp_path / "whole" / "episodes.jsonl"
    ).read_text()


def test_cli_eval_says_where_it_writes_and_that_it_resumes(tmp_path, capsys):
    output = tmp_path / "out"
    arguments = ["eval", "smoke", "eval.policy=random", "eval.split=valid", "eval.num_tasks=1"]
    arguments += ["env.max_turns=1", "--output", str(output)]
    assert main(arguments) == 0
    assert f"--output {output} resumes" in capsys.readouterr().err
    finished = (output / "summary.json").read_text()
    assert main(arguments) == 2  # a finished evaluation is not overwritten
    refused = capsys.readouterr().err
    assert "already holds a finished evaluation" in refused and "evaluating into" not in refused
    assert (output / "summary.json").read_text() == finished

    other = tmp_path / "other"
    Journal(other, {"panel": "another"}).release()  # a journal with nothing played: started afresh
    assert main([*arguments[:-1], str(other)]) == 0
    assert "resuming" in capsys.readouterr().err and not (other / PARTIAL).exists()
