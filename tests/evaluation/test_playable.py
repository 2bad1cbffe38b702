"""`evaluate` refuses what cannot score: another env's own policy, or fewer turns than a win takes."""

import pytest

from sdar.config import load_config
from sdar.errors import ConfigError
from sdar.evaluation.evaluate import check_playable, evaluate


@pytest.mark.parametrize("env", ["alfworld", "alfworld-gen", "webshop-gen"])
def test_no_search_is_refused_off_search_qa_before_anything_runs(tmp_path, env):
    config = load_config("smoke", [f"env.name={env}", "eval.policy=no_search", "env.options={}"])
    with pytest.raises(ConfigError) as error:
        evaluate(config, output_dir=tmp_path / "out")
    assert str(error.value) == (
        f"eval.policy=no_search works only on env search-qa, not on {env!r}; "
        "choose one of: model, expert, random"
    )
    assert not (tmp_path / "out").exists()


def test_no_search_is_accepted_on_search_qa():
    check_playable(load_config("search_qa_smoke", ["eval.policy=no_search"]))


def test_max_turns_below_the_shortest_won_episode_is_refused(tmp_path):
    config = load_config("webshop_smoke", ["env.max_turns=3", "eval.policy=expert"])
    with pytest.raises(ConfigError, match=r"env\.max_turns=3 is below 4, .*'webshop-gen'.*env\.max_turns=4"):
        evaluate(config, output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_webshop_smoke_preset_gives_the_expert_the_turns_it_needs(tmp_path):
    pytest.importorskip("bm25s")
    summary = evaluate(load_config("webshop_smoke", ["eval.policy=expert"]), output_dir=tmp_path / "out")
    assert summary["success_rate"] == 1.0
