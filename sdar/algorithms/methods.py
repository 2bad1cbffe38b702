"""The method table: each training method of the paper is one entry naming its terms and default numbers.

Coefficients follow docs/method.md §3 and §6 (KL 0.01, entropy 0.001, λ = 0.01, β = 5.0). A new method is a
new entry here; the trainer never branches on a method name. An entry's terms are names in the registries of
sdar.algorithms.distill (DISTILL_TERMS, ADVANTAGE_SHAPINGS); its numbers are the defaults of the config's
`algorithm` fields of the same names (`AlgorithmConfig.resolved` reads them, and only it).
"""

from __future__ import annotations

from dataclasses import dataclass

from sdar.algorithms.distill import ADVANTAGE_SHAPINGS, DISTILL_TERMS, SDAR_BETA


@dataclass(frozen=True)
class MethodSpec:
    """Which loss terms a method uses and their default coefficients (overridable in AlgorithmConfig)."""

    name: str
    description: str
    policy_coef: float = 1.0  # weight of the PPO-clip policy-gradient term
    kl_coef: float = 0.01  # α_KL, KL to the reference model
    entropy_coef: float = 0.001  # entropy bonus weight
    distill: str | None = None  # None or a DISTILL_TERMS name
    distill_coef: float = 0.0  # λ of the distillation term
    beta: float = SDAR_BETA  # gate sharpness β (read by the gated terms only)
    advantage_shaping: str | None = None  # None or an ADVANTAGE_SHAPINGS name
    student_sees_skills: bool = False  # the student's own prompt carries the skills (Skill-GRPO)

    def __post_init__(self) -> None:
        if self.distill is not None and self.distill not in DISTILL_TERMS:
            terms = (None, *DISTILL_TERMS)
            raise ValueError(f"method {self.name!r}: distill={self.distill!r} not in {terms}")
        if self.advantage_shaping is not None and self.advantage_shaping not in ADVANTAGE_SHAPINGS:
            shaping, names = self.advantage_shaping, (None, *ADVANTAGE_SHAPINGS)
            raise ValueError(f"{self.name}: advantage_shaping={shaping!r} not in {names}")

    @property
    def needs_teacher(self) -> bool:
        """True when a term reads teacher_logprobs (a distillation term or an advantage shaping)."""
        return self.distill is not None or self.advantage_shaping is not None

    @property
    def routes_teachers(self) -> bool:
        """True when the method can learn from several teachers (`teacher.contexts`): its distillation term
        routes them (`DistillTerm.route_teachers`) and no advantage shaping reads one teacher's log-probs."""
        term = DISTILL_TERMS.get(self.distill) if self.distill is not None else None
        return term is not None and term.route_teachers is not None and self.advantage_shaping is None


METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec(
            name="grpo",
            description=(
                "GRPO backbone: PPO-clip on group-relative advantages + KL + entropy (docs/method.md §3)"
            ),
        ),
        MethodSpec(
            name="sdar",
            description=(
                "SDAR: GRPO + λ·token_mean(σ(βΔ)·(log π_T − log π_θ)), λ=0.01, β=5 (docs/method.md §3)"
            ),
            distill="sdar",
            distill_coef=0.01,
        ),
        MethodSpec(
            name="grpo_opsd",
            description="GRPO+OPSD: SDAR with β=0, so every gate is 0.5 (docs/method.md §3 baselines)",
            distill="sdar",
            distill_coef=0.01,
            beta=0.0,
        ),
        MethodSpec(
            name="opsd",
            description=(
                "OPSD: the SDAR term without the policy-gradient term; KL and entropy stay "
                "(docs/method.md §3)"
            ),
            policy_coef=0.0,
            distill="sdar",
            distill_coef=0.01,
        ),
        MethodSpec(
            name="skill_sd",
            description=(
                "Skill-SD: GRPO + 0.001·token_mean(ρ·k3) toward the skill-prompted teacher "
                "(docs/method.md §3)"
            ),
            distill="skill_sd",
            distill_coef=0.001,
        ),
        MethodSpec(
            name="rlsd",
            description=(
                "RLSD: GRPO with token advantages reweighted by the teacher, λ 0.5→0 (docs/method.md §3)"
            ),
            advantage_shaping="rlsd",
        ),
        MethodSpec(
            name="skill_grpo",
            description=(
                "Skill-GRPO: GRPO where the student itself sees the skills in its prompt (docs/method.md §3)"
            ),
            student_sees_skills=True,
        ),
    )
}


def get_method(name: str) -> MethodSpec:
    """The MethodSpec called `name`; raises KeyError listing the valid names."""
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; choose one of: {', '.join(METHODS)}") from None
