"""The text-mode site: pages, admissible actions, transitions, the purchase, the turn limit and the expert."""

import pytest

from sdar.envs.replies import NO_OP_ACTION
from sdar.envs.webshop.env import SEARCH_PLACEHOLDER, ShopWorld, WebShopEnv, admits, parse_action
from sdar.envs.webshop.registry import make_generated_webshop_env, make_webshop_env
from sdar.envs.webshop.search import ProductSearch

from .builders import REAL_DATA, needs_real_data

pytest.importorskip("bm25s")
INSTRUCTION = "Find me short sleeve women's tops with color: navy blue, and size: small"


@pytest.fixture
def env(small_catalogue):
    products = small_catalogue.products
    search = ProductSearch([p.asin for p in products], [p.contents for p in products])
    return WebShopEnv(ShopWorld(small_catalogue, search))


def test_parse_action_like_the_original():
    assert parse_action("click[buy now]") == ("click", "buy now")
    assert parse_action("search[red [xl] shirt]") == ("search[red ", "xl] shirt")  # greedy: not a search
    assert parse_action(NO_OP_ACTION) == (NO_OP_ACTION, None)


def test_search_page_then_results_page(env):
    task, first = env.reset("0")
    assert (task.task_id, task.goal, task.task_type) == ("0", INSTRUCTION, "apparel")
    assert first.observation == f"WebShop [SEP] Instruction: [SEP] {INSTRUCTION} [SEP] Search"
    assert first.admissible_actions == (SEARCH_PLACEHOLDER, "click[search]")
    assert first.info["metrics"] == {"score": 0.0}
    results = env.step("search[Cotton Shirt]")
    assert results.observation == (
        f"Instruction: [SEP] {INSTRUCTION} [SEP] Back to Search [SEP] Page 1 (Total results: 1) [SEP] Next > "
        "[SEP] B000000001 [SEP] Acme Cotton T-Shirt for Women [SEP] $25.0"
    )
    assert results.admissible_actions == ("click[back to search]", "click[next >]", "click[b000000001]")
    assert (results.reward, results.done) == (0.0, False)


def test_item_page_options_sub_pages_and_navigation(env):
    env.reset("0")
    env.step("search[cotton shirt]")
    item = env.step("click[b000000001]")
    assert item.observation == (
        f"Instruction: [SEP] {INSTRUCTION} [SEP] Back to Search [SEP] < Prev [SEP] color [SEP] black [SEP] "
        "navy blue [SEP] size [SEP] small [SEP] x-large [SEP] Acme Cotton T-Shirt for Women [SEP] "
        "Price: $25.0 [SEP] Rating: N.A. [SEP] Description [SEP] Features [SEP] Reviews [SEP] Buy Now"
    )
    assert item.admissible_actions == (
        "click[back to search]", "click[< prev]", "click[description]", "click[features]", "click[reviews]",
        "click[buy now]", "click[black]", "click[navy blue]", "click[small]", "click[x-large]",
    )  # fmt: skip
    features = env.step("click[features]")
    assert features.observation.endswith("< Prev [SEP] Machine wash [SEP] Short sleeve")
    assert env.step("click[< prev]").observation == item.observation
    assert env.step("click[< prev]").observation.startswith(f"Instruction: [SEP] {INSTRUCTION} [SEP] Back to")
    assert env.step("click[next >]").observation.endswith(
        "Page 2 (Total results: 1) [SEP] < Prev [SEP] Next >"
    )
    back = env.step("click[back to search]")
    assert back.observation.startswith("WebShop [SEP] Instruction:")


def test_invalid_or_unlisted_actions_are_no_ops(env):
    _, first = env.reset("0")
    for action in (NO_OP_ACTION, "click[search]", "click[buy now]", "search[]", "look"):
        result = env.step(action)
        assert result.observation == first.observation and result.reward == 0.0 and not result.done


def test_admits_what_the_page_lists_as_the_env_reads_it():
    search_page = (SEARCH_PLACEHOLDER, "click[search]")
    assert admits("search[red shirt]", search_page) and not admits("search[]", search_page)
    assert not admits("click[search]", search_page)  # listed, but it changes nothing
    results_page = ("click[back to search]", "click[b000000001]")
    assert admits("click[B000000001]", results_page)  # the argument is read in lower case
    assert not admits("search[red shirt]", results_page)  # no search bar listed here
    assert not admits("click[b000000002]", results_page) and not admits(NO_OP_ACTION, results_page)


def test_buying_scores_the_product_and_options(env):
    env.reset("0")
    env.step("search[cotton shirt]")
    env.step("click[b000000001]")
    env.step("click[navy blue]")
    bought = env.step("click[buy now]")
    # attributes 2/3 (no "hand wash"), options 1/2 (no size chosen), price ok: 4/6
    assert bought.done and not bought.won and bought.reward == 0.0
    assert bought.info["metrics"]["score"] == pytest.approx(4 / 6)
    assert bought.observation.startswith("Thank you for shopping with us!")
    assert bought.admissible_actions == ()
    assert env.step("click[buy now]").done  # stepping after the end changes nothing


def test_the_episode_ends_after_max_steps(small_catalogue):
    products = small_catalogue.products
    search = ProductSearch([p.asin for p in products], [p.contents for p in products])
    env = WebShopEnv(ShopWorld(small_catalogue, search), max_steps=3)
    env.reset("0")
    assert [env.step(NO_OP_ACTION).done for _ in range(3)] == [False, False, True]


def test_unknown_task_and_step_before_reset_fail_clearly(env):
    with pytest.raises(RuntimeError, match="reset"):
        env.step("click[search]")
    with pytest.raises(KeyError, match="goal indices 0..0"):
        env.reset("7")


def play_expert(env, task_id):
    env.reset(task_id)
    result, steps = None, 0
    while result is None or not result.done:
        result = env.step(env.expert_action())
        steps += 1
    return result, steps


def test_expert_wins_every_generated_test_goal():
    env = make_generated_webshop_env(products=60, test_goals=20)
    for task_id in env.task_ids("test"):
        result, steps = play_expert(env, task_id)
        assert result.won and result.reward == 10.0 and steps <= 15
    assert env.expert_action() is None


def test_generated_env_rejects_unknown_options():
    with pytest.raises(ValueError, match="allowed: max_steps, products"):
        make_generated_webshop_env(items=3)


@needs_real_data
def test_real_catalogue_expert_release_and_upstream_rewards():
    release = make_webshop_env(REAL_DATA, reward="release")
    upstream = make_webshop_env(REAL_DATA)  # the default
    for task_id in release.task_ids("test")[:25]:
        assert play_expert(upstream, task_id)[0].won
        result, _ = play_expert(release, task_id)
        # goal 20's colour "r.brown2070" cannot match under the release's option rule: 6 of 7
        assert result.won == (task_id != "20")
    assert play_expert(release, "20")[0].info["metrics"]["score"] == pytest.approx(6 / 7)
