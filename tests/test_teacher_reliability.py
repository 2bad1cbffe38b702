"""experiments/teacher_reliability: the criteria on hand-written runs (each verdict both ways), the run
table's overrides as valid configs, the warm start's fingerprint refusal, the commit refusal, `run.py
--status` on an empty results folder, and the report on two hand-written run folders. No training."""

import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import yaml

EXPERIMENT = Path(__file__).parents[1] / "experiments" / "teacher_reliability"
if str(EXPERIMENT) not in sys.path:  # the scripts import their siblings, as `python SCRIPT` lets them
    sys.path.insert(0, str(EXPERIMENT))

import criteria  # noqa: E402
import outcomes  # noqa: E402
import run_table  # noqa: E402
import warm_start_fingerprint  # noqa: E402
from criteria import FAILS, HOLDS, REPORTED, UNTESTED, Outcome, WarmStart  # noqa: E402

from sdar.config import load_config  # noqa: E402
from sdar.evaluation.runs import Run  # noqa: E402
from sdar.teacher_contexts import section_contexts  # noqa: E402


def load_script(name: str):
    """experiments/teacher_reliability/<name>.py as the module `teacher_reliability_<name>`."""
    spec = importlib.util.spec_from_file_location(f"teacher_reliability_{name}", EXPERIMENT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def games(count: int) -> float:
    """A success rate of `count` of the panel's 24 games."""
    return count / 24


def seeds(setting: str, *counts: int, **fields) -> dict:
    """Outcomes of seeds 0, 1, ... of a setting: final success of `counts` games each."""
    return {(setting, seed): Outcome(final=games(count), **fields) for seed, count in enumerate(counts)}


# ---- criterion 0 ------------------------------------------------------------------------------------------
def test_criterion_0_needs_20_points_from_the_line():
    held = criteria.criterion_0(WarmStart(plain=games(5), reliable=games(10)))  # +20.8 pp
    assert held.status == HOLDS and "+20.8 pp" in held.detail
    failed = criteria.criterion_0(WarmStart(plain=games(6), reliable=games(10)))  # +16.7 pp
    assert failed.status == FAILS and "+16.7 pp" in failed.detail
    assert criteria.criterion_0(WarmStart(plain=games(6))).status == UNTESTED


# ---- "ahead", the choice of λ and criterion 1 ------------------------------------------------------------
def test_ahead_needs_the_mean_beyond_both_stds_and_two_seed_pairs():
    quarter = {0: 0.25, 1: 0.25, 2: 0.25}
    # mean 0.4167 vs 0.25: +0.1667 > std 0.1179, and ahead in seeds 0 and 1
    assert criteria.ahead({0: 0.5, 1: 0.5, 2: 0.25}, quarter) is True
    # +0.1667 < std 0.2357 of the first
    assert criteria.ahead({0: 0.75, 1: 0.25, 2: 0.25}, quarter) is False
    # +0.1667 > both stds (0.1179), but ahead in one seed pair only
    assert criteria.ahead({0: 0.5, 1: 0.25, 2: 0.25}, {0: 0.0, 1: 0.25, 2: 0.25}) is False
    assert criteria.ahead({0: 0.5, 1: 0.5}, quarter) is None  # seed 2 missing


def claim_1_seed0(grpo: int, opsd_01: int, sdar_01: int, opsd_1: int, sdar_1: int) -> dict:
    counts = {"grpo": grpo, "opsd-l0.1-reliable": opsd_01, "sdar-l0.1-reliable": sdar_01}
    counts |= {"opsd-l1-reliable": opsd_1, "sdar-l1-reliable": sdar_1}
    return {(name, 0): Outcome(final=games(count)) for name, count in counts.items()}


def test_lambda_is_the_smallest_at_which_a_method_beats_grpo_on_seed_0():
    assert criteria.choose_lambda(claim_1_seed0(6, 6, 7, 9, 9)).lam == 0.1  # SDAR 7 games > GRPO 6 at 0.1
    chosen = criteria.choose_lambda(claim_1_seed0(6, 6, 5, 9, 4))  # at 0.1 neither; at 1 GRPO+OPSD
    assert chosen.lam == 1.0 and "GRPO+OPSD 37.5 %" in chosen.reason
    neither = criteria.choose_lambda(claim_1_seed0(6, 6, 6, 5, 6))
    assert neither.lam == 1.0 and "neither" in neither.reason
    missing = claim_1_seed0(6, 6, 6, 6, 6)
    del missing[("sdar-l1-reliable", 0)]
    assert criteria.choose_lambda(missing) is None


def test_criterion_1_holds_when_a_distilling_run_is_ahead_of_grpo():
    results = seeds("grpo", 6, 6, 6) | seeds("sdar-l1-reliable", 12, 12, 6)  # +0.167 > std 0.118; 2 pairs
    verdict = criteria.criterion_1(results, lam=1.0)
    assert verdict.status == HOLDS
    assert verdict.detail == "ahead of GRPO 25.0 ± 0.0 %: sdar-l1-reliable 41.7 ± 11.8 %"
    grpo, sdar = seeds("grpo", 6, 6, 6), seeds("sdar-l0.1-reliable", 6, 6, 6)
    assert criteria.criterion_1(grpo | seeds("opsd-l0.1-reliable", 6, 7, 6) | sdar, lam=0.1).status == FAILS
    assert criteria.criterion_1(grpo, lam=None).status == UNTESTED
    partial = grpo | seeds("opsd-l0.1-reliable", 6, 7) | sdar
    untested = criteria.criterion_1(partial, lam=0.1)
    assert untested.status == UNTESTED and "opsd-l0.1-reliable" in untested.detail
    seed_0 = seeds("grpo", 12) | seeds("opsd-l0.01-reliable", 0) | seeds("sdar-l0.01-reliable", 14)
    assert criteria.small_lambda_note(seed_0) == (
        "opsd-l0.01-reliable not ahead on seed 0 (0.0 % vs GRPO 50.0 %); "
        "sdar-l0.01-reliable ahead on seed 0 (58.3 % vs GRPO 50.0 %)"
    )
    assert criteria.small_lambda_note(seeds("grpo", 12)) == "not in yet"


# ---- criterion 2 and its mechanism ----------------------------------------------------------------------
def claim_2_runs(opsd_half: tuple, sdar_half: tuple, **half_fields) -> dict:
    results = seeds("opsd-l0.1-reliable", 12, 12, 12) | seeds("sdar-l0.1-reliable", 12, 12, 12)
    results |= seeds("opsd-l0.1-half", *opsd_half) | seeds("sdar-l0.1-half", *sdar_half)
    return results


def test_criterion_2_holds_when_the_half_teacher_costs_opsd_more_than_sdar():
    held = criteria.criterion_2(claim_2_runs((6, 6, 12), (12, 12, 12)), lam=0.1)  # +25, +25, 0 pp
    assert held.status == HOLDS
    assert "s0 +25.0 pp, s1 +25.0 pp, s2 +0.0 pp; mean +16.7 pp, positive in 2 of 3" in held.detail
    failed = criteria.criterion_2(claim_2_runs((12, 12, 12), (6, 12, 12)), lam=0.1)  # −25, 0, 0 pp
    assert failed.status == FAILS and "mean -8.3 pp" in failed.detail
    assert criteria.criterion_2(claim_2_runs((6, 6), (12, 12, 12)), lam=0.1).status == UNTESTED


def test_the_mechanism_holds_when_opsd_moves_toward_the_goal_more_than_sdar():
    warm = WarmStart(goal_p=0.1)
    results = {
        (name, seed): Outcome(final=0.5, goal_p=goal)
        for name, goal in (("opsd-l0.1-half", 0.3), ("sdar-l0.1-half", 0.2))
        for seed in range(3)
    }
    held = criteria.criterion_2_mechanism(results, 0.1, warm)
    assert held.status == HOLDS and "opsd-l0.1-half +0.200, sdar-l0.1-half +0.100" in held.detail
    swapped = {(name.replace("opsd", "x").replace("sdar", "opsd").replace("x", "sdar"), seed): outcome
               for (name, seed), outcome in results.items()}  # fmt: skip
    assert criteria.criterion_2_mechanism(swapped, 0.1, warm).status == FAILS
    assert criteria.criterion_2_mechanism(results, 0.1, WarmStart()).status == UNTESTED


# ---- criterion 3 ------------------------------------------------------------------------------------------
def test_criterion_3_holds_when_the_gate_leaves_half_on_5_percent_of_tokens():
    names = ("sdar-l0.01-half", "sdar-l0.1-half", "sdar-l1-half", "sdar-adaptive-half")

    def gate(*shares):
        return {
            (name, 0): Outcome(final=0.5, gate_off_half=share)
            for name, share in zip(names, shares, strict=False)
        }

    held = criteria.criterion_3(gate(0.04, 0.06, 0.08, 0.06))  # mean 6 %
    assert held.status == HOLDS and held.detail.startswith("6.0 % of tokens over 4 runs")
    assert criteria.criterion_3(gate(0.02, 0.03, 0.04, 0.03)).status == FAILS  # mean 3 %
    assert criteria.criterion_3(gate(0.02, 0.03, 0.04)).status == UNTESTED  # the adaptive run is missing


# ---- criterion 4 ------------------------------------------------------------------------------------------
def half_sweep(l001: int, l01: int, l1: int) -> dict:
    return seeds("sdar-l0.01-half", l001) | seeds("sdar-l0.1-half", l01) | seeds("sdar-l1-half", l1)


def verdict_of(verdicts, claim):
    return next(verdict for verdict in verdicts if verdict.claim == claim)


def test_criterion_4a_adaptive_not_behind_the_best_constant():
    within = half_sweep(6, 9, 6) | seeds("sdar-adaptive-half", 8)  # best sdar-l0.1-half: −1 game
    held = verdict_of(criteria.criterion_4(within, 0.1), "4a, half")
    assert held.status == HOLDS and "sdar-adaptive-half − sdar-l0.1-half = -1 games" in held.detail
    behind = half_sweep(6, 9, 6) | seeds("sdar-adaptive-half", 6)  # −3 games: seeds 1 and 2 decide
    assert verdict_of(criteria.criterion_4(behind, 0.1), "4a, half").status == UNTESTED
    behind |= seeds("sdar-l0.1-half", 9, 9, 9) | seeds("sdar-adaptive-half", 6, 6, 6)
    assert verdict_of(criteria.criterion_4(behind, 0.1), "4a, half").status == FAILS
    assert verdict_of(criteria.criterion_4(within, 0.1), "4a, reliable").status == UNTESTED


def test_criterion_4b_routing_ahead_of_the_half_line_alone():
    close = seeds("sdar-l0.1-half", 8) | seeds("sdar-routed-half", 9)  # +1 game: seed 0 decides
    assert verdict_of(criteria.criterion_4(close, 0.1), "4b").status == FAILS
    ahead = seeds("sdar-l0.1-half", 8, 8, 8) | seeds("sdar-routed-half", 12, 12, 12)  # +4 games, then 3 seeds
    held = verdict_of(criteria.criterion_4(ahead, 0.1), "4b")
    assert held.status == HOLDS and "+4 games" in held.detail
    assert verdict_of(criteria.criterion_4(ahead, None), "4b").status == UNTESTED
    alone = verdict_of(criteria.criterion_4(seeds("sdar-l0.1-half", 8), 0.1), "4b")
    assert alone.status == UNTESTED and alone.detail == "seed 0 of sdar-routed-half is not in"


def test_criterion_4c_reports_the_other_gates_without_a_direction():
    results = seeds("sdar-l0.1-half", 8) | seeds("sdar-entropy-half", 9) | seeds("sdar-soft_or-half", 2)
    verdicts = criteria.criterion_4(results, 0.1)
    assert verdict_of(verdicts, "4c, entropy").status == REPORTED
    assert verdict_of(verdicts, "4c, soft_or").status == UNTESTED  # −6 games: seeds 1 and 2 first


def test_seeds_1_and_2_go_to_the_informative_settings_and_to_close_claim_4_pairs():
    assert criteria.later_seeds({}, None)[0] == []
    results = seeds("sdar-l0.1-half", 8) | seeds("sdar-routed-half", 12) | seeds("sdar-entropy-half", 9)
    due, waiting = criteria.later_seeds(results, 0.1)
    informative = ["grpo", "opsd-l0.1-reliable", "opsd-l0.1-half", "sdar-l0.1-reliable", "sdar-l0.1-half"]
    assert due == [*informative, "sdar-routed-half"]  # routed differs by 4 games; entropy by 1
    assert {what for what, _ in waiting} == {
        "sdar-adaptive-reliable",
        "sdar-adaptive-half",
        "sdar-soft_or-half",
    }


# ---- the run table ----------------------------------------------------------------------------------------
def test_the_run_table_names_every_setting_and_its_overrides_make_valid_configs():
    names = (
        "grpo",
        *(f"{p}-l{lam}-reliable" for lam in ("0.1", "1", "0.01") for p in ("opsd", "sdar")),
        *(f"{p}-l{lam}-half" for lam in ("0.1", "1", "0.01") for p in ("opsd", "sdar")),
        "sdar-adaptive-reliable",
        "sdar-adaptive-half",
        "sdar-routed-half",
        "sdar-entropy-half",
        "sdar-soft_or-half",
        "grpo-noskip",  # exploratory
    )
    assert names == run_table.SETTING_NAMES and tuple(run_table.EXPLORATORY) == ("grpo-noskip",)
    waiting = [name for name, setting in run_table.run_table(None).items() if setting.waits_for_lambda]
    assert waiting == ["sdar-routed-half", "sdar-entropy-half", "sdar-soft_or-half"]
    pinned = ["model.name=/cache/sft/0123456789abcdef", "sft.warm_start=false", "seed=1"]
    half = "alfworld-location-half"
    libraries = {"reliable": "alfworld-location", "half": half, "routed": half}
    for name, setting in run_table.run_table(0.1).items():
        config = load_config(str(EXPERIMENT / "config.yaml"), [*setting.overrides, *pinned])
        algorithm, teacher = config.algorithm, config.teacher
        assert algorithm.method == setting.method and algorithm.gate == setting.gate, name
        assert config.seed == 1 and not config.sft.warm_start
        assert config.model.name == "/cache/sft/0123456789abcdef"
        if setting.teacher:
            assert teacher.skill_library == libraries[setting.teacher], name
        if setting.weight == "adaptive":
            assert algorithm.distill_weight == "adaptive" and algorithm.distill_weight_target == 0.5
        elif setting.weight:
            assert algorithm.distill_weight == "constant", name
            assert algorithm.distill_coef == float(setting.weight), name
        contexts = section_contexts(teacher)
        if setting.teacher == "routed":
            assert [(c.name, c.skill_library, c.skills) for c in contexts] == [
                ("line", "alfworld-location-half", True),
                ("plain", "alfworld-location-half", False),
            ]
        else:
            assert len(contexts) == 1
        assert config.trainer.skip_zero_gradient == (name != "grpo-noskip"), name
    assert run_table.parse_run_name("sdar-soft_or-half-s2") == ("sdar-soft_or-half", 2)
    assert run_table.parse_run_name("opsd-l1-reliable-s0") == ("opsd-l1-reliable", 0)
    assert run_table.parse_run_name("warm-start") is None


# ---- the driver -------------------------------------------------------------------------------------------
@pytest.fixture
def driver(tmp_path, monkeypatch):
    """run.py with every folder it writes under tmp_path and the warm start at tmp_path/cache/sft/<key>."""
    module = load_script("run")
    for name, folder in (("RESULTS", "results"), ("PROBES", "probes"), ("WARM_START_EVALS", "warm_start")):
        monkeypatch.setattr(module, name, tmp_path / folder)
    monkeypatch.setattr(module, "WARM_START_LOG", tmp_path / "warm_start" / "pieces.log")
    monkeypatch.setattr(module, "CHOSEN_LAMBDA", tmp_path / "chosen_lambda.json")
    monkeypatch.setattr(module, "WARM_START_RECORD", tmp_path / "warm_start.json")
    warm = tmp_path / "cache" / "sft" / "0123456789abcdef"
    monkeypatch.setattr(module, "warm_start_directory", lambda: warm)
    return module


def make_warm_start(directory: Path, weights: bytes = b"weights", config: str = '{"r": 16}') -> None:
    adapter = directory / "adapter"
    adapter.mkdir(parents=True, exist_ok=True)
    (adapter / "adapter_config.json").write_text(config)
    (adapter / "adapter_model.safetensors").write_bytes(weights)
    (directory / "sft_summary.json").write_text(json.dumps({"machine": {"threads": 2, "cpu": "x"}}))


def test_status_on_an_empty_results_folder_lists_the_warm_start_then_seed_0(driver, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["run.py", "--status"])
    assert driver.main() == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:5] == [
        "left: warm-start: sft",
        "left: warm-start: fingerprint",
        "left: warm-start: valid panel without the line",
        "left: warm-start: valid panel acting with the line",
        "left: warm-start: first-turn probe",
    ]
    assert lines[5:7] == ["left: grpo-s0: train", "left: grpo-s0: first-turn probe"]
    assert "waiting: sdar-routed-half-s0: for the λ of claim 2 (chosen_lambda.json, or --lam)" in lines
    assert lines[-3].startswith("not made unless named: opsd-l0.01-half, opsd-l0.1-half, opsd-l1-half")
    assert lines[-2].startswith("not made unless named: grpo-noskip (exploratory: ")
    assert lines[-1] == f"{5 + 2 * 12} stage(s) left"  # 15 settings need no chosen λ, 3 of them twins
    assert not (driver.RESULTS).exists()  # --status writes nothing


