"""experiments/teacher_reliability's criteria on hand-written outcomes (each verdict both ways), its twins'
outcomes, and the run table's overrides as valid configs. No training."""

from teacher_reliability_cases import EXPERIMENT, games, seeds

# isort: split
# the experiment's own scripts, importable once teacher_reliability_cases is imported
import criteria
import run_table
from criteria import FAILS, HOLDS, REPORTED, UNTESTED, Outcome, WarmStart

from sdar.config import load_config
from sdar.teacher_contexts import section_contexts


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
