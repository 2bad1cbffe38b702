"""experiments/teacher_reliability/report.py and outcomes.py: the report on hand-written run folders, the
final panel's behaviour, and the committed README block. No training."""

import json
from pathlib import Path

import pytest
import yaml
from teacher_reliability_cases import games, load_script

# isort: split
# the experiment's own scripts, importable once teacher_reliability_cases is imported
import outcomes
import training_tables
from criteria import Outcome

from sdar.evaluation.runs import Run


def write_run(results: Path, name: str, final: float, gate_off: float | None, method: str) -> None:
    run = results / name
    for label, step in (("final", 12), ("step_6", 6)):
        (run / "eval" / label).mkdir(parents=True)
        panel = {"name": "alfworld-gen/valid", "env": "alfworld-gen", "split": "valid", "size": 24}
        summary = {"panel": panel, "success_rate": final, "checkpoint": {"step": step}}
        (run / "eval" / label / "summary.json").write_text(json.dumps(summary))
    seed = int(name.rpartition("-s")[2])
    config = {"algorithm": {"method": method}, "env": {"name": "alfworld-gen"}, "seed": seed}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    gate = {} if gate_off is None else {"distill/gate_off_half_ratio": gate_off, "distill/gate_bin_5": 1.0}
    lines = [json.dumps({"step": step, "train/won_rate": 0.25, **gate}) for step in range(1, 13)]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def test_the_report_reads_run_folders_and_writes_its_tables_and_the_readme_block(tmp_path, monkeypatch):
    report = load_script("report")
    write_run(tmp_path / "results", "grpo-s0", games(6), None, "grpo")
    write_run(tmp_path / "results", "sdar-l0.1-half-s0", games(9), 0.07, "sdar")
    write_run(tmp_path / "results", "opsd-l0.1-reliable-s0", games(3), 0.0, "grpo_opsd")
    monkeypatch.setattr(outcomes, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(outcomes, "PROBES", tmp_path / "probes")
    monkeypatch.setattr(outcomes, "WARM_START_EVALS", tmp_path / "warm_start")
    monkeypatch.setattr(outcomes, "CHOSEN_LAMBDA", tmp_path / "chosen_lambda.json")
    monkeypatch.setattr(report, "REPORT", tmp_path / "report")
    readme = tmp_path / "README.md"
    readme.write_text(f"# intro\n{report.BEGIN}\nan old table\n{report.END}\nthe rest\n")
    monkeypatch.setattr(report, "README", readme)
    assert report.main(["--check"]) == 1  # the block is not yet what the runs give
    assert report.main([]) == 0 and report.main(["--check"]) == 0
    results = (tmp_path / "report" / "results.md").read_text()
    assert "| grpo | grpo | – | – | 25.0 | – | – | 25.0 | 25.0 | – | – | 25.0 |" in results
    assert "| sdar-l0.1-half-s0 | sdar | 0 | 7.0 | 7.0 | 7.0 |" in results  # the gate table
    assert f"Criterion 0 ({report.CLAIMS['0']}): **untested**: the warm start's panel evaluations" in results
    assert not (tmp_path / "chosen_lambda.json").exists()  # the reliable runs of claim 1 are not in
    text = readme.read_text()
    assert text.startswith(f"# intro\n{report.BEGIN}\n") and text.endswith(f"\n{report.END}\nthe rest\n")
    block = text[text.index(report.BEGIN) : text.index(report.END)]
    assert "an old table" not in block
    assert "| GRPO | 25.0 (1) | – | – | – | – |" in block
    assert "| SDAR, half line | – | – | 37.5 (1) | – | – |" in block
    assert "| GRPO+OPSD, half line | – | – | 12.5 (1)† | – | – |" in block  # its reliable twin's outcome
    assert report.COPIED_NOTE in block
    assert (tmp_path / "report" / "gate_histogram_s0.png").is_file()
    readme.write_text("no markers\n")
    with pytest.raises(SystemExit, match="needs exactly one"):
        report.main([])


def test_the_final_panels_behaviour_counts_admissible_takes_and_puts(tmp_path):
    episodes = [  # a win; a take and an inadmissible put; the task repeated as the action
        {
            "won": True,
            "actions": ["go to a 1", "take x 1 from a 1", "put x 1 in/on b 1"],
            "admissible": [1, 1, 1],
        },
        {"won": False, "actions": ["go to a 1", "take x 1 from a 1", "put x in b"], "admissible": [1, 1, 0]},
        {"won": False, "actions": ["put x in b", "put x in b"], "admissible": [0, 0]},
    ]
    final = tmp_path / "run" / "eval" / "final"
    final.mkdir(parents=True)
    (final / "episodes.jsonl").write_text("".join(json.dumps(episode) + "\n" for episode in episodes))
    seen = outcomes.final_behaviour(tmp_path / "run")
    assert (seen.games, seen.won, seen.took, seen.put) == (3, 1, 2, 1)
    assert seen.admissible == pytest.approx(5 / 8) and seen.distinct == pytest.approx((3 + 3 + 1) / 3)
    assert outcomes.final_behaviour(tmp_path / "run", "step_6") is None


def test_the_readme_block_matches_the_committed_results():
    report = load_script("report")
    assert report.main(["--check"]) == 0, f"README.md's block is out of date: run {report.COMMAND}"


def test_an_exploratory_run_is_listed_first_with_grpo_and_named_as_outside_the_design():
    report = load_script("report")
    assert report.display_order()[:2] == ["grpo", "grpo-noskip"]
    assert report.exploratory_note({("grpo", 0): Outcome(final=games(12))}) == ""
    note = report.exploratory_note({("grpo-noskip", 0): Outcome(final=games(12))})
    assert note.startswith("Exploratory, outside the design (no criterion reads it): grpo-noskip: GRPO that")


def test_the_update_table_counts_the_optimizer_steps_taken_their_gradient_norms_and_the_lambda_applied():
    metrics = [
        {"update/optimizer_steps": 1, "grad/norm": 0.1},
        {"update/optimizer_steps": 0, "grad/norm": 0.0},  # skipped: a zero gradient
        {"update/optimizer_steps": 1, "grad/norm": 0.02},
    ]
    table = training_tables.update_table([Run("grpo-s0", "", "", "", None, metrics=metrics)])
    assert table.rows == (("grpo-s0", "2/3", "2.0e-02 – 1.0e-01", "–"),)  # GRPO logs no λ
    adaptive = [
        {"update/optimizer_steps": 1, "grad/norm": 0.1, "distill/lambda": lam} for lam in (0.9, 0.01, 0.5)
    ]
    table = training_tables.update_table([Run("sdar-adaptive-half-s0", "", "", "", None, metrics=adaptive)])
    assert table.rows[0][3] == "0.47 (0.01 – 0.9)"  # (0.9 + 0.01 + 0.5) / 3


def test_the_routing_table_gives_each_teachers_share_and_gap_over_the_steps():
    steps = [(0.6, -0.01, 0.4, 0.0), (0.3, 0.002, 0.7, -0.002)]
    metrics = [
        {
            "distill/teacher_line/share": line,
            "distill/teacher_line/gap_mean": line_gap,
            "distill/teacher_plain/share": plain,
            "distill/teacher_plain/gap_mean": plain_gap,
        }
        for line, line_gap, plain, plain_gap in steps
    ]
    table = training_tables.routing_table([Run("sdar-routed-half-s0", "", "", "", None, metrics=metrics)])
    assert table.rows == (
        ("sdar-routed-half-s0", "line", "45.0", "-0.0040"),  # (0.6 + 0.3) / 2, (−0.01 + 0.002) / 2
        ("sdar-routed-half-s0", "plain", "55.0", "-0.0010"),
    )
    one_teacher = Run("sdar-l1-half-s0", "", "", "", None, metrics=[{"distill/gate_mean": 0.5}])
    assert training_tables.routing_table([one_teacher]) is None
