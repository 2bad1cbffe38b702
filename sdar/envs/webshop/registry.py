"""Factories and readiness checks of the "webshop" (real 1k catalogue) and "webshop-gen" registry entries.

"webshop": the real catalogue under env.data_dir or $WEBSHOP_DATA (the WebShop layout: data/ and
search_engine/), goals 0-499 = test, the rest = train. "webshop-gen": a generated catalogue, no data needed.
Both factories take `max_steps`, the turn limit, which the registry sets from env.max_turns
(EnvSpec.turn_limit_argument); env.options cannot set it.
Worlds (catalogue + search index) are built once per process and shared by every env instance.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

from sdar.envs.base import missing_package_or_data
from sdar.envs.webshop.catalog import GOAL_SHUFFLE_SEED, load_real_catalogue, resolve_data_dir
from sdar.envs.webshop.env import MAX_STEPS, ShopWorld, WebShopEnv
from sdar.envs.webshop.search import WEBSHOP_INSTALL_HINT, ProductSearch

REAL_OPTIONS = ("max_steps", "price_seed", "reward")
GENERATED_OPTIONS = ("max_steps", "products", "test_goals", "seed", "reward")


def webshop_engine_missing(data_dir=None) -> str | None:
    """Why WebShop cannot run here (a package of the webshop extra missing), or None; the factory checks
    `data_dir`."""
    for package in ("bm25s", "nltk", "rapidfuzz"):  # search index, Lucene's stemmer, the reward's matcher
        if importlib.util.find_spec(package) is None:
            return f"package {package} not installed: {WEBSHOP_INSTALL_HINT}"
    return None


def check_webshop(data_dir: str | Path | None = None) -> str | None:
    return missing_package_or_data(webshop_engine_missing(), resolve_data_dir, data_dir)


def world_of(catalogue) -> ShopWorld:
    products = catalogue.products
    return ShopWorld(catalogue, ProductSearch([p.asin for p in products], [p.contents for p in products]))


@functools.lru_cache(maxsize=4)
def real_world(data_dir: str, price_seed: int = GOAL_SHUFFLE_SEED) -> ShopWorld:
    return world_of(load_real_catalogue(data_dir or None, price_seed=price_seed))


@functools.lru_cache(maxsize=4)
def generated_world(products: int, test_goals: int, seed: int) -> ShopWorld:
    from sdar.envs.webshop.generator import generate_catalogue

    return world_of(generate_catalogue(products=products, test_goals=test_goals, seed=seed))


DEFAULT_REWARD = "upstream"  # every goal winnable; "release" reproduces the paper's scoring (reward.py)


def _check_options(options: dict, allowed: tuple[str, ...], env_name: str) -> None:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown env.options for {env_name!r}: {', '.join(unknown)}; allowed: {', '.join(allowed)}"
        )


def _env(world: ShopWorld, options: dict) -> WebShopEnv:
    max_steps = int(options.get("max_steps", MAX_STEPS))
    return WebShopEnv(world, max_steps=max_steps, reward_version=str(options.get("reward", DEFAULT_REWARD)))


def make_webshop_env(data_dir: str | Path | None = None, **options) -> WebShopEnv:
    """The real-catalogue env; keywords: max_steps (15; env.max_turns), and the env.options price_seed (233),
    reward ("upstream" | "release")."""
    _check_options(options, REAL_OPTIONS, "webshop")
    problem = webshop_engine_missing()
    if problem:
        raise ImportError(f"the 'webshop' env cannot run: {problem}")
    root = str(resolve_data_dir(data_dir))  # fails early, naming the path and $WEBSHOP_DATA
    world = real_world(root, int(options.get("price_seed", GOAL_SHUFFLE_SEED)))
    return _env(world, options)


def make_generated_webshop_env(data_dir: str | Path | None = None, **options) -> WebShopEnv:
    """The generated-catalogue env; keywords: max_steps (15; env.max_turns), and the env.options products
    (300), test_goals (100), seed (0), reward ("upstream" default | "release")."""
    _check_options(options, GENERATED_OPTIONS, "webshop-gen")
    problem = webshop_engine_missing()
    if problem:
        raise ImportError(f"the 'webshop-gen' env cannot run: {problem}")
    world = generated_world(
        int(options.get("products", 300)), int(options.get("test_goals", 100)), int(options.get("seed", 0))
    )
    return _env(world, options)
