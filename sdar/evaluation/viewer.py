"""`sdar view RUN_DIR`: one static, self-contained HTML page to read a run's episodes turn by turn.

Sources: the run's samples.jsonl (training episodes with per-token teacher-student gap Δ and gate σ(βΔ), the
teacher's skill context, the prompts and env replies) and every eval episodes.jsonl under RUN_DIR/eval/
(replies, actions, env replies and the first prompt; no per-token data). The page (templates/viewer.html.j2)
filters by source, task type and outcome, and colours each response token by its gap or gate.

Model and env text is untrusted: the data goes into the page only as JSON inside
`<script type="application/json">` with `<`, `>`, `&` (and U+2028/9) written as `\\uXXXX` escapes, so no text
can close the script element, and the page's script only renders it with textContent. JSON has no NaN or
Infinity (Python's json writes bare `NaN`, which a browser's JSON.parse refuses, blanking the page), so each
non-finite number is embedded as `{"$number": "NaN" | "Infinity" | "-Infinity"}` and the page revives it as
the number, which then prints as that text.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from sdar.errors import ConfigError
from sdar.evaluation.pages import Markup, render_page
from sdar.evaluation.panels import TASK_TYPE_LABELS

NON_FINITE_TAG = "$number"  # the page's reviver knows this key
JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
# |Δ| (nats) drawn at full colour: the teacher finds the token e times more (green) or less (red) likely than
# the student does. A fixed scale, so that pages of different runs and steps compare; not a percentile of the
# data, since in real runs most reply tokens have Δ ≈ 0 (SmolLM2 on ALFWorld: 95 % under 0.002 nats, the rest
# up to several nats): at the 95th percentile, a token 0.002 nats apart drew as strongly as one 3 nats apart.
DEFAULT_GAP_SCALE = 1.0


def _non_finite_name(value: float) -> str:
    """JavaScript's spelling of a non-finite number: what String(x) prints in the page."""
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def _shown(value) -> str:
    """Text of a value in a label, a non-finite number spelled as the page spells it."""
    return _non_finite_name(value) if isinstance(value, float) and not math.isfinite(value) else str(value)


def _task_label(task_type: str | None) -> str:
    task_type = task_type or "unknown"
    return TASK_TYPE_LABELS.get(task_type, task_type)


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _token_values(turn: dict, key: str, tokens: list | None) -> list[float] | None:
    values = turn.get(key)
    if tokens is None or not isinstance(values, list) or len(values) != len(tokens):
        return None  # the colouring needs one value per token
    return [v if isinstance(v, (int, float)) and not isinstance(v, bool) else 0.0 for v in values]


def training_episodes(samples: list[dict]) -> list[dict]:
    """samples.jsonl records -> viewer episodes (source `train`), turn by turn with per-token gap and gate."""
    episodes = []
    for sample in samples:
        turns = []
        for index, turn in enumerate(sample.get("turns") or []):
            tokens = turn.get("tokens") if isinstance(turn.get("tokens"), list) else None
            tokens = [str(token) for token in tokens] if tokens is not None else None
            turns.append(
                {
                    "turn": turn.get("turn", index),
                    "prompt": turn.get("prompt"),
                    "response": str(turn.get("response", "")),
                    "tokens": tokens,
                    "gap": _token_values(turn, "gap", tokens),
                    "gate": _token_values(turn, "gate", tokens),
                    "action": str(turn.get("action", "")),
                    "valid": turn.get("valid"),
                    "admissible": turn.get("admissible"),
                    "observation": turn.get("observation"),
                    "env_reward": _number(turn.get("env_reward")),
                    "reward": _number(turn.get("reward")),
                    "advantage": _number(turn.get("advantage")),
                }
            )
        step = sample.get("step")
        episodes.append(
            {
                "source": "train",
                "label": f"train step {_shown(step)}",
                "step": step,
                "task_id": str(sample.get("task_id", "")),
                "task_type": str(sample.get("task_type") or "unknown"),
                "task_label": _task_label(sample.get("task_type")),
                "goal": sample.get("goal"),
                "won": bool(sample.get("won")),
                "return": _number(sample.get("return")),
                "error": sample.get("error") or "",
                "skills": sample.get("skills"),
                "turns": turns,
            }
        )
    return episodes


