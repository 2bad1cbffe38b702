"""The WebShop text environment, reimplemented natively (no Java, no Flask), as a sdar `TextEnv`.

Facts of the original (princeton-nlp/WebShop `web_agent_text_env.py`, as the verl-agent/SDAR release runs it
with observation_mode="text") that this state machine relies on:
- Actions are parsed with the regex `(.+)\\[(.+)\\]` matched at the start; the argument is lower-cased.
  `search[words]` with a non-empty argument searches from ANY page (the page need not show a search bar);
  `click[x]` acts only if x is a clickable of the current page and x != "search"; anything else (including
  sdar's invalid-reply no-op) leaves the page unchanged with reward 0.
- A search returns the top 50 products (BM25, see search.py), shown 10 per page, starting at page 1, and
  clears the chosen product and options. "next >" / "< prev" on a results page move one page. On an item page
  "< prev" returns to the results page (clearing the options); on a sub-page it returns to the item page.
  "back to search" returns to the search page and clears the query, product and options.
- Clicking an ASIN opens its item page; clicking an option value records it under its option name (a value
  shared by two option names belongs to the last one); "description" / "features" / "reviews" open sub-pages.
- "buy now" ends the episode with the purchase score (reward.py) of the current product and options.
- The agent sees the " [SEP] "-joined visible text (pages.py); verl-agent lists the admissible actions as
  "search[<your query>]" when the page has a search bar, then "click[<clickable>]" for each clickable.
- verl-agent's reward: 10 when the score is exactly 1.0 (won), else 0; the score itself is a metric. Episodes
  last at most `max_steps` steps (env.max_turns; 15, WebShop's setting in the paper); the last one ends a
  non-purchase episode with 0.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from sdar.env_records import StepResult, Task
from sdar.envs.webshop.catalog import Catalogue, Goal, Product
from sdar.envs.webshop.categories import goal_categories
from sdar.envs.webshop.pages import (
    BACK_TO_SEARCH,
    BUY_NOW,
    NEXT_PAGE,
    PREVIOUS_PAGE,
    PRODUCTS_PER_PAGE,
    SUB_PAGES,
    Page,
    done_page,
    item_page,
    results_page,
    search_page,
    sub_page,
)
from sdar.envs.webshop.reward import REWARD_VERSIONS, purchase_score
from sdar.envs.webshop.search import SEARCH_RETURN_N, ProductSearch

ACTION_PATTERN = re.compile(r"(.+)\[(.+)\]")
SEARCH_PLACEHOLDER = "search[<your query>]"
WIN_REWARD = 10.0
MAX_STEPS = 15
_INSTRUCTION_CORE = re.compile(r"^(?:find me|i am looking for|i need|i want)\s+", re.IGNORECASE)
_SUB_PAGE_BY_TEXT = {name.lower(): name for name in SUB_PAGES}
_BRACKETS = re.compile(r"[\[\]]")  # a bracket inside search[...] would break the action's parse


@dataclass
class ShopWorld:
    """A catalogue and its search engine, shared by every env of a process."""

    catalogue: Catalogue
    search: ProductSearch


@dataclass
class _Session:
    goal: Goal
    page_kind: str = "search"  # search | results | item | Description | Features | Reviews | done
    keywords: str = ""
    results: list[str] = field(default_factory=list)  # ASINs of the last search, best first
    page_number: int = 1
    asin: str = ""
    options: dict = field(default_factory=dict)  # option name -> chosen value
    steps: int = 0
    score: float = 0.0
    done: bool = False


def parse_action(action: str) -> tuple[str, str | None]:
    """(name, argument) as the original parses `name[argument]`; no brackets -> (action, None)."""
    match = ACTION_PATTERN.match(action)
    return (action, None) if match is None else (match.group(1), match.group(2))


class WebShopEnv:
    """One WebShop session at a time over a `ShopWorld`; task ids are goal indices ("0", "1", ...)."""

    def __init__(self, world: ShopWorld, max_steps: int = MAX_STEPS, reward_version: str = "upstream"):
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        if reward_version not in REWARD_VERSIONS:
            raise ValueError(
                f"unknown reward version {reward_version!r}; versions: {', '.join(REWARD_VERSIONS)}"
            )
        self.world = world
        self.max_steps = max_steps
        self.reward_version = reward_version
        self._session: _Session | None = None
        self._page: Page | None = None

    # --- TextEnv protocol -----------------------------------------------------------------------------------
    def task_ids(self, split: str) -> list[str]:
        return [str(index) for index in self.world.catalogue.split_goal_ids(split)]

    def reset(self, task_id: str) -> tuple[Task, StepResult]:
        goals = self.world.catalogue.goals
        if not str(task_id).isdigit() or int(task_id) >= len(goals):
            raise KeyError(f"unknown WebShop task {task_id!r}: task ids are goal indices 0..{len(goals) - 1}")
        goal = goals[int(task_id)]
        self._session = _Session(goal=goal)
        categories = goal_categories(goal.instruction_text)
        task = Task(
            task_id=str(task_id),
            task_type=categories[0],
            goal=goal.instruction_text,
            metadata={
                "asin": goal.asin,
                "categories": list(categories),
                "goal_options": dict(goal.goal_options),
            },
        )
        return task, self._result(reward=0.0)

    def step(self, action: str) -> StepResult:
        session = self._require_session()
        if session.done:
            return self._result(reward=0.0)
        session.steps += 1
        reward = self._apply(session, action)
        if not session.done and session.steps >= self.max_steps:
            session.done = True  # out of turns without a purchase: score 0
        return self._result(reward=reward)

    def expert_action(self) -> str | None:
        session = self._require_session()
        return None if session.done else _expert_step(self.world, session, self._current_page())

    def close(self) -> None:
        self._session = None

    # --- the state machine ----------------------------------------------------------------------------------
    def _apply(self, session: _Session, action: str) -> float:
        name, argument = parse_action(action)
        argument = argument.lower() if argument is not None else None
        if name == "search" and argument:
            _run_search(self.world, session, argument)
            return 0.0
        clickables = self._current_page().clickables
        if name != "click" or argument not in clickables or argument == "search":
            return 0.0
        clickable = clickables[argument]
        if argument == BUY_NOW.lower():
            return self._buy(session)
        if argument == BACK_TO_SEARCH.lower():
            session.page_kind, session.keywords, session.results = "search", "", []
            session.asin, session.options = "", {}
        elif argument == NEXT_PAGE.lower() and session.page_kind == "results":
            session.page_number += 1
        elif argument == PREVIOUS_PAGE.lower() and session.page_kind == "results":
            session.page_number -= 1
        elif argument == PREVIOUS_PAGE.lower() and session.page_kind in SUB_PAGES:
            session.page_kind = "item"
        elif argument == PREVIOUS_PAGE.lower() and session.page_kind == "item":
            session.page_kind, session.asin, session.options = "results", "", {}
        elif argument in _SUB_PAGE_BY_TEXT:  # dispatched on the text, as the original does
            session.page_kind = _SUB_PAGE_BY_TEXT[argument]
        elif clickable.kind == "product":
            session.page_kind, session.asin = "item", clickable.target
        elif clickable.kind == "option":
            session.page_kind = "item"
            session.options[clickable.group] = clickable.target
        self._page = None
        return 0.0

    def _buy(self, session: _Session) -> float:
        catalogue = self.world.catalogue
        product = catalogue.by_asin[session.asin]
        price = catalogue.prices[product.asin]
        score = purchase_score(product, session.goal, price, session.options, self.reward_version)
        session.score, session.done, session.page_kind = score.score, True, "done"
        self._page = None
        return WIN_REWARD if score.score == 1.0 else 0.0

    def _current_page(self) -> Page:
        if self._page is None:
            self._page = _render(self.world, self._require_session())
        return self._page

    def _result(self, reward: float) -> StepResult:
        session = self._require_session()
        self._page = None
        page = self._current_page()
        return StepResult(
            observation=page.text,
            reward=reward,
            done=session.done,
            won=session.done and session.score == 1.0,
            admissible_actions=admissible_actions(page),
            info={"metrics": {"score": session.score}, "page": session.page_kind},
        )

    def _require_session(self) -> _Session:
        if self._session is None:
            raise RuntimeError("call reset(task_id) before step(); the WebShop env has no session")
        return self._session


def admissible_actions(page: Page) -> tuple[str, ...]:
    """verl-agent's list: the search placeholder where there is a search bar, then one click per clickable."""
    return (*([SEARCH_PLACEHOLDER] if page.has_search_bar else []), *(f"click[{c}]" for c in page.clickables))