def test_runs_go_in_the_running_order_claims_1_and_2_then_their_later_seeds_then_the_rest(driver):
    runs, _ = driver.planned_runs([0, 1, 2], None, 1.0)
    order = [driver.run_name(setting.name, seed) for setting, seed in runs]
    first = ["grpo", "opsd-l0.1-reliable", "sdar-l0.1-reliable", "opsd-l1-reliable", "sdar-l1-reliable"]
    first += ["sdar-l1-half"]  # claim 2 at the chosen λ = 1; GRPO+OPSD's half runs repeat their twins
    assert order[:6] == [f"{name}-s0" for name in first]
    informative = ["grpo", "opsd-l1-reliable", "sdar-l1-reliable", "sdar-l1-half"]
    assert order[6:14] == [f"{name}-s{seed}" for seed in (1, 2) for name in informative]
    named_only = set(run_table.ONLY_WHEN_NAMED)  # the twins and the exploratory settings
    rest = [name for name in driver.SETTING_NAMES if name not in first and name not in named_only]
    assert order[14:] == [f"{name}-s0" for name in rest] and "grpo-noskip-s0" not in order
    before_lambda, _ = driver.planned_runs([0], None, None)  # the claim-1 runs first, so λ is chosen early
    assert [setting.name for setting, _ in before_lambda][:5] == first[:5]
    named, _ = driver.planned_runs([1], ["opsd-l1-half"], 1.0)  # a twin is made when named exactly
    assert [driver.run_name(setting.name, seed) for setting, seed in named] == ["opsd-l1-half-s1"]
    assert (
        driver.planned_runs([0], ["opsd-*"], 1.0)[0] == driver.planned_runs([0], ["opsd-*-reliable"], 1.0)[0]
    )
    assert [setting.name for setting, _ in driver.planned_runs([0], ["grpo*"], 1.0)[0]] == ["grpo"]
    explored, _ = driver.planned_runs([0], ["grpo-noskip"], 1.0)  # outside the design: made when named
    assert [setting.overrides for setting, _ in explored] == [
        ("algorithm.method=grpo", "trainer.skip_zero_gradient=false")
    ]


