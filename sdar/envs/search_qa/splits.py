"""The Search-QA splits: fixed per-dataset evaluation panels and the training pool (docs/method.md §7).

A panel is a fixed subsample of one dataset: its questions ordered by sha256 of their task id (a fixed,
content-independent shuffle that does not depend on file order), then the first PANEL_SIZES[dataset].
Splits (task ids are "<dataset>/<question id>"):
- `test_<dataset>`: the panel of all the dataset's questions; `test`: the seven panels in Table 1 order.
- `answerable_<dataset>`: the same subsample rule over the questions that have an answer-bearing passage in
  the local corpus (see corpus.py); `answerable`: all seven in order. On this small corpus, EM on these is
  the meaningful number; `test` is mostly bounded by coverage.
- `train`: NQ and HotpotQA questions (the paper trains on NQ + HotpotQA) whose marked gold passage is in the
  corpus, minus every question of the evaluation panels, in hash order.
- `train_ambigqa`: the NQ-style AmbigQA training pool (its evidence is mostly absent from the corpus).
The sizes are recorded here and in every eval summary through the panel fingerprint.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from sdar.envs.search_qa.datasets import DATASETS, TRAIN_POOL, QAItem

PANEL_SIZES: dict[str, int] = {
    "nq": 500,
    "triviaqa": 500,
    "popqa": 500,
    "hotpotqa": 500,
    "2wikimultihopqa": 500,
    "musique": 500,
    "bamboogle": 125,  # the whole dataset
}
TRAIN_DATASETS = ("nq", "hotpotqa")


def split_names() -> list[str]:
    names = ["test", "answerable", "train", f"train_{TRAIN_POOL}"]
    for dataset in DATASETS:
        names += [f"test_{dataset}", f"answerable_{dataset}"]
    return names


def hash_order(items: Sequence[QAItem]) -> list[QAItem]:
    """Items in the fixed order of sha256(task id)."""
    return sorted(items, key=lambda item: hashlib.sha256(item.task_id.encode()).hexdigest())


def panel(items: Sequence[QAItem], dataset: str) -> list[QAItem]:
    return hash_order(items)[: PANEL_SIZES[dataset]]


def split_task_ids(
    split: str,
    load: Callable[[str], Sequence[QAItem]],
    is_answerable: Callable[[QAItem], bool],
    has_gold_passage: Callable[[QAItem], bool],
) -> list[str]:
    """Task ids of `split`; `load(dataset)` gives its questions. A bad split name lists the valid ones."""
    if split == f"train_{TRAIN_POOL}":
        return [item.task_id for item in load(TRAIN_POOL)]
    if split in ("test", "answerable"):
        return [
            task_id
            for dataset in DATASETS
            for task_id in split_task_ids(f"{split}_{dataset}", load, is_answerable, has_gold_passage)
        ]
    if split == "train":
        held_out = set()
        for dataset in TRAIN_DATASETS:
            for kind in ("test", "answerable"):
                held_out.update(split_task_ids(f"{kind}_{dataset}", load, is_answerable, has_gold_passage))
        pool = [item for dataset in TRAIN_DATASETS for item in load(dataset) if has_gold_passage(item)]
        return [item.task_id for item in hash_order(pool) if item.task_id not in held_out]
    kind, _, dataset = split.partition("_")
    if kind in ("test", "answerable") and dataset in DATASETS:
        items = load(dataset)
        if kind == "answerable":
            items = [item for item in items if is_answerable(item)]
        return [item.task_id for item in panel(items, dataset)]
    raise ValueError(f"unknown Search-QA split {split!r}; valid splits: {', '.join(split_names())}")
