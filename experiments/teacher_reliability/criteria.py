"""The criteria of README.md ("Criteria, fixed before the runs") as pure functions of the runs' outcomes.

Each returns a Verdict: "holds", "does not hold", "untested" (with why) or, for the gates of claim 4 that
carry no directional claim, "reported". Also here: claim 1's rule that chooses the λ of claims 2-4 from seed
0, and which settings get seeds 1 and 2 (the Order of the design). report.py feeds them the committed results
and run.py the same, to know what to run next; tests feed them hand-written outcomes.

"Ahead" (README): A is ahead of B when mean_s A_s − mean_s B_s > max(std A, std B) (population std over the
3 seeds) and A_s > B_s in at least 2 of the 3 seeds, A_s the final success of seed s.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Mapping
from dataclasses import dataclass

from run_table import (
    CLAIM_1_LAMBDAS,
    LAMBDAS,
    SEEDS,
    TEACHER_BLIND_TWINS,
    TEACHERS,
    constant_name,
    lambda_text,
    run_name,
)

PANEL_TASKS = 24  # the valid panel's games (config.yaml: eval.num_tasks)
PRECONDITION_GAIN = 0.20  # criterion 0: the line must win 20 points more games
GATE_ACTIVE_SHARE = 0.05  # criterion 3: tokens with the gate more than 0.05 from ½, mean over training
MORE_SEEDS_GAMES = 2  # claim 4: a seed-0 difference of this many games gets seeds 1 and 2
TOLERANCE = 1e-9  # success rates are k/24: compare them without float noise deciding a tie
HOLDS, FAILS, UNTESTED, REPORTED = "holds", "does not hold", "untested", "reported"


@dataclass(frozen=True)
class Outcome:
    """One run (setting, seed): success rates on the valid panel, the gate, the first-turn probe."""

    final: float | None = None  # success rate at step 12 (eval/final)
    step6: float | None = None  # at step 6 (eval/step_6)
    tasks: int = PANEL_TASKS
    gate_off_half: float | None = None  # distill/gate_off_half_ratio, mean over the run's steps
    goal_p: float | None = None  # the student's first-turn probability of going to the goal receptacle
    object_p: float | None = None  # ... to the object's receptacle
    copied_from: str = ""  # a run not made: the run it repeats step for step (with_twins)


TWIN_FIELDS = {  # what twin_checks compares: Outcome field -> how the report names it
    "final": "final success",
    "step6": "step-6 success",
    "goal_p": "first-turn P(goal receptacle)",
    "object_p": "first-turn P(object's receptacle)",
}


@dataclass(frozen=True)
class WarmStart:
    """The shared warm start on the panel: without the line, acting with the reliable line; its probe."""

    plain: float | None = None
    reliable: float | None = None
    tasks: int = PANEL_TASKS
    goal_p: float | None = None
    object_p: float | None = None


Results = Mapping[tuple[str, int], Outcome]  # (setting, seed) -> outcome


@dataclass(frozen=True)
class Verdict:
    claim: str  # "0", "1", "2", "2, mechanism", "3", "4a, reliable", ...
    status: str  # HOLDS, FAILS, UNTESTED or REPORTED
    detail: str

    def text(self) -> str:
        return f"**{self.status}**: {self.detail}"


def with_twins(results: Results) -> dict[tuple[str, int], Outcome]:
    """`results` plus each GRPO+OPSD half-teacher run not made, as its reliable twin of the same seed
    (run_table.TEACHER_BLIND_TWINS), marked `copied_from`."""
    filled = dict(results)
    for half, reliable in TEACHER_BLIND_TWINS.items():
        for seed in SEEDS:
            if (half, seed) not in results and (reliable, seed) in results:
                copy = dataclasses.replace(results[(reliable, seed)], copied_from=run_name(reliable, seed))
                filled[(half, seed)] = copy
    return filled


def twin_checks(results: Results) -> list[tuple[str, list[str]]]:
    """For each twin pair made both ways: (what was compared, what of TWIN_FIELDS differs). An
    empty list confirms the twins are the same run; a non-empty one says copying twins is wrong."""
    checks = []
    for half, reliable in TEACHER_BLIND_TWINS.items():
        for seed in SEEDS:
            pair = results.get((half, seed)), results.get((reliable, seed))
            if None in pair or pair[0].copied_from:
                continue
            differing = [
                label
                for field, label in TWIN_FIELDS.items()
                if getattr(pair[0], field) != getattr(pair[1], field)
            ]
            checks.append((f"{run_name(half, seed)} against {run_name(reliable, seed)}", differing))
    return checks


def twin_text(results: Results) -> str:
    """One sentence on twin_checks of `results` (outcomes copied by with_twins are not checked)."""
    checks = twin_checks(results)
    if not checks:
        return "No GRPO+OPSD run has been made with both teachers yet, so the twins are not checked."
    parts = [
        f"{pair}: {'the same' if not differing else 'DIFFERENT in ' + ', '.join(differing)}"
        for pair, differing in checks
    ]
    fields = ", ".join(TWIN_FIELDS.values())
    return f"Twins made both ways, compared in {fields}: " + "; ".join(parts) + "."


def percent(rate: float) -> str:
    return f"{100 * rate:.1f} %"


def points(difference: float) -> str:
    return f"{100 * difference:+.1f} pp"


def finals(results: Results, setting: str) -> dict[int, float]:
    """Final success per seed of a setting, for the seeds that have it."""
    return {
        seed: outcome.final
        for (name, seed), outcome in results.items()
        if name == setting and outcome.final is not None
    }


def seed0_final(results: Results, setting: str) -> float | None:
    return finals(results, setting).get(0)


def complete(values: Mapping[int, float]) -> bool:
    return all(seed in values for seed in SEEDS)


def mean_std(values: Mapping[int, float]) -> tuple[float, float]:
    numbers = [values[seed] for seed in SEEDS if seed in values]
    return statistics.fmean(numbers), statistics.pstdev(numbers)


def ahead(first: Mapping[int, float], second: Mapping[int, float]) -> bool | None:
    """Whether `first` is ahead of `second` (module docstring); None unless both have every seed."""
    if not (complete(first) and complete(second)):
        return None
    (mean_a, std_a), (mean_b, std_b) = mean_std(first), mean_std(second)
    pairs_ahead = sum(first[seed] > second[seed] + TOLERANCE for seed in SEEDS)
    return mean_a - mean_b > max(std_a, std_b) + TOLERANCE and pairs_ahead >= 2


def summary_text(name: str, values: Mapping[int, float]) -> str:
    mean, std = mean_std(values)
    return f"{name} {100 * mean:.1f} ± {100 * std:.1f} %"


def criterion_0(warm: WarmStart) -> Verdict:
    """The warm start acting with the reliable line wins at least 20 points more games than without it."""
    if warm.plain is None or warm.reliable is None:
        return Verdict("0", UNTESTED, "the warm start's panel evaluations (warm_start/) are not in")
    gain = warm.reliable - warm.plain
    status = HOLDS if gain >= PRECONDITION_GAIN - TOLERANCE else FAILS
    detail = (
        f"the warm start wins {percent(warm.reliable)} acting with the reliable line and "
        f"{percent(warm.plain)} without it: {points(gain)} (needs at least +{100 * PRECONDITION_GAIN:.0f} pp)"
    )
    return Verdict("0", status, detail)


@dataclass(frozen=True)
class LambdaChoice:
    lam: float
    reason: str


CLAIM_1_SEED0 = (
    "grpo",
    *(constant_name(p, lam, "reliable") for lam in CLAIM_1_LAMBDAS for p in ("opsd", "sdar")),
)


LAMBDA_RULE = (
    "the smallest λ in {0.1, 1} at which the better of GRPO+OPSD and SDAR with the reliable teacher has a "
    "higher final success than GRPO on seed 0; λ = 1 when neither has at either"
)


def choose_lambda(results: Results) -> LambdaChoice | None:
    """Claim 1's rule (LAMBDA_RULE) on seed 0's final success; None until those runs are in."""
    values = {name: seed0_final(results, name) for name in CLAIM_1_SEED0}
    if any(value is None for value in values.values()):
        return None
    grpo = values["grpo"]
    for lam in CLAIM_1_LAMBDAS:
        opsd, sdar = (values[constant_name(p, lam, "reliable")] for p in ("opsd", "sdar"))
        if max(opsd, sdar) > grpo + TOLERANCE:
            reason = (
                f"seed 0, reliable teacher, λ = {lambda_text(lam)}: GRPO+OPSD {percent(opsd)}, SDAR "
                f"{percent(sdar)}, GRPO {percent(grpo)}"
            )
            return LambdaChoice(lam, reason)
    seen = ", ".join(f"{name} {percent(value)}" for name, value in values.items())
    return LambdaChoice(1.0, f"seed 0: neither method is ahead of GRPO at λ = 0.1 or 1 ({seen}), so λ = 1")


def criterion_1(results: Results, lam: float | None) -> Verdict:
    """With the reliable teacher, GRPO+OPSD or SDAR at some λ ∈ {0.1, 1} is ahead of GRPO (3 seeds)."""
    grpo = finals(results, "grpo")
    candidates = [constant_name(p, value, "reliable") for value in CLAIM_1_LAMBDAS for p in ("opsd", "sdar")]
    judged = {name: ahead(finals(results, name), grpo) for name in candidates}
    winners = [name for name, is_ahead in judged.items() if is_ahead]
    if winners:
        shown = "; ".join(summary_text(name, finals(results, name)) for name in winners)
        return Verdict("1", HOLDS, f"ahead of {summary_text('GRPO', grpo)}: {shown}")
    if lam is None:
        return Verdict("1", UNTESTED, "the λ of claim 2 is not chosen yet (seed 0 of the claim-1 runs)")
    at_chosen = [constant_name(p, lam, "reliable") for p in ("opsd", "sdar")]
    if any(judged.get(name) is None for name in at_chosen) or not complete(grpo):
        missing = [name for name in ("grpo", *at_chosen) if not complete(finals(results, name))]
        return Verdict("1", UNTESTED, f"seeds 0-2 of {', '.join(missing)} are not all in")
    tested = [name for name, is_ahead in judged.items() if is_ahead is not None]
    shown = "; ".join(summary_text(name, finals(results, name)) for name in tested)
    return Verdict(
        "1", FAILS, f"none ahead of {summary_text('GRPO', grpo)}: {shown} (the other λ: seed 0 only)"
    )


def small_lambda_note(results: Results) -> str:
    """Claim 1's expectation: at λ = 0.01 neither method is ahead of GRPO (seed 0 until 3 seeds are in)."""
    grpo = finals(results, "grpo")
    parts = []
    for prefix in ("opsd", "sdar"):
        name = constant_name(prefix, 0.01, "reliable")
        mine = finals(results, name)
        verdict = ahead(mine, grpo)
        if verdict is not None:
            parts.append(f"{name} {'ahead' if verdict else 'not ahead'} ({summary_text(name, mine)})")
        elif 0 in mine and 0 in grpo:
            seen = "ahead" if mine[0] > grpo[0] + TOLERANCE else "not ahead"
            parts.append(f"{name} {seen} on seed 0 ({percent(mine[0])} vs GRPO {percent(grpo[0])})")
    return "; ".join(parts) if parts else "not in yet"