def test_a_run_not_made_takes_its_twins_outcome_and_twins_made_both_ways_are_compared():
    reliable = Outcome(final=games(12), step6=games(11), goal_p=0.1, object_p=0.5)
    results = {("opsd-l0.1-reliable", 0): reliable, ("opsd-l0.1-reliable", 1): reliable}
    results[("opsd-l0.1-half", 1)] = reliable  # made: the same run
    filled = criteria.with_twins(results)
    assert filled[("opsd-l0.1-half", 0)].copied_from == "opsd-l0.1-reliable-s0"
    assert filled[("opsd-l0.1-half", 0)].final == games(12)
    assert filled[("opsd-l0.1-half", 1)].copied_from == ""  # a run made stays itself
    assert ("opsd-l1-half", 0) not in filled and ("sdar-l0.1-half", 0) not in filled  # no twin, no copy
    assert criteria.twin_checks(filled) == [("opsd-l0.1-half-s1 against opsd-l0.1-reliable-s1", [])]
    assert "opsd-l0.1-half-s1 against opsd-l0.1-reliable-s1: the same" in criteria.twin_text(filled)
    results[("opsd-l0.1-half", 1)] = Outcome(final=games(12), step6=games(10), goal_p=0.1, object_p=0.6)
    assert criteria.twin_checks(results) == [
        (
            "opsd-l0.1-half-s1 against opsd-l0.1-reliable-s1",
            ["step-6 success", "first-turn P(object's receptacle)"],
        )
    ]
    assert "DIFFERENT in step-6 success" in criteria.twin_text(results)


