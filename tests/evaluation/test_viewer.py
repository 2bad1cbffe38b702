"""`sdar view`: episode records, safe embedding, the page, headless Chromium (render, no script injection)."""

from __future__ import annotations

import html
import json
import re

import pytest

from sdar.cli import main
from sdar.errors import ConfigError
from sdar.evaluation.viewer import (
    embed_json,
    evaluation_episodes,
    render_viewer,
    select_evenly,
    training_episodes,
    viewer_path,
    write_viewer,
)

# Each payload would leave a trace if it ever ran: a changed title or a marker attribute/element in the DOM.
SCRIPT_PAYLOAD = "<script>document.title='PWNED';document.body.setAttribute('data-pwned','script')</script>"
IMAGE_PAYLOAD = "<img src=x onerror=\"document.body.setAttribute('data-pwned','img')\">"
CLOSE_PAYLOAD = "</script><script>document.title='PWNED'</script>"
SVG_PAYLOAD = "<svg onload=\"document.body.setAttribute('data-pwned','svg')\"></svg>"


def sample(step=1, won=False, task_type="pick_and_place_simple", reply=SCRIPT_PAYLOAD, gap=(0.5, -0.5, 0.0)):
    tokens = [reply[:8], reply[8:16], reply[16:]]
    return {
        "step": step,
        "task_id": "/cache/generated/pick-1/trial_1",
        "task_type": task_type,
        "goal": f"put a {IMAGE_PAYLOAD} in the box",
        "skills": f"Look in drawers first. {SVG_PAYLOAD}",
        "won": won,
        "return": 1.0 if won else 0.0,
        "error": "",
        "turns": [
            {
                "turn": 0,
                "prompt": f"Observation: {CLOSE_PAYLOAD}",
                "response": reply,
                "tokens": tokens,
                "action": f"go to {IMAGE_PAYLOAD}",
                "observation": f"You see {SVG_PAYLOAD}",
                "valid": True,
                "admissible": False,  # a well-formed reply naming something the room does not have
                "env_reward": 0.0,
                "reward": 0.0,
                "advantage": 0.25,
                "gap": list(gap),
                "gate": [0.99, 0.01, 0.5],
            }
        ],
    }


def test_training_episodes_keep_turns_tokens_and_colours():
    (episode,) = training_episodes([sample()])
    assert (episode["source"], episode["label"], episode["task_label"]) == ("train", "train step 1", "Pick")
    (turn,) = episode["turns"]
    assert "".join(turn["tokens"]) == SCRIPT_PAYLOAD
    assert turn["gap"] == [0.5, -0.5, 0.0] and turn["gate"] == [0.99, 0.01, 0.5]
    assert turn["advantage"] == 0.25 and episode["skills"].startswith("Look in drawers")
    assert turn["valid"] is True and turn["admissible"] is False


def test_token_values_that_do_not_match_the_tokens_are_dropped():
    (episode,) = training_episodes([sample(gap=(0.1,))])
    assert episode["turns"][0]["gap"] is None and episode["turns"][0]["gate"] is not None


def test_evaluation_episodes_from_episode_records():
    record = {"seed": 3, "task_id": "/abs/a/b/c", "task_key": "a/b/c", "task_type": "look_at_obj_in_light",
              "won": True, "turns": 2, "actions": ["look", "use desklamp 1"], "valid": [True, False],
              "admissible": [True, False], "replies": ["<action>look</action>", "x"]}  # fmt: skip
    (episode,) = evaluation_episodes("final", [record])
    assert (episode["source"], episode["label"], episode["task_id"]) == (
        "eval final",
        "eval final · seed 3",
        "a/b/c",
    )
    assert [t["action"] for t in episode["turns"]] == ["look", "use desklamp 1"]
    assert [t["valid"] for t in episode["turns"]] == [True, False]
    assert [t["admissible"] for t in episode["turns"]] == [True, False]
    assert episode["turns"][1]["tokens"] is None and episode["won"] is True


def test_select_evenly_keeps_first_and_last():
    assert select_evenly(list(range(10)), 4) == [0, 3, 6, 9]
    assert select_evenly([1, 2], 5) == [1, 2]
    assert select_evenly([1, 2, 3], 1) == [3]
    with pytest.raises(ConfigError):
        select_evenly([1], 0)


def embedded_data(page: str) -> dict:
    return json.loads(page.split('id="episodes-data">')[1].split("</script>")[0])


