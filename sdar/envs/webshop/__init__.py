"""WebShop (Yao et al. 2022) as a native sdar env: the real 1k catalogue ("webshop") and a generated one
("webshop-gen"). Modules: catalog (products, goals, splits), search (BM25 and Lucene's analyzer, like the
original Lucene engine), text_matching + reward (the purchase score), pages + env (the text-mode site),
generator (data-free catalogue), prompts (+ templates/), categories (skill-routing keywords), registry.
"""

from __future__ import annotations

from sdar.envs.base import EnvSpec
from sdar.envs.replies import parse_action_reply
from sdar.envs.webshop.categories import CATEGORIES
from sdar.envs.webshop.env import MAX_STEPS, admits
from sdar.envs.webshop.prompts import build_webshop_prompt
from sdar.envs.webshop.registry import (
    check_webshop,
    make_generated_webshop_env,
    make_webshop_env,
    webshop_engine_missing,
)

# The shortest won episode: search, click the product, buy now (a purchase ends the episode). Some real goals
# ask for no option; every generated goal asks for at least one, which takes a click more.
MIN_TURNS_REAL = 3
MIN_TURNS_GENERATED = 4


def _webshop_spec(name: str, factory, description: str, check, min_turns: int) -> EnvSpec:
    """Both WebShop envs share the prompt, the think/action reply format and the skill library."""
    return EnvSpec(
        name=name,
        factory=factory,
        description=description,
        build_prompt=build_webshop_prompt,
        parse_reply=parse_action_reply,
        stop_strings=("</action>",),
        skill_library="webshop",
        task_types=CATEGORIES,
        requires="webshop",
        check=check,
        admits=admits,
        min_turns=min_turns,
        default_max_turns=MAX_STEPS,  # WebShop's 15 turns (docs/method.md §6)
        # env.max_turns reaches the env as `max_steps`, which ends a purchase-less episode (score 0) at the
        # limit; env.options.max_steps is refused, so the limit has one knob.
        turn_limit_argument="max_steps",
    )


WEBSHOP_SPECS = (
    _webshop_spec(
        "webshop",
        make_webshop_env,
        "WebShop, real 1k-product catalogue, 6,910 goals: test = goals 0-499, train = 500+ "
        "(data: $WEBSHOP_DATA)",
        check_webshop,  # bm25s, then the data folder (env.data_dir or $WEBSHOP_DATA)
        MIN_TURNS_REAL,
    ),
    _webshop_spec(
        "webshop-gen",
        make_generated_webshop_env,
        "WebShop on a generated catalogue, no data needed (splits train, test)",
        webshop_engine_missing,
        MIN_TURNS_GENERATED,
    ),
)

__all__ = ["WEBSHOP_SPECS", "make_generated_webshop_env", "make_webshop_env"]
