"""What a Search-QA env reads: questions by task id, split listings, gold evidence and a retriever.

`QuestionBank` is the small in-memory form (unit tests, your own questions and corpus); `DataResources` reads
../shared/data/searchqa (questions, the assembled corpus, BM25/dense/HTTP retrieval). Both are built once per
process and shared by every env in it (`load_data_resources` is cached), and both build the retriever lazily,
on the first search, so listing a split never indexes the corpus.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from pathlib import Path

from sdar.envs.search_qa.corpus import AnswerIndex, Corpus, build_corpus
from sdar.envs.search_qa.datasets import DATA_SOURCES, DATASET_FILES, QAItem, load_dataset, resolve_data_dir
from sdar.envs.search_qa.splits import split_task_ids
from sdar.errors import ConfigError
from sdar.retrieval import make_retriever
from sdar.retrieval.base import Document, Retriever, load_corpus_jsonl, split_contents

RETRIEVERS = ("bm25", "dense", "http")
EVIDENCE_FALLBACK = 2  # answer-bearing passages the expert may look up when no gold passage is marked


class QuestionBank:
    """Questions, documents and a retriever held in memory; every question is in the split "all"."""

    def __init__(
        self,
        items: Sequence[QAItem],
        documents: Sequence[Document] = (),
        *,
        retriever: Retriever | None = None,
        gold: dict[str, Sequence[str]] | None = None,  # task id -> evidence passage ids
    ):
        self.items = {item.task_id: item for item in items}
        self.documents = list(documents)
        self._titles = {d.passage_id: split_contents(d.contents)[0] for d in self.documents}
        self._gold = {task_id: tuple(ids) for task_id, ids in (gold or {}).items()}
        self._retriever = retriever
        self._lock = threading.Lock()

    def find(self, task_id: str) -> QAItem:
        if task_id not in self.items:
            raise KeyError(f"unknown Search-QA task {task_id!r}")
        return self.items[task_id]

    def task_ids(self, split: str) -> list[str]:
        if split != "all":
            raise ValueError(f"unknown split {split!r}; an in-memory question bank has the split 'all'")
        return list(self.items)

    def gold_evidence(self, item: QAItem) -> list[tuple[str, str]]:
        """(passage id, title) of the question's marked evidence passages."""
        return [(pid, self._titles.get(pid, "")) for pid in self._gold.get(item.task_id, ())]

    @property
    def retriever(self) -> Retriever:
        with self._lock:
            if self._retriever is None:
                self._retriever = make_retriever("bm25", self.documents)
            return self._retriever


class DataResources:
    """The shipped Search-QA data: question files, the assembled corpus and the configured retriever."""

    def __init__(
        self,
        data_dir: Path,
        *,
        retriever: str = "bm25",
        retriever_url: str = "",
        corpus_path: str = "",
        dense_model: str = "",
        cache_dir: str = "",
    ):
        if retriever not in RETRIEVERS:
            raise ConfigError(f"env.options.retriever={retriever!r}; choose one of: {', '.join(RETRIEVERS)}")
        self.data_dir = data_dir
        self._retriever_settings = dict(
            kind=retriever, url=retriever_url, model_path=dense_model, cache_dir=cache_dir or None
        )
        self.corpus_path = corpus_path
        self._lock = threading.Lock()
        self._by_task: dict[str, dict[str, QAItem]] = {}
        self._retriever: Retriever | None = None

    @functools.cached_property
    def corpus(self) -> Corpus:
        return build_corpus(self.data_dir)

    @functools.cached_property
    def answer_index(self) -> AnswerIndex:
        return AnswerIndex(self.corpus.documents)

    @functools.cached_property
    def _titles(self) -> dict[str, str]:
        return {d.passage_id: split_contents(d.contents)[0] for d in self.corpus.documents}

    def load(self, dataset: str) -> tuple[QAItem, ...]:
        return load_dataset(dataset, self.data_dir)

    def find(self, task_id: str) -> QAItem:
        source, _, _ = task_id.partition("/")
        datasets = [name for name in DATASET_FILES if DATA_SOURCES.get(name, name) == source]
        if not datasets:
            raise KeyError(f"unknown Search-QA task {task_id!r}: ids look like 'nq/test_0' or 'hotpotqa/12'")
        for dataset in datasets:
            with self._lock:
                if dataset not in self._by_task:
                    self._by_task[dataset] = {item.task_id: item for item in self.load(dataset)}
            if task_id in self._by_task[dataset]:
                return self._by_task[dataset][task_id]
        raise KeyError(f"unknown Search-QA task {task_id!r}: no such question in {', '.join(datasets)}")

    def is_answerable(self, item: QAItem) -> bool:
        return self.answer_index.has_answer(item.golden_answers)

    def task_ids(self, split: str) -> list[str]:
        return split_task_ids(
            split, self.load, self.is_answerable, lambda item: bool(self.corpus.gold_for(item))
        )

    def gold_evidence(self, item: QAItem) -> list[tuple[str, str]]:
        """(passage id, title) of the question's evidence: its marked gold passages, else (for questions the
        source files give none) the first EVIDENCE_FALLBACK passages that contain a gold answer."""
        marked = self.corpus.gold_for(item)
        if not marked:
            found = (pid for answer in item.golden_answers for pid in self.answer_index.passages_with(answer))
            marked = tuple(dict.fromkeys(found))[:EVIDENCE_FALLBACK]
        return [(pid, self._titles[pid]) for pid in marked]

    def documents(self) -> list[Document]:
        """The retrieval corpus: `corpus_path` (a FlashRAG JSONL) when given, else the assembled corpus."""
        return load_corpus_jsonl(self.corpus_path) if self.corpus_path else list(self.corpus.documents)

    @property
    def retriever(self) -> Retriever:
        with self._lock:
            if self._retriever is None:
                settings = self._retriever_settings
                documents = [] if settings["kind"] == "http" else self.documents()
                self._retriever = make_retriever(
                    settings["kind"],
                    documents,
                    url=settings["url"],
                    cache_dir=settings["cache_dir"],
                    model_path=settings["model_path"],
                )
            return self._retriever


@functools.lru_cache(maxsize=4)
def _cached_resources(data_dir: Path, retriever: str, url: str, corpus: str, model: str, cache: str):
    return DataResources(
        data_dir,
        retriever=retriever,
        retriever_url=url,
        corpus_path=corpus,
        dense_model=model,
        cache_dir=cache,
    )


def load_data_resources(
    data_dir: str | Path | None = None,
    *,
    retriever: str = "bm25",
    retriever_url: str = "",
    corpus_path: str = "",
    dense_model: str = "",
    cache_dir: str = "",
) -> DataResources:
    """The process-wide DataResources of these settings (the data folder is checked right away)."""
    resolved = resolve_data_dir(data_dir).resolve()
    return _cached_resources(resolved, retriever, retriever_url, corpus_path, dense_model, cache_dir)


Resources = QuestionBank | DataResources