def test_gap_scale_is_fixed_in_nats_and_must_be_positive():
    episodes = training_episodes([sample(gap=(0.001, -0.002, 3.0))])  # most gaps tiny, as in real runs
    assert embedded_data(render_viewer(episodes, "t"))["gap_scale"] == 1.0
    assert embedded_data(render_viewer(episodes, "t", gap_scale=0.25))["gap_scale"] == 0.25
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ConfigError, match="gap scale"):
            render_viewer(episodes, "t", gap_scale=bad)


def test_embedded_json_cannot_close_the_script_and_round_trips():
    data = {"text": CLOSE_PAYLOAD + " & \u2028"}
    embedded = embed_json(data)
    assert not re.search("[<>&\u2028]", embedded)
    assert json.loads(embedded) == data


def test_page_holds_no_raw_payload_and_an_escaped_title():
    page = render_viewer(training_episodes([sample()]), f"run {SCRIPT_PAYLOAD}")
    for payload in (SCRIPT_PAYLOAD, IMAGE_PAYLOAD, CLOSE_PAYLOAD, SVG_PAYLOAD):
        assert payload not in page
    assert page.count("<script") == 2 and page.count("</script>") == 2  # the data element and the code
    assert f"<title>run {html.escape(SCRIPT_PAYLOAD)}</title>" in page
    assert embedded_data(page)["episodes"][0]["turns"][0]["response"] == SCRIPT_PAYLOAD
    assert "innerHTML" not in page and "insertAdjacentHTML" not in page and "document.write" not in page


def write_run(root, samples, eval_records=None):
    run = root / "run"
    run.mkdir()
    (run / "config.yaml").write_text("seed: 0\n")
    (run / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples) + '{"step": 9, "tas')
    if eval_records is not None:
        (run / "eval" / "final").mkdir(parents=True)
        (run / "eval" / "final" / "episodes.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in eval_records)
        )
    return run


def test_write_viewer_reads_samples_and_eval_episodes(tmp_path):
    record = {
        "seed": 0,
        "task_id": "t",
        "task_type": "pick_two_obj_and_place",
        "won": False,
        "actions": ["look"],
    }
    run = write_run(tmp_path, [sample(step=s) for s in range(1, 6)], [record])
    with pytest.warns(UserWarning, match="torn"):
        path, count = write_viewer(run, max_episodes=3)
    assert (path, count) == (run / "viewer.html", 4)
    data = embedded_data(path.read_text())
    assert [e["label"] for e in data["episodes"]] == [
        "train step 1",
        "train step 3",
        "train step 5",
        "eval final · seed 0",
    ]


def test_the_page_is_an_html_file_wherever_output_points(tmp_path):
    run = tmp_path / "run"
    (tmp_path / "pages").mkdir()
    assert viewer_path(run) == run / "viewer.html"
    assert viewer_path(run, tmp_path / "pages") == tmp_path / "pages" / "viewer.html"  # a directory
    assert viewer_path(run, f"{tmp_path}/new/") == tmp_path / "new" / "viewer.html"
    assert viewer_path(run, tmp_path / "sdar-s0") == tmp_path / "sdar-s0.html"  # opens as a page
    assert viewer_path(run, tmp_path / "v.HTML") == tmp_path / "v.HTML"
    assert viewer_path(run, tmp_path / "v.htm") == tmp_path / "v.htm"


def test_write_viewer_bad_inputs(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="neither a run directory"):
        write_viewer(tmp_path / "empty")
    assert main(["view", str(tmp_path / "missing")]) == 2
    assert "no such directory" in capsys.readouterr().err
    run = write_run(tmp_path, [])
    with pytest.raises(ConfigError, match="no episodes"), pytest.warns(UserWarning):
        write_viewer(run)
    (tmp_path / "other").mkdir()
    run = write_run(tmp_path / "other", [sample()])
    assert main(["view", str(run), "--gap-scale", "0"]) == 2
    assert "gap scale 0.0: it must be a positive number" in capsys.readouterr().err
    assert not (run / "viewer.html").exists()


# ---- headless Chromium -----------------------------------------------------------------------------------
@pytest.fixture
def hostile_run(tmp_path):
    """A run whose every text field carries a payload, with a won and a lost episode of two task types."""
    samples = [
        sample(step=1, won=False),
        sample(step=2, won=True, task_type=IMAGE_PAYLOAD, reply=IMAGE_PAYLOAD),
    ]
    record = {"seed": 0, "task_id": "t", "task_type": SVG_PAYLOAD, "won": False, "actions": [CLOSE_PAYLOAD],
              "replies": [SCRIPT_PAYLOAD], "valid": [False]}  # fmt: skip
    run = write_run(tmp_path, samples, [record])
    with pytest.warns(UserWarning):
        path, _ = write_viewer(run, output=tmp_path / "viewer.html")
    return path


