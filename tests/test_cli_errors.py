"""Bad input and stops reach the user of `sdar` as one line on stderr (exit status 2, or 130 on Ctrl-C), never
as a traceback."""

import pytest

import sdar.cli as cli
import sdar.models.embedded as embedded
from sdar.cli import main
from sdar.config import load_config
from sdar.errors import ActionableError, ConfigError
from sdar.training.update import TooManyBadUpdates


def one_line_error(capsys, argv: list[str]) -> str:
    """Run `sdar argv`; assert it failed with exit status 2 and one line on stderr; return that line."""
    status = main(argv)
    err = capsys.readouterr().err.strip()
    assert status == 2, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_a_config_path_that_is_a_directory_is_one_line(capsys, tmp_path):
    folder = tmp_path / "run.yaml"
    folder.mkdir()
    line = one_line_error(capsys, ["config", str(folder)])
    assert line.startswith("sdar config: error:") and str(folder) in line and "directory" in line


def test_a_binary_config_file_is_one_line(capsys, tmp_path):
    binary = tmp_path / "weights.yaml"
    binary.write_bytes(bytes(range(256)) * 4)
    line = one_line_error(capsys, ["config", str(binary)])
    assert str(binary) in line and "UTF-8" in line
    with pytest.raises(ConfigError):  # the library call raises the same error the CLI prints
        load_config(str(binary))


def test_chat_without_the_embedded_model_package_is_one_line(capsys, monkeypatch):
    monkeypatch.setattr(embedded, "PACKAGE", "sdar-no-such-package")
    line = one_line_error(capsys, ["chat", "hello"])
    assert "sdar-no-such-package" in line and embedded.INSTALL_HINT in line


def test_too_many_bad_updates_is_one_line_naming_what_to_change(capsys, monkeypatch):
    def stops(args):
        raise TooManyBadUpdates("3 consecutive non-finite gradients (step 4); lower trainer.lr or check data")

    monkeypatch.setattr(cli, "cmd_config", stops)
    line = one_line_error(capsys, ["config", "smoke"])
    assert "trainer.lr" in line
    assert issubclass(TooManyBadUpdates, ActionableError)


def test_ctrl_c_is_one_line_and_exit_status_130(capsys, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_config", interrupted)
    assert main(["config", "smoke"]) == 130
    err = capsys.readouterr().err.strip()
    assert err == "sdar config: interrupted"
