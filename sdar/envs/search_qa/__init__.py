"""Search-QA (Search-R1 protocol): questions from seven QA datasets, local retrieval, EM reward.

`make_search_qa_env(data_dir, **options)` is the registry factory (env.data_dir, else $SEARCHQA_DATA).
Options (env.options): topk (3), retriever ("bm25" | "dense" | "http"), retriever_url (for "http", e.g. a
`sdar retriever serve`), corpus_path (a FlashRAG JSONL to retrieve from instead of the assembled corpus),
dense_model (a sentence-transformers path; default all-MiniLM-L6-v2), cache_dir. The turn limit is
env.max_turns, by default the protocol's 4 (EnvSpec.default_max_turns): the registry hands it to the factory,
the env ends episodes by it and the prompt states it.
"""

from __future__ import annotations

import importlib.util

from sdar.envs.base import EnvSpec, missing_package_or_data
from sdar.envs.search_qa.datasets import DATASETS, resolve_data_dir
from sdar.envs.search_qa.env import SearchQAEnv
from sdar.envs.search_qa.prompts import (
    DEFAULT_MAX_TURNS,
    SEARCH_STOP,
    build_search_prompt,
    parse_search_action,
    render_search_reply,
)
from sdar.envs.search_qa.resources import QuestionBank, load_data_resources
from sdar.errors import ConfigError

OPTIONS = ("topk", "retriever", "retriever_url", "corpus_path", "dense_model", "cache_dir")


def make_search_qa_env(
    data_dir: str | None = None, max_turns: int = DEFAULT_MAX_TURNS, **options
) -> SearchQAEnv:
    """The registry's factory: `max_turns` is env.max_turns (EnvSpec.turn_limit_argument), never an option."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ConfigError(
            f"unknown search-qa option(s) {', '.join(unknown)}; valid env.options: {', '.join(OPTIONS)}"
        )
    env_settings = {name: options.pop(name) for name in ("topk",) if name in options}
    resources = load_data_resources(data_dir, **{name: str(value) for name, value in options.items()})
    return SearchQAEnv(resources, max_turns=max_turns, **env_settings)


def search_qa_packages_missing() -> str | None:
    """Why the Search-QA packages cannot be imported here, or None."""
    for module, package in (("bm25s", "bm25s"), ("pyarrow", "pyarrow")):
        if importlib.util.find_spec(module) is None:
            return f"{package} is not installed: pip install 'sdar[search]'"
    return None


def check_search_qa(data_dir=None) -> str | None:
    """Why the env cannot run here (a missing package, or the data folder: env.data_dir or $SEARCHQA_DATA)."""
    return missing_package_or_data(search_qa_packages_missing(), resolve_data_dir, data_dir)


SEARCH_QA_SPEC = EnvSpec(
    name="search-qa",
    factory=make_search_qa_env,
    description="Search-R1 QA: 7 datasets, local BM25/dense/HTTP retrieval, EM reward (data: $SEARCHQA_DATA)",
    build_prompt=build_search_prompt,
    parse_reply=parse_search_action,
    stop_strings=SEARCH_STOP,
    render_reply=render_search_reply,
    skill_library="search-qa",
    task_types=DATASETS,
    requires="search",
    check=check_search_qa,
    average="task_types",  # docs/method.md §7: Avg = the plain mean of the datasets
    min_turns=1,  # an answer on the first turn ends the episode
    default_max_turns=DEFAULT_MAX_TURNS,  # Search-R1's 4 turns (docs/method.md §6)
    policies=("no_search",),  # the closed-book baseline (sdar.envs.search_qa.policies)
    turn_limit_argument="max_turns",  # env.max_turns ends the episode and is the limit the prompt states
)

__all__ = ["SEARCH_QA_SPEC", "QuestionBank", "SearchQAEnv", "check_search_qa", "make_search_qa_env"]
