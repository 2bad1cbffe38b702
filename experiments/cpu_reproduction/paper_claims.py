"""The paper's claims at this scale, judged on a runs folder's runs by criteria fixed before any run at the
final settings ended, and SDAR − GRPO pooled over warm starts (post hoc); report.py prints them."""

from __future__ import annotations

import itertools
import statistics

from sdar.evaluation.document import Bullets
from sdar.evaluation.report import panel_name
from sdar.evaluation.runs import Run, metric_value

METHODS = ("grpo", "grpo_opsd", "sdar")
SEEDS = (0, 1, 2)
GENERATED_PANEL = "alfworld-gen/valid"
VALID_SEEN_PANEL = "alfworld/valid_seen"  # a prefix: the name goes on with the panel's size
LATE_STEPS = 3  # the gap's drift: its mean over the last LATE_STEPS steps minus that over the first ones


def panel_successes(run: Run, panel: str) -> list[tuple[int, float]]:
    """(checkpoint step, success rate) of the run's evaluations on the panel whose name begins `panel`."""
    return sorted(
        (evaluation.checkpoint_step or 0, evaluation.summary["success_rate"])
        for evaluation in run.evaluations
        if panel_name(evaluation).startswith(panel)
    )


def final_success(run: Run, panel: str) -> float | None:
    successes = panel_successes(run, panel)
    return successes[-1][1] if successes else None


def success_drop(run: Run) -> float | None:
    """Best minus final success on the generated panel (0 when the final evaluation is the best)."""
    successes = [success for _, success in panel_successes(run, GENERATED_PANEL)]
    return max(successes) - successes[-1] if successes else None


def gap_drift(run: Run) -> float | None:
    gaps = [v for m in run.metrics if (v := metric_value(m, "distill/gap_mean")) is not None]
    if len(gaps) < 2 * LATE_STEPS:
        return None
    return statistics.fmean(gaps[-LATE_STEPS:]) - statistics.fmean(gaps[:LATE_STEPS])


def by_method_and_seed(runs: list[Run]) -> dict[str, dict[int, Run]]:
    table: dict[str, dict[int, Run]] = {}
    for run in runs:
        table.setdefault(run.method, {})[run.seed] = run
    return table


def percent(value: float) -> str:
    return f"{100 * value:+.1f} pp"


def sdar_minus_grpo(runs: list[Run], panel: str) -> dict[int, float]:
    """SDAR's final success on a panel minus GRPO's, per seed that has both evaluated, in seed order."""
    table = by_method_and_seed(runs)
    pairs = {
        seed: (final_success(sdar, panel), final_success(grpo, panel))
        for seed, sdar in table.get("sdar", {}).items()
        if (grpo := table.get("grpo", {}).get(seed)) is not None
    }
    return {seed: s - g for seed, (s, g) in sorted(pairs.items()) if s is not None and g is not None}


def sign_flip_p(differences: list[float]) -> float:
    """Exact two-sided p of the paired sign-flip (permutation) test of a zero mean difference: the share of
    the 2^n sign patterns whose |mean| is at least the observed one."""
    observed = abs(statistics.fmean(differences))
    patterns = itertools.product((1, -1), repeat=len(differences))
    means = [
        abs(statistics.fmean(s * d for s, d in zip(signs, differences, strict=True))) for signs in patterns
    ]
    return sum(mean >= observed - 1e-12 for mean in means) / len(means)


def sdar_beats_grpo(runs: list[Run], panel: str) -> str:
    """SDAR > GRPO on a panel's final success, paired by seed (one warm start, the same tasks and sampling
    seeds): holds when SDAR is ahead in every seed; not shown when only on average; fails otherwise."""
    differences = sdar_minus_grpo(runs, panel)
    claim = f"SDAR > GRPO, final success on {panel}"
    if len(differences) < len(SEEDS):
        evaluated = f"{len(differences)} of {len(SEEDS)} seeds have both runs evaluated"
        return f"{claim}: not testable ({evaluated})."
    mean = statistics.fmean(differences.values())
    if all(d > 0 for d in differences.values()):
        verdict = "**holds at this scale** (SDAR ahead in every seed)"
    elif mean > 0:
        verdict = "**not shown** (SDAR ahead on average, not in every seed)"
    else:
        verdict = "**does not hold** (SDAR not ahead on average)"
    seeds = ", ".join(f"s{seed} {percent(d)}" for seed, d in differences.items())
    return f"{claim}: {verdict}; SDAR − GRPO per seed: {seeds}; mean {percent(mean)}."


