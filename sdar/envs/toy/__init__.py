"""The built-in toy env ("toy"): find the coloured key, open the chest. It needs no data and no extra
package, so training, SFT warm starts and evaluations run end to end on any install (tests, first runs:
`sdar train toy`). The game is in env.py, its skill library in sdar/skills/toy.

Options (env.options): places (5 per room, 2-8), prior (0.8: how often a key lies in its colour's usual
place), tasks_per_split (32), expert_detours (0: the share of tasks where the expert first searches a place
without the key). Turn limit: env.max_turns, by default 6.
"""

from __future__ import annotations

from pathlib import Path

from sdar.envs.alfworld.prompts import template_prompt
from sdar.envs.base import EnvSpec
from sdar.envs.replies import parse_action_reply
from sdar.envs.toy.env import COLOURS, ToyEnv
from sdar.errors import ConfigError

OPTIONS = ("places", "prior", "tasks_per_split", "expert_detours")


def make_toy_env(data_dir=None, **options) -> ToyEnv:
    """The registry's factory; `data_dir` is unused (the rooms are drawn from the task ids)."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        known = ", ".join(OPTIONS)
        raise ConfigError(f"unknown toy option(s) {', '.join(unknown)}; valid env.options: {known}")
    return ToyEnv(**options)


TOY_SPEC = EnvSpec(
    name="toy",
    factory=make_toy_env,
    description="toy text game: find the coloured key, open the chest; no data, no extra (splits train, "
    "valid, test)",
    build_prompt=template_prompt(Path(__file__).parent / "templates"),  # first_turn.txt, with_history.txt
    parse_reply=parse_action_reply,  # <think>...</think><action>...</action>
    stop_strings=("</action>",),
    skill_library="toy",
    task_types=COLOURS,
    min_turns=3,  # search the key's place, take the key, open the chest
    # Three turns spare: a few more searches when the key is not in its usual place, too few to search a
    # whole room of the default 5 places, so knowing the usual place (the teacher's skill) pays.
    default_max_turns=6,
)

__all__ = ["TOY_SPEC", "ToyEnv", "make_toy_env"]