def admits(action: str, admissible_actions: Sequence[str]) -> bool:
    """Is `action` one of the page's listed actions, read as `_apply` reads it: a search (any query) where
    the list offers one, or a click on a listed clickable (the argument lower-cased). `click[search]`, which
    the list shows as verl-agent's does, changes nothing and does not count."""
    name, argument = parse_action(action)
    if argument is None:
        return False
    if name == "search":
        return SEARCH_PLACEHOLDER in admissible_actions
    argument = argument.lower()
    return name == "click" and argument != "search" and f"click[{argument}]" in admissible_actions


def _run_search(world: ShopWorld, session: _Session, keywords: str) -> None:
    session.keywords = keywords
    session.results = world.search.search(keywords, SEARCH_RETURN_N)
    session.page_kind, session.page_number, session.asin, session.options = "results", 1, "", {}


def _render(world: ShopWorld, session: _Session) -> Page:
    instruction = session.goal.instruction_text
    kind = session.page_kind
    if kind == "search":
        return search_page(instruction)
    if kind == "results":
        start = (session.page_number - 1) * PRODUCTS_PER_PAGE
        shown = [world.catalogue.by_asin[asin] for asin in session.results[start : start + PRODUCTS_PER_PAGE]]
        return results_page(instruction, shown, session.page_number, len(session.results))
    product: Product = world.catalogue.by_asin[session.asin] if session.asin else None
    if kind == "item":
        return item_page(instruction, product)
    if kind in SUB_PAGES:
        return sub_page(instruction, product, kind)
    return done_page(session.score)