def claim_2_settings(lam: float) -> tuple[str, str, str, str]:
    """(OPSD reliable, OPSD half, SDAR reliable, SDAR half) at λ."""
    return tuple(constant_name(p, lam, t) for p in ("opsd", "sdar") for t in TEACHERS)


def criterion_2(results: Results, lam: float | None) -> Verdict:
    """(OPSD reliable − OPSD half) − (SDAR reliable − SDAR half) > 0: in the mean over seeds, in ≥ 2 of 3."""
    if lam is None:
        return Verdict("2", UNTESTED, "the λ of claim 2 is not chosen yet")
    names = claim_2_settings(lam)
    values = [finals(results, name) for name in names]
    if not all(complete(v) for v in values):
        missing = [name for name, v in zip(names, values, strict=True) if not complete(v)]
        return Verdict(
            "2", UNTESTED, f"at λ = {lambda_text(lam)}, seeds 0-2 of {', '.join(missing)} are not all in"
        )
    opsd_rel, opsd_half, sdar_rel, sdar_half = values
    differences = {s: (opsd_rel[s] - opsd_half[s]) - (sdar_rel[s] - sdar_half[s]) for s in SEEDS}
    mean = statistics.fmean(differences.values())
    positive = sum(d > TOLERANCE for d in differences.values())
    status = HOLDS if mean > TOLERANCE and positive >= 2 else FAILS
    per_seed = ", ".join(f"s{s} {points(d)}" for s, d in differences.items())
    detail = (
        f"at λ = {lambda_text(lam)}, (OPSD reliable − OPSD half) − (SDAR reliable − SDAR half): {per_seed}; "
        f"mean {points(mean)}, positive in {positive} of {len(SEEDS)}"
    )
    return Verdict("2", status, detail)


