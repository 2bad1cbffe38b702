"""What `sdar plan` prints: a table of every memory term per phase, the peak against the GPU, and the
smallest setting that fits; or the same as JSON (`--json`)."""

from __future__ import annotations

from sdar.training.plan import GIB, PHASE_TITLES, PHASES, Estimate, Plan


def gib(value: float) -> float:
    return round(value / GIB, 2)


def plan_json(plan: Plan, config_name: str) -> dict:
    """The plan as plain data: GiB per GPU throughout."""
    estimate = plan.estimate
    recommendation = None
    if plan.recommendation is not None:
        recommendation = {
            "overrides": plan.changes(),
            "peak_gib": gib(plan.recommendation.peak),
            "peak_phase": plan.recommendation.peak_phase,
        }
    return {
        "config": config_name,
        "model": plan.shape.architecture.name,
        "shapes_from": plan.shape.source,
        "parameters": plan.shape.parameters,
        "trainable_parameters": plan.shape.trainable,
        "gpus": estimate.gpus,
        "gpu_memory_gib": gib(estimate.gpu_memory),
        "margin": plan.margin,
        "usable_gib": gib(plan.budget),
        "setting": estimate.setting.overrides(),
        "phases_gib": {phase: gib(estimate.total(phase)) for phase in PHASES},
        "peak_gib": gib(estimate.peak),
        "peak_phase": estimate.peak_phase,
        "fits": plan.fits,
        "terms": [
            {
                "name": term.name,
                "counted_as": term.formula,
                "phases_gib": {phase: gib(value) for phase, value in term.phases.items()},
            }
            for term in estimate.terms
        ],
        "recommendation": recommendation,
        "reason": None if plan.fits else plan.reason(),
    }


def render(plan: Plan, config_name: str, console) -> None:
    """The rich table of terms x phases, then the verdict and the recommendation."""
    from rich.table import Table

    estimate, shape = plan.estimate, plan.shape
    setting = estimate.setting
    title = (
        f"{config_name}: {shape.architecture.name}, {shape.parameters / 1e9:.3g}B parameters "
        f"({shape.trainable / 1e9:.3g}B trained), {estimate.gpus} GPU{'s' if estimate.gpus > 1 else ''} x "
        f"{gib(estimate.gpu_memory):g} GiB"
    )
    table = Table(title=title, caption=f"GiB per GPU; shapes from {shape.source}", title_justify="left")
    table.add_column("term")
    table.add_column("counted as", overflow="fold", max_width=58)
    peak_phase = estimate.peak_phase
    for phase in PHASES:
        style = "bold" if phase == peak_phase else None
        table.add_column(PHASE_TITLES[phase], justify="right", style=style)
    for term in estimate.terms:
        cells = [_cell(term.phases.get(phase)) for phase in PHASES]
        table.add_row(term.name, term.formula, *cells)
    table.add_section()
    table.add_row("total", "", *[f"{estimate.total(phase) / GIB:.2f}" for phase in PHASES], style="bold")
    console.print(table)
    console.print(
        f"setting: sharding {setting.sharding}"
        + (" with CPU offload" if setting.cpu_offload and setting.sharding == "fsdp" else "")
        + f", gradient checkpointing {'on' if setting.gradient_checkpointing else 'off'}, "
        f"micro-batch {setting.micro_batch_rows} rows"
    )
    verdict = "[green]fits[/green]" if plan.fits else "[red]does not fit[/red]"
    console.print(
        f"peak {estimate.peak / GIB:.2f} GiB ({PHASE_TITLES[peak_phase]}) of {plan.budget / GIB:.2f} GiB "
        f"usable ({gib(estimate.gpu_memory):g} GiB less a {plan.margin:.0%} margin): {verdict}"
        + (f", {(plan.budget - estimate.peak) / GIB:.2f} GiB to spare" if plan.fits else "")
    )
    if not plan.fits:
        console.print(_recommendation_line(plan.recommendation, plan))


def _recommendation_line(recommendation: Estimate | None, plan: Plan) -> str:
    if recommendation is None:
        return "no setting of sharding, CPU offload, checkpointing or micro-batch size fits this GPU"
    return (
        f"smallest setting that fits: {' '.join(plan.changes())} (peak {recommendation.peak / GIB:.2f} GiB, "
        f"{PHASE_TITLES[recommendation.peak_phase]})"
    )


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value / GIB:.2f}"