def test_on_a_fresh_machine_every_stage_waits_for_the_warm_start_made_again(driver):
    """The record and criterion 0's evaluations are committed; the warm start is not here: it is made again
    (with the recorded thread count) before anything that reads it starts, even with several workers."""
    driver.WARM_START_RECORD.write_text(json.dumps({"fingerprint": "f" * 64, "threads": 3}))
    for name in ("plain", "reliable"):
        (driver.WARM_START_EVALS / name).mkdir(parents=True)
        (driver.WARM_START_EVALS / name / "summary.json").write_text("{}")
    stages = driver.stages_not_done([0], ["grpo"], None)
    keys = [stage.key for stage in stages]
    assert keys == [
        "warm-start: sft",
        "warm-start: first-turn probe",
        "grpo-s0: train",
        "grpo-s0: first-turn probe",
    ]
    assert stages[0].threads == 3
    scheduler = driver.Scheduler(stages, deadline=None)
    assert scheduler.next().key == "warm-start: sft"
    assert not any(scheduler.ready(stage) for stage in stages[1:])  # all wait while it runs


def test_a_fresh_run_is_pinned_to_the_warm_start_and_a_resumed_one_keeps_its_commit(driver, monkeypatch):
    setting = run_table.run_table(None)["sdar-l1-half"]
    train = driver.train_stage(setting, 2)
    assert train.command[3:5] == ("train", str(driver.CONFIG))
    assert train.command[-6:] == (
        "teacher.skill_library=alfworld-location-half",
        f"model.name={driver.warm_start_directory()}",
        "sft.warm_start=false",
        "seed=2",
        "--output",
        str(driver.RESULTS / "sdar-l1-half-s2"),
    )
    run_dir = driver.RESULTS / "sdar-l1-half-s2"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "latest").write_text("step_000004")
    (run_dir / "run_info.json").write_text(json.dumps({"code": {"commit": "a" * 40}}))
    assert driver.train_stage(setting, 2).command[-2:] == ("--resume", str(run_dir))
    monkeypatch.setattr(driver, "current_commit", lambda: "b" * 40)
    assert "trained at commit aaaaaaaaaa" in driver.commit_problem(run_dir)
    assert driver.commit_problem(run_dir, driver.Allowed(new_commit=True)) == ""
    monkeypatch.setattr(driver, "current_commit", lambda: "a" * 40)
    assert driver.commit_problem(run_dir) == ""