def goal_rise(results: Results, setting: str, warm: WarmStart) -> float | None:
    """Mean over seeds 0-2 of the run's first-turn P(goal receptacle) minus the warm start's; None when a
    probe is missing."""
    values = [results.get((setting, seed), Outcome()).goal_p for seed in SEEDS]
    if warm.goal_p is None or any(value is None for value in values):
        return None
    return statistics.fmean(values) - warm.goal_p


def criterion_2_mechanism(results: Results, lam: float | None, warm: WarmStart) -> Verdict:
    """Under the half teacher, GRPO+OPSD's first-turn P(goal receptacle) rises more from the warm start's
    than SDAR's (mean over seeds 0-2)."""
    claim = "2, mechanism"
    if lam is None:
        return Verdict(claim, UNTESTED, "the λ of claim 2 is not chosen yet")
    opsd, sdar = (constant_name(p, lam, "half") for p in ("opsd", "sdar"))
    rises = {name: goal_rise(results, name, warm) for name in (opsd, sdar)}
    if None in rises.values():
        return Verdict(
            claim, UNTESTED, f"probes of seeds 0-2 of {opsd} and {sdar} or of the warm start are missing"
        )
    status = HOLDS if rises[opsd] > rises[sdar] + TOLERANCE else FAILS
    detail = (
        f"first-turn probability of the goal receptacle, mean over seeds minus the warm start's "
        f"({warm.goal_p:.3f}): {opsd} {rises[opsd]:+.3f}, {sdar} {rises[sdar]:+.3f}"
    )
    return Verdict(claim, status, detail)


