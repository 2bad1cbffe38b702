"""`sdar retriever build-corpus` on the shipped data; `sdar retriever serve` refuses a bad setup clearly."""

import json
import re
import select
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from sdar.cli import main

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "searchqa"


@pytest.mark.skipif(not (DATA / "questions").is_dir(), reason="needs ../shared/data/searchqa")
def test_build_corpus_writes_the_corpus_and_the_coverage_report(tmp_path, capsys):
    pytest.importorskip("pyarrow")
    assert (
        main(["retriever", "build-corpus", "--data-dir", str(DATA), "--output", str(tmp_path / "c.jsonl")])
        == 0
    )
    lines = (tmp_path / "c.jsonl").read_text().splitlines()
    assert len(lines) == 16039 and set(json.loads(lines[0])) == {"id", "contents"}
    report = json.loads((tmp_path / "c.report.json").read_text())
    assert report["datasets"]["nq"]["with_gold_passage"] == 2655
    assert set(report["datasets"]) == {
        "nq",
        "triviaqa",
        "popqa",
        "hotpotqa",
        "2wikimultihopqa",
        "musique",
        "bamboogle",
    }
    assert "nq" in capsys.readouterr().out


def test_serve_without_data_names_the_option_and_variable(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SEARCHQA_DATA", raising=False)
    assert main(["retriever", "serve", "--port", "0"]) == 2
    assert "$SEARCHQA_DATA" in capsys.readouterr().err
    assert main(["retriever", "serve", "--corpus", str(tmp_path / "none.jsonl")]) == 2
    assert "none.jsonl does not exist" in capsys.readouterr().err


def test_serve_starts_answers_and_stops_cleanly_on_interrupt(tmp_path):
    """`sdar retriever serve` in its own process: a free port, a Search-R1 answer, ^C ends it, status 0."""
    pytest.importorskip("bm25s")
    pytest.importorskip("uvicorn")
    corpus = tmp_path / "corpus.jsonl"
    rows = [{"id": str(n), "contents": f'"T{n}"\nitem {n} is {"red" if n % 2 else "blue"}'} for n in range(6)]
    corpus.write_text("".join(json.dumps(row) + "\n" for row in rows))
    command = [sys.executable, "-m", "sdar.cli", "retriever", "serve", "--corpus", str(corpus), "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # "serving bm25 over 6 passages (indexed in ...) at http://127.0.0.1:PORT/retrieve; ^C stops"
        assert select.select([process.stdout], [], [], 60)[0], "no 'serving' line within 60 s"
        line = process.stdout.readline()
        url = re.search(r"http://[\d.]+:\d+/retrieve", line)
        assert url, line + process.stderr.read()
        body = json.dumps({"queries": ["red item"], "topk": 2}).encode()
        request = urllib.request.Request(
            url.group(0), data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            result = json.loads(response.read())["result"]
        ids = [document["id"] for document in result[0]]
        assert len(ids) == 2 and set(ids) <= {"1", "3", "5"}  # the red items (BM25 ties them)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
