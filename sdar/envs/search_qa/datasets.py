"""The Search-QA question sets (../shared/data/searchqa, see its SOURCES.md) behind one record, `QAItem`.

Three file formats are read, each keeping the dataset name as `data_source` (the skill router's task type):
- Search-R1 parquet (`id, question, golden_answers, data_source, ...`; needs pyarrow, the `search` extra);
- FlashRAG JSONL (`{"id", "question", "golden_answers"}` per line);
- plain JSON lists (`[{"question", "answer": str | [str, ...]}]`), whose rows get their index as id.

The data folder is `env.data_dir`, else $SEARCHQA_DATA; nothing is copied into the repository.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path

DATA_VARIABLE = "SEARCHQA_DATA"

# The seven evaluation datasets, in the paper's Table 1 column order (docs/method.md §7).
DATASETS: tuple[str, ...] = ("nq", "triviaqa", "popqa", "hotpotqa", "2wikimultihopqa", "musique", "bamboogle")
TRAIN_POOL = "ambigqa"  # NQ-open train questions (AmbigQA train); data_source "nq"

# name -> (path under the data folder, format). TriviaQA and PopQA are the shipped 1k subsamples.
DATASET_FILES: dict[str, tuple[str, str]] = {
    "nq": ("questions/nq/test.parquet", "parquet"),
    "triviaqa": ("questions/triviaqa/test_1k_subsample.jsonl", "flashrag"),
    "popqa": ("questions/popqa/test_1k_subsample.jsonl", "flashrag"),
    "hotpotqa": ("questions/hotpotqa/hotpotqa_test_questions_and_answers.json", "json"),
    "2wikimultihopqa": ("questions/2wikimultihopqa/2wikimultihop_test_questions_and_answers.json", "json"),
    "musique": ("questions/musique/musique_test_questions_and_answers.json", "json"),
    "bamboogle": ("questions/bamboogle/test.jsonl", "flashrag"),
    TRAIN_POOL: ("train/ambigqa_train_questions_and_answers.json", "json"),
}
DATA_SOURCES = {TRAIN_POOL: "nq"}  # a file whose questions belong to another dataset
# JSON rows have no ids; a prefix keeps the pool's ids apart from the NQ test ids ("test_0" vs "train_0").
ID_PREFIXES = {TRAIN_POOL: "train_"}


@dataclass(frozen=True)
class QAItem:
    """One question: its id within the dataset, text, gold answers (any one counts) and dataset name."""

    question_id: str
    question: str
    golden_answers: tuple[str, ...]
    data_source: str

    @property
    def task_id(self) -> str:
        """`<data_source>/<question_id>`: unique over datasets and stable across machines."""
        return f"{self.data_source}/{self.question_id}"


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The Search-QA data folder: `data_dir`, else $SEARCHQA_DATA; a clear error when neither is usable."""
    chosen = str(data_dir) if data_dir else os.environ.get(DATA_VARIABLE, "")
    if not chosen:
        raise FileNotFoundError(
            f"no Search-QA data folder: set env.data_dir=PATH or ${DATA_VARIABLE} "
            f"(the shipped copy is ../shared/data/searchqa)"
        )
    path = Path(chosen).expanduser()
    if not (path / "questions").is_dir():
        raise FileNotFoundError(
            f"Search-QA data folder {path} has no questions/ subfolder; point env.data_dir or "
            f"${DATA_VARIABLE} at the folder holding questions/, corpus/ and train/"
        )
    return path


def _answers(value) -> tuple[str, ...]:
    values = [value] if isinstance(value, str) else list(value or [])
    return tuple(str(answer) for answer in values if str(answer).strip())


def load_search_r1_parquet(path: str | Path, data_source: str | None = None) -> list[QAItem]:
    """Rows of a Search-R1 parquet file; gold answers from `golden_answers` (else reward_model's target)."""
    try:
        import pyarrow.parquet as parquet
    except ImportError as error:
        raise ImportError(
            f"reading {path} needs pyarrow: pip install 'sdar[search]' (or pip install pyarrow)"
        ) from error
    items = []
    for index, row in enumerate(parquet.read_table(path).to_pylist()):
        answers = row.get("golden_answers")
        if answers is None:
            answers = ((row.get("reward_model") or {}).get("ground_truth") or {}).get("target")
        source = data_source or row.get("data_source") or "unknown"
        question_id = str(row["id"]) if row.get("id") is not None else str(index)
        items.append(QAItem(question_id, str(row["question"]).strip(), _answers(answers), source))
    return items


def load_flashrag_jsonl(path: str | Path, data_source: str) -> list[QAItem]:
    """FlashRAG JSONL: one `{"id", "question", "golden_answers"}` object per line."""
    items = []
    with open(path, encoding="utf-8") as handle:
        for index, line in enumerate(handle):
            if not line.strip():
                continue
            row = json.loads(line)
            question_id = str(row.get("id", index))
            items.append(
                QAItem(
                    question_id, str(row["question"]).strip(), _answers(row["golden_answers"]), data_source
                )
            )
    return items


def load_question_answer_json(path: str | Path, data_source: str, id_prefix: str = "") -> list[QAItem]:
    """A JSON list of `{"question", "answer"}` (answer: a string or a list); ids = prefix + row index."""
    rows = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(rows, list):
        raise ValueError(f"{path}: expected a JSON list of {{'question', 'answer'}} objects")
    return [
        QAItem(f"{id_prefix}{index}", str(row["question"]).strip(), _answers(row["answer"]), data_source)
        for index, row in enumerate(rows)
    ]


_LOADERS = {
    "parquet": load_search_r1_parquet,
    "flashrag": load_flashrag_jsonl,
    "json": load_question_answer_json,
}


def check_dataset_name(name: str) -> None:
    if name not in DATASET_FILES:
        raise KeyError(f"unknown Search-QA dataset {name!r}; valid names: {', '.join(DATASET_FILES)}")


@functools.lru_cache(maxsize=32)
def _load_cached(data_dir: Path, name: str) -> tuple[QAItem, ...]:
    relative, kind = DATASET_FILES[name]
    path = data_dir / relative
    if not path.is_file():
        raise FileNotFoundError(f"Search-QA dataset {name!r}: {path} does not exist")
    source = DATA_SOURCES.get(name, name)
    if kind == "json":
        items = load_question_answer_json(path, source, ID_PREFIXES.get(name, ""))
    else:
        items = _LOADERS[kind](path, source)
    seen: set[str] = set()
    for item in items:
        if item.question_id in seen:
            raise ValueError(f"{path}: question id {item.question_id!r} occurs twice")
        seen.add(item.question_id)
    return tuple(items)


def load_dataset(name: str, data_dir: str | Path | None = None) -> tuple[QAItem, ...]:
    """The questions of dataset `name` (a key of DATASET_FILES), in file order; cached per process."""
    check_dataset_name(name)
    return _load_cached(resolve_data_dir(data_dir).resolve(), name)