@pytest.mark.slow
def test_viewer_renders_and_runs_no_injected_script(hostile_run, chromium, tmp_path):
    dom = chromium.dump_dom(hostile_run)
    assert re.search("<title>(.*?)</title>", dom).group(1) == "sdar view: run"  # no payload set the title
    assert "data-pwned" not in re.search("<body[^>]*>", dom).group(0)  # no payload marked the body
    assert "document.body.setAttribute('data-pwned'" in dom  # the payload text is there ...
    assert ">&lt;script&gt;</span>" in dom  # ... rendered as text: the first reply token of episode 1
    assert html.escape(CLOSE_PAYLOAD, quote=False) in dom  # the prompt
    assert html.escape(f"You see {SVG_PAYLOAD}", quote=False) in dom  # the env reply
    assert "3 of 3 episodes" in dom  # the script ran to the end
    assert ">≤ -1.00</span>" in dom and ">≥ 1.00</span>" in dom  # the legend of the fixed gap scale
    assert "not admissible" in dom  # the first episode's valid reply named no admissible action
    assert "<img src=" not in dom and "<svg" not in dom  # no element was built from data
    shot = chromium.screenshot(hostile_run, tmp_path / "viewer.png")
    chromium.assert_nontrivial_png(shot, min_colours=50)


# ---- non-finite numbers (JSON has no NaN or Infinity) -----------------------------------------------------
NAN, INF = float("nan"), float("inf")


def non_finite_run(tmp_path):
    """A run whose samples.jsonl and eval episodes.jsonl carry NaN and ±Infinity in its numeric fields
    (json.dumps writes them as the bare words NaN / Infinity, as Python's json does by default)."""
    first = sample(step=1, reply="abcdefghijklmnopqrst", gap=(NAN, INF, -INF))
    turn = first["turns"][0]
    turn.update(gate=[NAN, INF, 0.5], env_reward=NAN, reward=-INF, advantage=NAN)
    turn.update(old_logprobs=[NAN, -INF, -0.5], teacher_logprobs=[-INF, 0.0, NAN])
    first["return"] = INF
    second = sample(step=2, won=True, reply="second episode reply")
    second["turns"][0].update(reward=INF, advantage=-INF, gate=[INF, -INF, NAN])
    record = {"seed": NAN, "task_id": "t", "task_type": "pick_two_obj_and_place", "won": False,
              "return": -INF, "turns": INF, "actions": ["look"], "replies": ["third reply"]}  # fmt: skip
    return write_run(tmp_path, [first, second], [record])


def test_embedded_json_writes_non_finite_numbers_as_strict_json_tags():
    data = {"a": [NAN, INF, -INF, 1.5], "b": {"c": (INF,)}, "text": "NaN"}
    embedded = embed_json(data)

    def refuse(word):
        raise AssertionError(f"bare {word} in the embedded JSON")

    decoded = json.loads(embedded, parse_constant=refuse)  # strict JSON: what a browser's JSON.parse reads
    assert decoded == {
        "a": [{"$number": "NaN"}, {"$number": "Infinity"}, {"$number": "-Infinity"}, 1.5],
        "b": {"c": [{"$number": "Infinity"}]},
        "text": "NaN",
    }


def test_labels_spell_non_finite_numbers_as_the_page_does():
    (train,) = training_episodes([{"step": NAN, "turns": []}])
    (evaluation,) = evaluation_episodes("final", [{"seed": -INF}])
    assert train["label"] == "train step NaN" and evaluation["label"] == "eval final · seed -Infinity"


@pytest.mark.slow
def test_viewer_shows_every_episode_and_non_finite_numbers_as_text(tmp_path, chromium):
    run = non_finite_run(tmp_path)
    with pytest.warns(UserWarning, match="torn"):
        path, count = write_viewer(run)
    assert count == 3
    dom = chromium.dump_dom(path)
    assert "3 of 3 episodes" in dom  # the data parsed and the script ran to the end
    for label in ("train step 1 · Pick", "train step 2 · Pick", "eval final · seed NaN · Pick2"):
        assert f"<span>{label}</span>" in dom
    # the first episode, shown: its return, rewards, advantage and the per-token gap/gate titles
    assert "lost · 1 turn(s) · return Infinity" in dom
    assert "env reward NaN · row reward -Infinity · advantage NaN" in dom
    titles = re.findall(r'<span title="([^"]*)"', dom)
    assert titles == ["gap NaN, gate NaN", "gap Infinity, gate Infinity", "gap -Infinity, gate 0.5000"]
    assert "abcdefgh" in dom and "ijklmnop" in dom and "qrst" in dom  # every token of the reply
