"""The README's results block is what `python experiments/cpu_reproduction/report.py` makes of the committed
results (no number in it that the committed metrics do not give)."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "experiments" / "cpu_reproduction" / "report.py"


@pytest.fixture(scope="module")
def report():
    spec = importlib.util.spec_from_file_location("cpu_reproduction_report", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_readme_results_block_matches_the_committed_results(report):
    readme = report.README.read_text(encoding="utf-8")
    assert report.splice(readme, report.results_block()) == readme, (
        "README.md's results block is out of date: run python experiments/cpu_reproduction/report.py"
    )


def test_splice_replaces_only_the_block_and_refuses_missing_markers(report):
    text = f"intro\n{report.BEGIN}\nold table\n{report.END}\noutro\n"
    assert report.splice(text, "new table") == f"intro\n{report.BEGIN}\nnew table\n{report.END}\noutro\n"
    for broken in (
        "no markers",
        f"{report.END}\n{report.BEGIN}",
        f"{report.BEGIN}\n{report.BEGIN}\n{report.END}",
    ):
        with pytest.raises(SystemExit, match="needs exactly one"):
            report.splice(broken, "x")


def test_agreement_counts_word_for_word_equal_replies_of_the_same_seed(report, tmp_path):
    from sdar.evaluation.runs import Run

    def run(method, seed, replies):
        path = tmp_path / f"{method}-s{seed}"
        path.mkdir()
        lines = [json.dumps({"step": 1, "turns": [{"turn": t, "response": r} for t, r in enumerate(episode)]})
                 for episode in replies]  # fmt: skip
        (path / "samples.jsonl").write_text("\n".join(lines))
        return Run(path.name, method, "alfworld-gen", "m", seed, [{"step": 1}], [], str(path))

    runs = [
        run("grpo", 0, [["a", "b"], ["c"]]),
        run("sdar", 0, [["a", "x"], ["c"]]),
        run("sdar", 1, [["a"]]),  # no GRPO run of seed 1: not compared
    ]
    assert report.agreement_line(runs).endswith(": sdar s0: 2 of 3.")
    assert report.agreement_line(runs[1:]) == ""
