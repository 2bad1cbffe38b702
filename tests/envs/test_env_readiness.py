"""`sdar envs`: an env whose data folder is missing says what is missing and how to point at it."""

from pathlib import Path

import pytest

from sdar.cli import main

pytest.importorskip("bm25s")
pytest.importorskip("pyarrow")

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
DATA_VARIABLES = {"alfworld": "ALFWORLD_DATA", "webshop": "WEBSHOP_DATA", "search-qa": "SEARCHQA_DATA"}
SHARED_FOLDERS = {"alfworld": "alfworld", "webshop": "webshop", "search-qa": "searchqa"}


def listed_status(capsys) -> dict[str, str]:
    """env name -> its status line, from `sdar envs`: a line per env, then its indented status."""
    assert main(["envs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    return {name.split()[0]: status.strip() for name, status in zip(lines[::2], lines[1::2], strict=True)}


def test_a_missing_data_folder_is_not_ready_and_says_how_to_get_it(monkeypatch, capsys):
    for variable in DATA_VARIABLES.values():
        monkeypatch.delenv(variable, raising=False)
    status = listed_status(capsys)
    for name, label in (("alfworld", "ALFWorld"), ("webshop", "WebShop"), ("search-qa", "Search-QA")):
        assert status[name].startswith(f"not ready: no {label} data folder"), status[name]
        assert "env.data_dir" in status[name] and DATA_VARIABLES[name] in status[name]
    assert status["webshop-gen"] == "ready"  # generated catalogue: no data needed


def test_a_data_folder_without_the_data_is_not_ready(monkeypatch, capsys, tmp_path):
    for variable in DATA_VARIABLES.values():
        monkeypatch.setenv(variable, str(tmp_path))
    status = listed_status(capsys)
    assert status["webshop"].startswith(f"not ready: WebShop data folder {tmp_path}")
    assert "lacks" in status["webshop"] and "documents.jsonl" in status["webshop"]
    assert status["search-qa"].startswith(f"not ready: Search-QA data folder {tmp_path} has no questions/")


def test_the_shared_data_folders_are_ready(monkeypatch, capsys):
    for name, variable in DATA_VARIABLES.items():
        folder = SHARED_DATA / SHARED_FOLDERS[name]
        if not folder.is_dir():
            pytest.skip(f"needs {folder}")
        monkeypatch.setenv(variable, str(folder))
    status = listed_status(capsys)
    assert [status[name] for name in DATA_VARIABLES] == ["ready"] * len(DATA_VARIABLES)
