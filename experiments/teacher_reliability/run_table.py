"""The run table of README.md as data: every setting's name and the `sdar train` overrides that make it.

Every run is `sdar train config.yaml <overrides> seed=S` from the one shared warm start (run.py pins its model
to that warm start). The λ of claims 2-4 ("the λ of claim 2") is chosen from seed 0 by claim 1's rule
(criteria.choose_lambda); until it is, the settings that use it have no overrides (they wait).
No torch here: tests read the table without loading a model.
"""

from __future__ import annotations

from dataclasses import dataclass

LAMBDAS = (0.01, 0.1, 1.0)  # the constant distillation weights λ of the sweep
CLAIM_1_LAMBDAS = (0.1, 1.0)  # where claim 1 looks for distillation that matters
ADAPTIVE_TARGET = 0.5  # ρ: the distillation push as a share of the policy-gradient push (docs/method.md §9)
SEEDS = (0, 1, 2)
LIBRARIES = {  # teacher name -> teacher.skill_library (sdar/skills/object_location.py)
    "reliable": "alfworld-location",  # the line names the object's receptacle in every game
    "half": "alfworld-location-half",  # right in about half the games, else the goal receptacle
}
TEACHERS = tuple(LIBRARIES)
METHOD_PREFIXES = {"opsd": "grpo_opsd", "sdar": "sdar"}  # run-name prefix -> algorithm.method
# The routed teachers of sdar-routed-half: the half line, and the same model without any line.
ROUTED_CONTEXTS = "{line: {skill_library: alfworld-location-half}, plain: {skills: false}}"


@dataclass(frozen=True)
class Setting:
    """One row of the run table. `weight`: the λ rule as the report prints it ("" for GRPO, which has none);
    `overrides`: None while the setting waits for the λ of claim 2."""

    name: str
    method: str  # algorithm.method
    teacher: str  # "reliable", "half", "routed" (half line | no line) or "" (GRPO reads no teacher)
    weight: str  # "0.01", "0.1", "1", "adaptive" or "" (none)
    gate: str  # algorithm.gate ("gap" unless the setting says otherwise)
    overrides: tuple[str, ...] | None
    exploratory: str = ""  # outside the registered design: what it asks (README.md); "" for the design's

    @property
    def waits_for_lambda(self) -> bool:
        return self.overrides is None


def lambda_text(lam: float) -> str:
    """λ as run names and reports write it: 0.01, 0.1, 1."""
    return f"{lam:g}"


def constant_name(prefix: str, lam: float, teacher: str) -> str:
    """`opsd-l0.1-reliable`, `sdar-l1-half`: a constant-λ run of GRPO+OPSD or SDAR."""
    return f"{prefix}-l{lambda_text(lam)}-{teacher}"


def _constant(prefix: str, lam: float, teacher: str) -> Setting:
    method = METHOD_PREFIXES[prefix]
    overrides = (
        f"algorithm.method={method}",
        f"algorithm.distill_coef={lambda_text(lam)}",
        f"teacher.skill_library={LIBRARIES[teacher]}",
    )
    return Setting(constant_name(prefix, lam, teacher), method, teacher, lambda_text(lam), "gap", overrides)


def _adaptive(teacher: str) -> Setting:
    overrides = (
        "algorithm.method=sdar",
        "algorithm.distill_weight=adaptive",
        f"algorithm.distill_weight_target={ADAPTIVE_TARGET}",
        f"teacher.skill_library={LIBRARIES[teacher]}",
    )
    return Setting(f"sdar-adaptive-{teacher}", "sdar", teacher, "adaptive", "gap", overrides)


def _at_chosen_lambda(name: str, teacher: str, gate: str, lam: float | None, extra: tuple[str, ...]):
    """A setting at the λ of claim 2: waiting (no overrides) while `lam` is None."""
    overrides = None
    if lam is not None:
        common = ("algorithm.method=sdar", f"algorithm.distill_coef={lambda_text(lam)}")
        overrides = (*common, f"teacher.skill_library={LIBRARIES['half']}", *extra)
    weight = lambda_text(lam) if lam is not None else "λ of claim 2"
    return Setting(name, "sdar", teacher, weight, gate, overrides)


def run_table(lam: float | None) -> dict[str, Setting]:
    """Every setting by name, in the order seed 0 runs them: GRPO and the reliable teacher's runs at the λ
    claim 1 chooses from (so that λ can be chosen early), the rest of the sweep, the adaptive λ, then the
    settings at `lam`, the λ of claim 2 (None: not chosen yet), then the exploratory ones."""
    settings = [Setting("grpo", "grpo", "", "", "gap", ("algorithm.method=grpo",))]
    sweep = (*CLAIM_1_LAMBDAS, *(value for value in LAMBDAS if value not in CLAIM_1_LAMBDAS))
    for teacher in TEACHERS:
        settings += [_constant(prefix, value, teacher) for value in sweep for prefix in METHOD_PREFIXES]
    settings += [_adaptive(teacher) for teacher in TEACHERS]
    routed = (f"teacher.contexts={ROUTED_CONTEXTS}",)
    settings += [
        _at_chosen_lambda("sdar-routed-half", "routed", "gap", lam, routed),
        _at_chosen_lambda("sdar-entropy-half", "half", "entropy", lam, ("algorithm.gate=entropy",)),
        _at_chosen_lambda("sdar-soft_or-half", "half", "soft_or", lam, ("algorithm.gate=soft_or",)),
    ]
    noskip = ("algorithm.method=grpo", "trainer.skip_zero_gradient=false")
    asks = "GRPO that also takes an optimizer step when its gradient is 0, as GRPO+OPSD and SDAR do"
    settings.append(Setting("grpo-noskip", "grpo", "", "", "gap", noskip, exploratory=asks))
    return {setting.name: setting for setting in settings}


SETTING_NAMES = tuple(run_table(None))
# Settings outside the registered design, each answering a question a run raised (README.md, Observed while
# running); no criterion reads them. Name -> what it asks.
EXPLORATORY = {name: s.exploratory for name, s in run_table(None).items() if s.exploratory}

# GRPO+OPSD's gate is ½ on every token, so its update never reads the teacher (docs/method.md, "The SDAR
# term"): with the same seed, its half-teacher run samples the same episodes and ends with the same student
# as its reliable-teacher run. Half-teacher setting -> that twin; such runs are made only when named
# (README.md, Amendment).
TEACHER_BLIND_TWINS = {
    constant_name("opsd", lam, "half"): constant_name("opsd", lam, "reliable") for lam in LAMBDAS
}
ONLY_WHEN_NAMED = (*TEACHER_BLIND_TWINS, *EXPLORATORY)  # settings run.py makes only when `--runs` names them


def run_name(setting: str, seed: int) -> str:
    """The run's folder under results/: `<setting>-s<seed>`."""
    return f"{setting}-s{seed}"


def parse_run_name(name: str) -> tuple[str, int] | None:
    """(setting, seed) of a results/ folder name; None for a folder that is no run of the table."""
    setting, separator, seed = name.rpartition("-s")
    if not separator or not seed.isdigit() or setting not in SETTING_NAMES:
        return None
    return setting, int(seed)