# --- the expert (an oracle: it knows the goal's product and options) --------------------------------------
def expert_query(world: ShopWorld, goal: Goal) -> str:
    """A search that finds the goal product: the instruction's core words if they do, else its title."""
    core = _BRACKETS.sub(" ", _INSTRUCTION_CORE.sub("", goal.base_instruction)).strip().lower()
    if core and goal.asin in world.search.search(core, SEARCH_RETURN_N):
        return " ".join(core.split())
    return " ".join(_BRACKETS.sub(" ", world.catalogue.by_asin[goal.asin].title.lower()).split())


def _expert_step(world: ShopWorld, session: _Session, page: Page) -> str:
    goal = session.goal
    kind = session.page_kind
    if kind in SUB_PAGES:
        return f"click[{PREVIOUS_PAGE.lower()}]"
    if kind == "item" and session.asin != goal.asin:
        return f"click[{PREVIOUS_PAGE.lower()}]"
    if kind == "item":
        for name, value in goal.goal_options.items():
            clickable = page.clickables.get(value)
            if session.options.get(name) != value and clickable is not None and clickable.group == name:
                return f"click[{value}]"
        return f"click[{BUY_NOW.lower()}]"
    if kind == "results" and goal.asin in session.results:
        position = session.results.index(goal.asin) // PRODUCTS_PER_PAGE + 1
        if position == session.page_number:
            return f"click[{goal.asin.lower()}]"
        return f"click[{(NEXT_PAGE if position > session.page_number else PREVIOUS_PAGE).lower()}]"
    return f"search[{expert_query(world, goal)}]"