CLAIM_3_SETTINGS = (*(constant_name("sdar", lam, "half") for lam in LAMBDAS), "sdar-adaptive-half")


def criterion_3(results: Results) -> Verdict:
    """SDAR with the half teacher (gap gate, one teacher: every λ and the adaptive one): the share of tokens
    whose gate is more than 0.05 from ½, mean over training, averaged over those runs, is at least 5 %."""
    measured = {
        (name, seed): outcome.gate_off_half
        for (name, seed), outcome in results.items()
        if name in CLAIM_3_SETTINGS and outcome.gate_off_half is not None
    }
    missing = [name for name in CLAIM_3_SETTINGS if (name, 0) not in measured]
    if missing:
        return Verdict("3", UNTESTED, f"seed 0 of {', '.join(missing)} has not logged the gate yet")
    share = statistics.fmean(measured.values())
    status = HOLDS if share >= GATE_ACTIVE_SHARE - TOLERANCE else FAILS
    runs = ", ".join(f"{name}-s{seed} {percent(value)}" for (name, seed), value in sorted(measured.items()))
    detail = (
        f"{percent(share)} of tokens over {len(measured)} runs (needs ≥ {percent(GATE_ACTIVE_SHARE)}): {runs}"
    )
    return Verdict("3", status, detail)


@dataclass(frozen=True)
class Comparison:
    """A claim-4 comparison of `subject` with `reference`; `kind`: "not behind", "ahead" or "reported"."""

    claim: str
    subject: str
    reference: str | None  # None: not determinable yet (why in `waiting`)
    kind: str
    waiting: str = ""


def best_constant(results: Results, teacher: str) -> str | None:
    """The constant-λ SDAR of `teacher` with the highest seed-0 final success (ties: the smallest λ); None
    until all three are in."""
    names = [constant_name("sdar", lam, teacher) for lam in LAMBDAS]
    values = [seed0_final(results, name) for name in names]
    if None in values:
        return None
    best = max(values)
    return next(name for name, value in zip(names, values, strict=True) if value >= best - TOLERANCE)


