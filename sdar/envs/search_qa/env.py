"""SearchQAEnv: the Search-R1 protocol over local retrieval (docs/method.md §1, §7).

One task = one question. Actions are the canonical tag texts the reply parser produces:
- `<search>query</search>`: the retriever's top-k passages (default 3) come back as the observation, wrapped
  in `<information>...</information>`, one "Doc i(Title: T) text" line each (Search-R1's rendering);
- `<answer>text</answer>`: ends the episode; reward 1 and won when the normalised answer equals any gold
  answer (Search-R1 EM), else 0; extra metrics in `info["metrics"]`: "f1" (best token F1 over the gold
  answers) and "grounded" (1 when the answer occurs in a passage retrieved during the episode, so a correct
  guess without evidence shows up as won but not grounded);
- anything else (the rollout's no-op for an invalid reply) changes nothing and says how to reply; the
  rollout subtracts the invalid-action penalty (0.01 for Search-QA).
At most `max_turns` steps (env.max_turns; 4 in the paper): the step that uses the last turn without answering
ends the episode, reward 0.

The expert (for questions whose evidence is in the corpus) searches the question's keywords, then the
title of each evidence passage (the marked gold passages, else answer-bearing ones) it has not retrieved yet
while turns remain for an answer, then answers the gold answer: the alias found in the retrieved text when
there is one. It knows the answer, so its EM is 100% by construction wherever a gold alias can be written; its
"grounded" rate says how often retrieval actually surfaced the evidence.
"""

from __future__ import annotations

from sdar.env_records import StepResult, Task
from sdar.envs.search_qa.corpus import text_has_answer
from sdar.envs.search_qa.datasets import QAItem
from sdar.envs.search_qa.metrics import best_f1, exact_match
from sdar.envs.search_qa.prompts import DEFAULT_MAX_TURNS, answer_action, read_action, search_action
from sdar.envs.search_qa.resources import Resources
from sdar.retrieval.base import format_passages

FIRST_OBSERVATION = "No search results yet."
INVALID_OBSERVATION = (
    "Your last reply was not valid: write <think>...</think> and then exactly one "
    "<search>query</search> or <answer>answer</answer>."
)
NO_RESULTS = "No passage matches this query."
EPISODE_OVER = "The episode is over."


# Question words and function words the expert leaves out of its first query (the general skill asks for a
# short keyword query; BM25 drops English stop words anyway, so retrieval barely changes).
QUERY_STOP_WORDS = frozenset(
    (  # noqa: SIM905 - one readable line of words
        "a an the of in on at to for from by with and or is are was were be been do does did what who whom "
        "whose when where which why how many much that this these those it its as into there their his her"
    ).split()
)


def keyword_query(question: str) -> str:
    """The question without question/function words and final punctuation, e.g. "who wrote the book X?" ->
    "wrote book X"; the question itself when nothing would be left."""
    words = [word for word in question.replace("?", " ").split() if word.lower() not in QUERY_STOP_WORDS]
    return " ".join(words) or question.strip()


class SearchQAEnv:
    def __init__(self, resources: Resources, *, topk: int = 3, max_turns: int = DEFAULT_MAX_TURNS):
        if not isinstance(topk, int) or topk < 1 or not isinstance(max_turns, int) or max_turns < 1:
            raise ValueError(f"topk and max_turns must be positive integers, got {topk!r}, {max_turns!r}")
        self.resources = resources
        self.topk = topk
        self.max_turns = max_turns
        self._item: QAItem | None = None
        self._turns = 0
        self._done = True
        self._seen_ids: list[str] = []
        self._seen_text: list[str] = []
        self._queries: list[str] = []

    # ---- TextEnv -------------------------------------------------------------------------------------------
    def task_ids(self, split: str) -> list[str]:
        return self.resources.task_ids(split)

    def reset(self, task_id: str) -> tuple[Task, StepResult]:
        item = self.resources.find(task_id)
        self._item, self._turns, self._done = item, 0, False
        self._seen_ids, self._seen_text, self._queries = [], [], []
        task = Task(
            task_id=item.task_id,
            task_type=item.data_source,
            goal=item.question,
            metadata={"max_turns": self.max_turns},
        )
        return task, StepResult(observation=FIRST_OBSERVATION)

    def step(self, action: str) -> StepResult:
        if self._item is None or self._done:
            return StepResult(observation=EPISODE_OVER, done=True)
        self._turns += 1
        kind, content = read_action(action)
        if kind == "answer":
            return self._finish(content)
        if kind == "search":
            try:
                hits = self.resources.retriever.search([content], self.topk)[0]
            except Exception as error:  # a retrieval server that went away: end the episode, say why
                self._done = True
                return StepResult(
                    observation=EPISODE_OVER, done=True, info={"error": f"retrieval failed: {error}"}
                )
            self._queries.append(content)
            self._seen_ids += [hit.document.passage_id for hit in hits]
            self._seen_text += [hit.document.contents for hit in hits]
            observation = f"<information>{format_passages(hits) or NO_RESULTS}</information>"
        else:
            observation = INVALID_OBSERVATION
        if self._turns >= self.max_turns:  # the last turn went by without an answer
            self._done = True
            return StepResult(
                observation=observation, done=True, info={"metrics": {"f1": 0.0, "grounded": 0.0}}
            )
        return StepResult(observation=observation)

    def _finish(self, answer: str) -> StepResult:
        self._done = True
        golden = self._item.golden_answers
        won = exact_match(answer, golden)
        return StepResult(
            observation=f"Your answer: {answer}",
            reward=1.0 if won else 0.0,
            done=True,
            won=won,
            info={"metrics": {"f1": best_f1(answer, golden), "grounded": float(self._grounded(answer))}},
        )

    def _grounded(self, answer: str) -> bool:
        """Whether the answer occurs in a passage this episode retrieved (evidence, not a lucky guess)."""
        return text_has_answer("\n".join(self._seen_text), [answer])

    def expert_action(self) -> str | None:
        if self._item is None or self._done:
            return None
        item = self._item
        turns_left = self.max_turns - self._turns
        if turns_left > 1:  # a search now still leaves a turn to answer
            if not self._queries:
                return search_action(keyword_query(item.question))
            for passage_id, title in self.resources.gold_evidence(item):
                if passage_id not in self._seen_ids and title and title not in self._queries:
                    return search_action(title)
        return answer_action(self._gold_answer(item))

    def _gold_answer(self, item: QAItem) -> str:
        """The first gold alias that the retrieved passages contain, else the first gold answer; only aliases
        a reply can carry (one has a soft hyphen, a control character the parser rejects)."""
        usable = [
            answer for answer in item.golden_answers if read_action(answer_action(answer))[0] == "answer"
        ]
        read = "\n".join(self._seen_text)
        for answer in usable:
            if text_has_answer(read, [answer]):
                return answer
        return usable[0] if usable else "unknown"

    def close(self) -> None:
        self._item = None
