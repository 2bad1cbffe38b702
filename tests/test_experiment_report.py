"""The README's results block is what `python experiments/cpu_reproduction/report.py` makes of the committed
results (no number in it that the committed metrics do not give)."""

import json

import pytest
from experiment_scripts import load_script


@pytest.fixture(scope="module")
def report():
    return load_script("report")


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


def judged_run(method, seed, successes, gaps=()):
    """A run whose generated-panel evaluations at steps 6, 12, ... had `successes` and whose steps logged
    `gaps` as distill/gap_mean."""
    from sdar.evaluation.runs import Evaluation, Run

    panel = {"name": "alfworld-gen/valid"}
    evaluations = []
    for index, success in enumerate(successes):
        step = 6 * (index + 1)
        summary = {"success_rate": success, "panel": panel, "checkpoint": {"step": step}}
        evaluations.append(Evaluation(f"step_{step}", summary))
    metrics = [{"step": step + 1, "distill/gap_mean": gap} for step, gap in enumerate(gaps)] or [{"step": 1}]
    return Run(f"{method}-s{seed}", method, "alfworld-gen", "m", seed, metrics, evaluations)


def test_dynamics_table_counts_steps_with_reward_signal_and_the_last_admissible_ratio(report):
    from sdar.evaluation.runs import Run

    def run(seed, advantages, admissible):
        metrics = [
            {"step": step, "train/advantage_abs_mean": a, "train/admissible_action_ratio": r, "grad/norm": a}
            for step, (a, r) in enumerate(zip(advantages, admissible, strict=True), start=1)
        ]
        return Run(f"grpo-s{seed}", "grpo", "alfworld-gen", "m", seed, metrics, [])

    table = report.dynamics_table(
        [run(0, [0.0, 0.5, 0.0], [0.9, 1.0, 0.5]), run(1, [0.2, 0.4, 0.1], [1, 1, 0.7])]
    )
    (row,) = [dict(zip(table.header, row, strict=True)) for row in table.rows]
    assert row["steps with reward signal"] == "2.0 ± 1.0"
    assert row["admissible-action ratio, last step"] == "0.600 ± 0.100"
    assert row["gap Δ, step 1"] == "–"  # GRPO logs no gap
    assert row["largest grad norm"] == "0.450 ± 0.050"


def test_gate_off_half_counts_the_logged_tokens_whose_gap_moves_the_gate(report, tmp_path, capsys):
    from sdar.evaluation.runs import Run

    # σ(5Δ) − ½ = 0.05 at |Δ| = ln(0.55 / 0.45) / 5 = 0.0401
    turns = [
        {"tokens": ["<", "go", " to", " bed"], "gap": [0.0, 0.03, -0.05, 0.0402]},
        {"tokens": ["go", " sofa"], "gap": [-0.04, 1.5]},
        {"response": "no gaps logged"},
    ]
    (tmp_path / "samples.jsonl").write_text(json.dumps({"step": 1, "turns": turns}) + "\n")
    run = Run("sdar-s0", "sdar", "alfworld-gen", "m", 0, [{"step": 1}], [], str(tmp_path))
    assert report.run_gate_off_half(run) == pytest.approx(3 / 6)
    assert report.run_gate_off_half(Run("grpo-s0", "grpo", "alfworld-gen", "m", 0, [{"step": 1}], [])) is None
    report.print_gate_tokens(run)
    printed = capsys.readouterr().out
    assert "6 logged reply tokens" in printed and "from ½ (|Δ| > 0.0401): 50.0%" in printed
    assert "gap 0 as logged (4 decimals): 16.7%" in printed
    assert "'to' 1, 'bed' 1, 'sofa' 1" in printed


def test_sdar_beats_grpo_needs_every_seed_and_says_so(report):
    grpo = [judged_run("grpo", seed, [0.1, 0.2]) for seed in (0, 1, 2)]

    def verdict(sdar_finals):
        sdar = [judged_run("sdar", seed, [0.0, final]) for seed, final in enumerate(sdar_finals)]
        return report.sdar_beats_grpo(grpo + sdar, "alfworld-gen/valid")

    assert "holds at this scale" in verdict([0.3, 0.25, 0.4])
    assert "s0 +10.0 pp, s1 +5.0 pp, s2 +20.0 pp; mean +11.7 pp" in verdict([0.3, 0.25, 0.4])
    assert "not shown" in verdict([0.5, 0.2, 0.2])  # ahead on average, tied in two seeds
    assert "does not hold" in verdict([0.2, 0.2, 0.1])
    assert "not testable (2 of 3 seeds" in verdict([0.3, 0.3])
    assert "not testable (0 of 3" in report.sdar_beats_grpo(grpo, "alfworld/valid_seen")


def test_opsd_less_stable_judges_the_success_drop_and_the_gap_drift(report):
    steady_gaps, falling_gaps = [0.0] * 6, [0.0, 0.0, 0.0, -0.1, -0.2, -0.3]

    def verdict(opsd_successes, opsd_gaps):
        runs = []
        for seed in (0, 1, 2):
            runs += [
                judged_run("grpo", seed, [0.2, 0.2]),
                judged_run("sdar", seed, [0.2, 0.3], steady_gaps),
                judged_run("grpo_opsd", seed, opsd_successes, opsd_gaps),
            ]
        return report.opsd_less_stable(runs)

    both = verdict([0.3, 0.1], falling_gaps)
    assert "holds at this scale" in both
    assert "grpo_opsd +20.0 pp, sdar +0.0 pp (largest for GRPO+OPSD)" in both and "grpo_opsd -0.200" in both
    assert "holds in part" in verdict([0.3, 0.1], steady_gaps)
    assert "holds in part" in verdict([0.1, 0.2], falling_gaps)
    assert "does not hold" in verdict([0.1, 0.2], steady_gaps)
    incomplete = report.opsd_less_stable([judged_run("grpo", 0, [0.2])])
    assert "not testable (needs all 9 runs, has 1)" in incomplete


def test_the_report_judges_the_runs_the_driver_makes(report, tmp_path):
    """report.py keeps its own METHODS and SEEDS (both files run as scripts); they must be run.py's."""
    from test_experiment_driver import load_driver

    driver = load_driver(tmp_path)
    assert sorted(report.METHODS) == sorted(driver.METHODS) and report.SEEDS == driver.SEEDS


def test_reading_table_puts_the_warm_start_first_and_averages_each_method_and_step_over_seeds(
    report, tmp_path
):
    folder = tmp_path / "teacher_vs_student"
    folder.mkdir()

    def write(name, line_p):
        keys = ("student_line_p", "teacher_line_p", "student_p", "teacher_p")
        (folder / f"{name}.json").write_text(json.dumps({key: line_p for key in keys}))

    write("skill_reading", 0.4)
    write("skill_reading-base", 0.9)  # other probes (the base model, other skill texts) are not runs
    assert report.reading_table(tmp_path) is None  # no run probed yet
    write("skill_reading-sdar-s0-step12", 0.5)
    write("skill_reading-sdar-s1-step12", 0.7)
    write("skill_reading-sdar-s0-step6", 0.3)
    write("skill_reading-grpo_opsd-s0-step12", 0.45)
    table = report.reading_table(tmp_path)
    assert [row[:4] for row in table.rows] == [
        ("warm start", "0", "1", "0.400"),
        ("grpo_opsd", "12", "1", "0.450"),
        ("sdar", "6", "1", "0.300"),
        ("sdar", "12", "2", "0.600 ± 0.100"),
    ]