def claim_4_comparisons(results: Results, lam: float | None) -> list[Comparison]:
    """4a: the adaptive λ is not behind the best constant-λ SDAR of its teacher; 4b: routing the half line
    and no line is ahead of SDAR with the half line at λ; 4c: the entropy and soft-OR gates against the gap
    gate at λ, reported."""
    comparisons = []
    for teacher in TEACHERS:
        best = best_constant(results, teacher)
        waiting = "" if best else f"seed 0 of every constant-λ SDAR with the {teacher} teacher"
        comparisons.append(
            Comparison(f"4a, {teacher}", f"sdar-adaptive-{teacher}", best, "not behind", waiting)
        )
    gap = constant_name("sdar", lam, "half") if lam is not None else None
    waiting = "" if gap else "the λ of claim 2"
    comparisons.append(Comparison("4b", "sdar-routed-half", gap, "ahead", waiting))
    for gate in ("entropy", "soft_or"):
        comparisons.append(Comparison(f"4c, {gate}", f"sdar-{gate}-half", gap, "reported", waiting))
    return comparisons


def seed0_games(results: Results, comparison: Comparison) -> int | None:
    """Seed-0 final success of subject minus reference, in games won; None when either is not in."""
    subject = results.get((comparison.subject, 0))
    reference = results.get((comparison.reference, 0)) if comparison.reference else None
    if not subject or not reference or subject.final is None or reference.final is None:
        return None
    return round((subject.final - reference.final) * subject.tasks)


def needs_more_seeds(results: Results, comparison: Comparison) -> bool | None:
    """Whether seed 0 shows a difference of at least 2 games (so seeds 1 and 2 decide); None: not known."""
    games = seed0_games(results, comparison)
    return None if games is None else abs(games) >= MORE_SEEDS_GAMES


def judge_comparison(results: Results, comparison: Comparison) -> Verdict:
    claim, subject, reference = comparison.claim, comparison.subject, comparison.reference
    if reference is None:
        return Verdict(claim, UNTESTED, f"waits for {comparison.waiting}")
    games = seed0_games(results, comparison)
    if games is None:
        missing = [name for name in (subject, reference) if seed0_final(results, name) is None]
        return Verdict(claim, UNTESTED, f"seed 0 of {' and '.join(missing)} is not in")
    seed0 = f"seed 0: {subject} − {reference} = {games:+d} games"
    if abs(games) < MORE_SEEDS_GAMES:
        status = {"not behind": HOLDS, "ahead": FAILS, "reported": REPORTED}[comparison.kind]
        return Verdict(claim, status, f"{seed0} (under {MORE_SEEDS_GAMES}: seed 0 decides)")
    mine, theirs = finals(results, subject), finals(results, reference)
    if not (complete(mine) and complete(theirs)):
        return Verdict(claim, UNTESTED, f"{seed0}: seeds 1 and 2 of both decide and are not all in")
    shown = f"{seed0}; {summary_text(subject, mine)}, {summary_text(reference, theirs)}"
    if comparison.kind == "reported":
        return Verdict(claim, REPORTED, shown)
    if comparison.kind == "not behind":
        return Verdict(claim, FAILS if ahead(theirs, mine) else HOLDS, shown)
    return Verdict(claim, HOLDS if ahead(mine, theirs) else FAILS, shown)


def criterion_4(results: Results, lam: float | None) -> list[Verdict]:
    return [judge_comparison(results, comparison) for comparison in claim_4_comparisons(results, lam)]


def later_seeds(results: Results, lam: float | None) -> tuple[list[str], list[tuple[str, str]]]:
    """The Order of the design for seeds 1 and 2: (settings due, [(setting or group, what it waits for)]).
    Due: GRPO, and GRPO+OPSD and SDAR at λ with both teachers; and both sides of a claim-4 comparison whose
    seed 0 differs by at least 2 games."""
    if lam is None:
        return [], [("every setting", "the λ of claim 2 (chosen_lambda.json, or --lam)")]
    due = ["grpo", *claim_2_settings(lam)]
    waiting = []
    for comparison in claim_4_comparisons(results, lam):
        more = needs_more_seeds(results, comparison)
        if more is None:
            what = comparison.waiting or f"seed 0 of {comparison.subject} and {comparison.reference}"
            waiting.append((comparison.subject, f"{what} (claim {comparison.claim})"))
        elif more:
            due += [comparison.subject, comparison.reference]
    return list(dict.fromkeys(due)), waiting