def test_a_warm_start_of_another_fingerprint_is_refused(driver, monkeypatch, capsys):
    warm = driver.warm_start_directory()
    make_warm_start(warm)
    assert "not recorded yet" in driver.fingerprint_problem()
    assert driver.record_fingerprint() == ""
    record = json.loads(driver.WARM_START_RECORD.read_text())
    assert record["threads"] == 2 and record["key"] == "0123456789abcdef" and "torch" in record
    expected = warm_start_fingerprint.adapter_fingerprint(warm)["fingerprint"]
    assert expected == hashlib.sha256(b"weights").hexdigest()  # the weights' own SHA-256
    assert record["fingerprint"] == expected and driver.fingerprint_problem() == ""
    make_warm_start(warm, config='{"r": 16, "field_of_a_newer_peft": null}')  # the same weights: the same
    assert driver.fingerprint_problem() == ""
    make_warm_start(warm, weights=b"other weights")  # made again, and different
    assert "--new-warm-start" in driver.fingerprint_problem()
    assert "--new-warm-start" in driver.record_fingerprint()  # a stage's action refuses too
    monkeypatch.setattr(driver, "Scheduler", lambda *arguments: pytest.fail("no stage may start"))
    monkeypatch.setattr(sys, "argv", ["run.py", "--seeds", "0"])
    assert driver.main() == 2 and "is not the one recorded in warm_start.json" in capsys.readouterr().err
    assert driver.fingerprint_problem(driver.Allowed(new_warm_start=True)) == ""  # recorded in its place
    replaced = json.loads(driver.WARM_START_RECORD.read_text())
    assert replaced["replaced"][0]["fingerprint"] == expected and replaced["fingerprint"] != expected
    assert driver.fingerprint_problem() == ""


