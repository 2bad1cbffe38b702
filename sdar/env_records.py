"""Task and StepResult: the records an env hands the agent, the ground floor under envs, records and rollout.

Plain frozen dataclasses with no torch and no sdar import, so that every layer (the envs and their worker
processes, the training records, the rollout loop, the skill routers) can stand on them. The TextEnv protocol
that produces them and the env registry are in `sdar.envs.base`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Task:
    """One env instance; skills are routed by `task_type` (ALFWorld type, WebShop category, QA dataset)."""

    task_id: str
    task_type: str
    goal: str
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class StepResult:
    """What the agent sees after reset/step. `admissible_actions` is None where the env has no such list."""

    observation: str
    reward: float = 0.0
    done: bool = False
    won: bool = False
    admissible_actions: tuple[str, ...] | None = None
    info: dict = field(
        default_factory=dict
    )  # e.g. {"metrics": {"score": 0.8}} or {"error": "engine crashed"}
