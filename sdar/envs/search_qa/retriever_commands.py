"""`sdar retriever build-corpus` and `sdar retriever serve`: the library side of the CLI commands, over the
Search-QA corpus this package assembles (the retrievers themselves are in `sdar.retrieval`)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from sdar.envs.search_qa.corpus import AnswerIndex, build_corpus, coverage_report, write_corpus_jsonl
from sdar.envs.search_qa.datasets import DATASETS, load_dataset, resolve_data_dir
from sdar.retrieval import make_retriever
from sdar.retrieval.base import load_corpus_jsonl
from sdar.retrieval.dense import cache_root
from sdar.retrieval.server import DEFAULT_HOST, ServerLimits, make_server


def default_corpus_path() -> Path:
    return cache_root() / "search_qa" / "corpus.jsonl"


def build_corpus_command(data_dir: str | None, output: str | None) -> dict:
    """Assemble the corpus, write it (FlashRAG JSONL) and `<output>.report.json`, print the coverage table."""
    started = time.perf_counter()
    folder = resolve_data_dir(data_dir)
    corpus = build_corpus(folder)
    path = write_corpus_jsonl(corpus, output or default_corpus_path())
    datasets = {name: load_dataset(name, folder) for name in DATASETS}
    report = {
        "corpus": path.resolve().as_posix(),
        "passages": len(corpus),
        "duplicates_dropped": corpus.duplicates_dropped,
        "datasets": coverage_report(corpus, AnswerIndex(corpus.documents), datasets),
    }
    path.with_suffix(".report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"corpus: {len(corpus)} passages ({corpus.duplicates_dropped} duplicates dropped) -> {path}")
    print(f"{'dataset':18s} {'questions':>9s} {'answerable':>10s} {'share %':>8s} {'gold passage':>12s}")
    for name, entry in report["datasets"].items():
        print(
            f"{name:18s} {entry['questions']:9d} {entry['answerable']:10d} "
            f"{100 * entry['answerable_share']:8.1f} {entry['with_gold_passage']:12d}"
        )
    print(f"({time.perf_counter() - started:.1f} s; report: {path.with_suffix('.report.json')})")
    return report


def serve_command(
    *,
    data_dir: str | None,
    corpus: str | None,
    retriever: str,
    host: str = DEFAULT_HOST,
    port: int = 8000,
    limits: ServerLimits | None = None,
    dense_model: str = "",
) -> None:
    """Index the corpus (a FlashRAG JSONL, else the assembled Search-QA corpus) and serve it until ^C."""
    if corpus:
        documents = load_corpus_jsonl(corpus)
    else:
        documents = list(build_corpus(resolve_data_dir(data_dir)).documents)
    if retriever not in ("bm25", "dense"):
        raise ValueError(f"--retriever {retriever!r}: serve bm25 or dense")
    started = time.perf_counter()
    index = make_retriever(retriever, documents, model_path=dense_model)
    server = make_server(index, host, port, limits, document_count=len(documents))
    bound_host, bound_port = server.server_address[:2]
    indexed_s = time.perf_counter() - started
    print(
        f"serving {retriever} over {len(documents)} passages (indexed in {indexed_s:.1f} s) "
        f"at http://{bound_host}:{bound_port}/retrieve; ^C stops",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