def opsd_less_stable(runs: list[Run]) -> str:
    """GRPO+OPSD less stable: (a) its success falls furthest from its best evaluation to its final one (mean
    over seeds, strictly more than GRPO's and SDAR's), and (b) its teacher-student gap drifts down more than
    SDAR's (the paper's signature: the gap drops late under GRPO+OPSD). Holds when both do; in part when one
    does."""
    table = by_method_and_seed(runs)
    complete = all(len(table.get(method, {})) == len(SEEDS) for method in METHODS)
    claim = "GRPO+OPSD less stable than GRPO and SDAR"
    if not complete:
        return f"{claim}: not testable (needs all {len(METHODS) * len(SEEDS)} runs, has {len(runs)})."

    def mean_of(method: str, measure) -> float | None:
        values = [v for run in table[method].values() if (v := measure(run)) is not None]
        return statistics.fmean(values) if values else None

    drops = {method: mean_of(method, success_drop) for method in METHODS}
    drifts = {method: mean_of(method, gap_drift) for method in ("grpo_opsd", "sdar")}
    if None in drops.values() or None in drifts.values():
        return f"{claim}: not testable (an evaluation or the gap is missing from a run)."
    falls_furthest = all(drops["grpo_opsd"] > drops[method] for method in ("grpo", "sdar"))
    drifts_down_more = drifts["grpo_opsd"] < drifts["sdar"]
    verdict = {
        2: "**holds at this scale**",
        1: "**holds in part**",
        0: "**does not hold**",
    }[falls_furthest + drifts_down_more]
    drop_text = ", ".join(f"{method} {percent(drops[method])}" for method in METHODS)
    drift_text = ", ".join(f"{method} {drifts[method]:+.3f}" for method in drifts)
    return (
        f"{claim}: {verdict}. (a) Best minus final success on {GENERATED_PANEL}, mean over seeds: "
        f"{drop_text} ({'largest' if falls_furthest else 'not the largest'} for GRPO+OPSD). (b) Gap drift, "
        f"mean over the last {LATE_STEPS} steps minus the first {LATE_STEPS}: {drift_text} "
        f"({'lower' if drifts_down_more else 'not lower'} for GRPO+OPSD)."
    )


def claims(runs: list[Run]) -> Bullets:
    return Bullets(
        (
            sdar_beats_grpo(runs, GENERATED_PANEL),
            sdar_beats_grpo(runs, VALID_SEEN_PANEL),
            opsd_less_stable(runs),
        )
    )


def pooled_line(parts: list[tuple[str, list[Run]]], panel: str) -> str | None:
    """SDAR − GRPO over the seed pairs of every part (warm start) together, with the sign-flip test; None
    with fewer than two pairs. Post hoc: the criteria judge each warm start alone."""
    differences = [
        (label, seed, d) for label, runs in parts for seed, d in sdar_minus_grpo(runs, panel).items()
    ]
    if len(differences) < 2:
        return None
    values = [d for _, _, d in differences]
    pairs = ", ".join(f"{label} s{seed} {percent(d)}" for label, seed, d in differences)
    mean, std = percent(statistics.fmean(values)), f"{100 * statistics.pstdev(values):.1f} pp"
    return (
        f"SDAR − GRPO, final success on {panel}, {len(values)} seed pairs: {pairs}; mean {mean} ± {std}; "
        f"SDAR ahead in {sum(d > 0 for d in values)}, behind in {sum(d < 0 for d in values)}; exact "
        f"sign-flip test of no difference p = {sign_flip_p(values):.2f}."
    )