def evaluation_episodes(label: str, records: list[dict]) -> list[dict]:
    """episodes.jsonl records of one evaluation -> viewer episodes (source `eval <label>`)."""
    episodes = []
    for record in records:
        actions = list(record.get("actions") or [])
        replies = list(record.get("replies") or [])
        valid = list(record.get("valid") or [])
        admissible = list(record.get("admissible") or [])
        observations = list(record.get("observations") or [])
        count = max(len(actions), len(replies))
        turns = [
            {
                "turn": index,
                "prompt": record.get("first_prompt") if index == 0 else None,
                "response": str(replies[index]) if index < len(replies) else "",
                "tokens": None,
                "gap": None,
                "gate": None,
                "action": str(actions[index]) if index < len(actions) else "",
                "valid": valid[index] if index < len(valid) else None,
                "admissible": admissible[index] if index < len(admissible) else None,
                "observation": str(observations[index]) if index < len(observations) else None,
                "env_reward": None,
                "reward": None,
                "advantage": None,
            }
            for index in range(count)
        ]
        episodes.append(
            {
                "source": f"eval {label}",
                "label": f"eval {label} · seed {_shown(record.get('seed'))}",
                "step": None,
                "task_id": str(record.get("task_key") or record.get("task_id", "")),
                "task_type": str(record.get("task_type") or "unknown"),
                "task_label": _task_label(record.get("task_type")),
                "goal": None,
                "won": bool(record.get("won")),
                "return": None,
                "error": record.get("error") or "",
                "skills": None,
                "turns": turns,
            }
        )
    return episodes


def select_evenly(episodes: list, limit: int) -> list:
    """At most `limit` items, evenly spread over the list (first and last kept): early and late training."""
    if limit <= 0:
        raise ConfigError(f"--max-episodes must be positive, got {limit}")
    if len(episodes) <= limit:
        return list(episodes)
    if limit == 1:
        return [episodes[-1]]
    return [episodes[round(i * (len(episodes) - 1) / (limit - 1))] for i in range(limit)]


def _tag_non_finite(value):
    """The value with every non-finite float (at any depth) replaced by {NON_FINITE_TAG: its JS spelling}."""
    if isinstance(value, float):
        return value if math.isfinite(value) else {NON_FINITE_TAG: _non_finite_name(value)}
    if isinstance(value, dict):
        return {key: _tag_non_finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_tag_non_finite(item) for item in value]
    return value


def embed_json(data) -> str:
    """Strict JSON that is inert inside a <script> element: `<`, `>`, `&`, U+2028/9 as \\u escapes, each
    non-finite number as {"$number": "NaN" | "Infinity" | "-Infinity"} (the page revives it)."""
    text = json.dumps(_tag_non_finite(data), ensure_ascii=False, allow_nan=False)
    return re.sub("[<>&\u2028\u2029]", lambda match: JSON_ESCAPES[match.group(0)], text)


def render_viewer(episodes: list[dict], title: str, *, gap_scale: float = DEFAULT_GAP_SCALE) -> str:
    """The page: templates/viewer.html.j2 with its title (escaped) and data (embedded JSON); tokens with
    |Δ| >= gap_scale (nats) draw at full colour."""
    if not (math.isfinite(gap_scale) and gap_scale > 0):
        raise ConfigError(f"gap scale {gap_scale}: it must be a positive number of nats (default 1)")
    data = {"title": title, "gap_scale": gap_scale, "episodes": episodes}
    # The JSON is marked safe: embed_json already wrote every character that could end the script as \uXXXX.
    return render_page("viewer.html.j2", title=title, data=Markup(embed_json(data)))


def viewer_path(run_dir: Path, output=None) -> Path:
    """Where the page goes: `output` (a directory: its viewer.html; a name without .html gains it, so that a
    browser opens it as a page), else RUN_DIR/viewer.html."""
    if not output:
        return run_dir / "viewer.html"
    path = Path(output)
    if path.is_dir() or str(output).endswith(("/", "\\")):
        return path / "viewer.html"
    return path if path.suffix.lower() in (".html", ".htm") else path.with_name(path.name + ".html")


def write_viewer(
    run_dir, output=None, *, max_episodes: int = 400, gap_scale: float = DEFAULT_GAP_SCALE
) -> tuple[Path, int]:
    """Read RUN_DIR (a run or an eval output), write the page (default RUN_DIR/viewer.html)."""
    from sdar.evaluation.runs import EPISODES, RUN_CONFIG, SAMPLES, read_eval_episodes, read_samples

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such directory")
    if not any((run_dir / name).is_file() for name in (RUN_CONFIG, SAMPLES, EPISODES)):
        raise ConfigError(
            f"{run_dir}: neither a run directory (with {RUN_CONFIG}, {SAMPLES}) nor an evaluation directory "
            f"(with {EPISODES})"
        )
    episodes = select_evenly(training_episodes(read_samples(run_dir)), max_episodes)
    for label, records in read_eval_episodes(run_dir):
        episodes += select_evenly(evaluation_episodes(label, records), max_episodes)
    if not episodes:
        raise ConfigError(f"{run_dir}: no episodes to show (no {SAMPLES} lines and no eval {EPISODES})")
    path = viewer_path(run_dir, output)
    path.parent.mkdir(parents=True, exist_ok=True)
    title = f"sdar view: {run_dir.resolve().name}"
    path.write_text(render_viewer(episodes, title, gap_scale=gap_scale), encoding="utf-8")
    return path, len(episodes)