def test_no_run_starts_when_criterion_0_does_not_hold(driver, monkeypatch, capsys):
    for name, rate in (("plain", games(6)), ("reliable", games(8))):
        (driver.WARM_START_EVALS / name).mkdir(parents=True)
        summary = {"panel": {"name": "alfworld-gen/valid", "size": 24}, "success_rate": rate}
        (driver.WARM_START_EVALS / name / "summary.json").write_text(json.dumps(summary))
    assert "criterion 0 does not hold" in driver.precondition_problem()
    monkeypatch.setattr(sys, "argv", ["run.py", "--status"])
    assert driver.main() == 0
    out = capsys.readouterr().out
    assert "left: grpo-s0: train" not in out and "blocked: criterion 0 does not hold" in out


# ---- the report -------------------------------------------------------------------------------------------
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


def test_the_update_table_counts_the_optimizer_steps_taken_and_their_gradient_norms():
    report = load_script("report")
    metrics = [
        {"update/optimizer_steps": 1, "grad/norm": 0.1},
        {"update/optimizer_steps": 0, "grad/norm": 0.0},  # skipped: a zero gradient
        {"update/optimizer_steps": 1, "grad/norm": 0.02},
    ]
    table = report.update_table([Run("grpo-s0", "", "", "", None, metrics=metrics)])
    assert table.rows == (("grpo-s0", "2/3", "2.0e-02 – 1.0e-01"),)
