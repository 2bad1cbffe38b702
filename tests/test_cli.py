"""The end of `sdar train`: the summary printed from the run's history and its panel evaluations."""

from pathlib import Path

from sdar.cli import print_run_summary


def test_run_summary_prints_the_training_signal_and_the_panel_before_and_after(capsys):
    history = [
        {"step": 1, "train/won_rate": 0.25, "train/valid_action_ratio": 0.5, "distill/gate_mean": 0.48,
         "distill/gap_mean": -0.06, "train/admissible_action_ratio": 0.4},
        {"step": 2, "train/won_rate": 0.5, "train/valid_action_ratio": 0.9, "distill/gate_mean": 0.5,
         "distill/gap_mean": 0.01, "distill/positive_gap_ratio": 0.4, "train/admissible_action_ratio": 0.75},
    ]  # fmt: skip
    panel = {"name": "alfworld-gen/valid", "size": 12, "fingerprint": "abc"}
    before, after = {"success_rate": 0.0, "panel": panel}, {"success_rate": 0.25, "panel": panel}
    evaluations = {"before": before, "after": after}
    print_run_summary(Path("runs/x"), history, evaluations)
    printed = capsys.readouterr().out
    assert "steps 1..2: train won rate 0.25 -> 0.50" in printed
    assert "final valid action ratio 0.90, admissible 0.75" in printed
    assert "gate mean 0.480 -> 0.500, gap mean -0.060 -> +0.010, positive-gap ratio 0.40" in printed
    assert "before training 0.0 %" in printed and "after 25.0 %" in printed


def test_run_summary_leaves_out_what_the_env_cannot_give(capsys):
    history = [{"step": 1, "train/won_rate": 0.0, "train/valid_action_ratio": 1.0}]  # e.g. GRPO on WebShop
    print_run_summary(Path("runs/x"), history, {})
    printed = capsys.readouterr().out
    assert "final valid action ratio 1.00\n" in printed
    assert "admissible" not in printed and "gate" not in printed
