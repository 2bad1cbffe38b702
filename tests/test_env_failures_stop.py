"""A panel or a training step in which every episode failed stops with the first error as one line, and a
bad env.split / env.options stops `sdar train` and `sdar eval` with one line, not a traceback."""

import pytest

from sdar.cli import main
from sdar.envs.alfworld.engine import AlfworldGame

pytest.importorskip("alfworld")

FAST = ["env.max_turns=2", "rollout.max_new_tokens=8", "rollout.tasks_per_step=1", "rollout.group_size=2"]
TRAIN = ["smoke", *FAST, "trainer.steps=1", "trainer.eval_at_ends=false", "trainer.tensorboard=false"]
EVAL = ["smoke", *FAST, "eval.split=valid", "eval.num_tasks=2"]


@pytest.fixture
def resets_fail(monkeypatch):
    def broken_reset(self):
        raise OSError("the game file is unreadable")

    monkeypatch.setattr(AlfworldGame, "reset", broken_reset)


def one_line_error(capsys, argv: list[str]) -> str:
    status = main(argv)
    err = capsys.readouterr().err.strip()
    assert status == 2, err
    assert "Traceback" not in err, err
    line = err.splitlines()[-1]  # `sdar eval` says first where it evaluates into
    assert line.startswith(f"sdar {argv[0]}: error: "), err
    return line


@pytest.mark.parametrize("policy", ["random", "model"])
def test_a_panel_whose_every_reset_failed_stops_with_the_first_error(capsys, tmp_path, resets_fail, policy):
    output = tmp_path / "eval"
    line = one_line_error(capsys, ["eval", *EVAL, f"eval.policy={policy}", "--output", str(output)])
    assert "every episode" in line and "the game file is unreadable" in line
    assert not (output / "summary.json").exists()  # no 0 % table, no results of a panel that never ran


def test_a_panel_whose_resets_failed_is_played_again_when_rerun(capsys, tmp_path, monkeypatch):
    """Failed resets are not kept for a resumed evaluation: once the env is fixed, a rerun plays the panel."""
    output = tmp_path / "eval"
    with monkeypatch.context() as patch:
        patch.setattr(AlfworldGame, "reset", lambda self: (_ for _ in ()).throw(OSError("unreadable")))
        one_line_error(capsys, ["eval", *EVAL, "eval.policy=random", "--output", str(output)])
    assert main(["eval", *EVAL, "eval.policy=random", "--output", str(output)]) == 0
    assert (output / "summary.json").is_file()
    assert "failed episodes" not in capsys.readouterr().out


def test_a_training_step_whose_every_episode_failed_stops_with_the_first_error(capsys, tmp_path, resets_fail):
    line = one_line_error(capsys, ["train", *TRAIN, "--output", str(tmp_path / "run")])
    assert "step 1: every episode" in line and "the game file is unreadable" in line


@pytest.mark.parametrize("command", ["train", "eval"])
def test_an_unknown_env_split_or_option_is_one_line(capsys, tmp_path, command):
    argv = TRAIN if command == "train" else [*EVAL, "eval.policy=random"]
    line = one_line_error(capsys, [command, *argv, "env.options.bogus=1", "--output", str(tmp_path / "a")])
    assert "env.options" in line and "bogus" in line and "train_games" in line  # names the valid options
    if command == "train":  # `sdar eval` plays eval.split; env.split is the training split
        line = one_line_error(capsys, [command, *argv, "env.split=nope", "--output", str(tmp_path / "b")])
        assert "env.split='nope'" in line and "train, valid, test" in line
