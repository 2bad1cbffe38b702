"""Where the student goes first: its probability of the object's receptacle and of the goal receptacle.

    python experiments/teacher_reliability/first_turn_probe.py --output probes/warm-start.json  # warm start
    python experiments/teacher_reliability/first_turn_probe.py --checkpoint RUN_DIR/checkpoints/step_000012 \\
        --output probes/RUN.json

The approach of experiments/cpu_reproduction/skill_reading.py, whose functions it calls: at the first turn
of each game of the valid panel every admissible "go to X" is scored as the reply the warm start was taught
to write, under the student's prompt and under the teacher's (the run's line), and a softmax over those
candidates says where each would go first. Reported per game and as means over the panel: the probability
of going first to the object's receptacle (where the reliable line points) and to the goal receptacle (the
other receptacle the expert visits, where the half line points in the games it is wrong); the same over the
games where the half line is wrong; the uniform choice. The student's side is what claim 2's mechanism reads.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "config.yaml"
sys.path.insert(0, str(HERE.parent / "cpu_reproduction"))  # skill_reading.py, reused as it is

import skill_reading  # noqa: E402

from sdar.config import load_config  # noqa: E402
from sdar.envs import get_env_spec, make_env  # noqa: E402
from sdar.evaluation.evaluate import checkpoint_run_config, checkpoint_step, resolve_checkpoint  # noqa: E402
from sdar.evaluation.panels import build_panel  # noqa: E402
from sdar.models import load_model  # noqa: E402
from sdar.models.trained import load_trainable_weights  # noqa: E402
from sdar.skills.object_location import game_location, location_is_right  # noqa: E402
from sdar.training.sft import with_warm_start  # noqa: E402

GO_TO = skill_reading.GO_TO


def probe_row(task_id: str, game_dir: str, actions: list[str], student, teacher) -> dict | None:
    """One game's first-turn choice: `student`, `teacher` [A] summed reply log-probs of `actions`. None when
    the object's receptacle is not among the candidates."""
    where = game_location(game_dir)
    if GO_TO + where.receptacle not in actions:
        return None
    p_student, p_teacher = student.softmax(0), teacher.softmax(0)
    target = actions.index(GO_TO + where.receptacle)
    goal = actions.index(GO_TO + where.elsewhere) if GO_TO + where.elsewhere in actions else None
    row = {
        "task_id": task_id,
        "candidates": len(actions),
        "object_receptacle": where.receptacle,
        "goal_receptacle": where.elsewhere,
        "half_line_right": location_is_right(game_dir) or not where.elsewhere,
        "student_object_p": float(p_student[target]),
        "teacher_object_p": float(p_teacher[target]),
        "student_goal_p": float(p_student[goal]) if goal is not None else 0.0,
        "teacher_goal_p": float(p_teacher[goal]) if goal is not None else 0.0,
    }
    top = int(p_student.argmax())
    row["student_first"] = "object" if top == target else "goal" if top == goal else "other"
    return row


SIDES = ("student_object_p", "student_goal_p", "teacher_object_p", "teacher_goal_p")


def means(rows: list[dict]) -> dict:
    """Mean of each side's probabilities over `rows` ({} when none), and the uniform choice."""
    if not rows:
        return {}
    result = {"games": len(rows), "uniform_p": statistics.fmean(1 / row["candidates"] for row in rows)}
    return result | {key: statistics.fmean(row[key] for row in rows) for key in SIDES}


def measure(config, model, tokenizer) -> dict:
    env_spec, env = get_env_spec(config.env.name), make_env(config.env)
    panel = build_panel(env.task_ids, config.env.name, config.eval.split, config.eval.num_tasks)
    rows = []
    try:
        for task_id in panel.task_ids:
            task, message, actions, _ = skill_reading.first_turn_candidates(env, env_spec, config, task_id)
            student, teacher = skill_reading.reply_logprobs(model, tokenizer, config, task, message, actions)
            row = probe_row(task_id, str(task.metadata["game_dir"]), actions, student, teacher)
            if row is not None:
                rows.append(row)
    finally:
        env.close()
    return {
        "panel": {"name": f"{config.env.name}/{config.eval.split}", "tasks": len(panel.task_ids)},
        "teacher_library": config.teacher.skill_library,
        "all_games": means(rows),
        "half_line_wrong_games": means([row for row in rows if not row["half_line_right"]]),
        "rows": rows,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="a run's checkpoint (or the run: its latest)")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("overrides", nargs="*", help="the warm start's config overrides, e.g. model.name=DIR")
    args = parser.parse_args()
    if args.checkpoint is not None:
        checkpoint = resolve_checkpoint(args.checkpoint)
        config = checkpoint_run_config(checkpoint)
        if config is None:
            raise SystemExit(f"--checkpoint {args.checkpoint}: its run's config.yaml is missing")
        model_label, step = checkpoint.parent.parent.name, checkpoint_step(checkpoint)
    else:
        checkpoint = None
        config, model_label, step = with_warm_start(load_config(str(CONFIG), args.overrides)), "warm start", 0
    model, tokenizer = load_model(config.model)
    if checkpoint is not None:
        load_trainable_weights(checkpoint, model)
    model.eval()
    result = {"model": model_label, "step": step, **measure(config, model, tokenizer)}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    overall = result["all_games"]
    print(f"{model_label} at step {step}, {overall.get('games', 0)} games of {result['panel']['name']}:")
    for key in SIDES:
        print(f"  {key:18s} {overall.get(key, float('nan')):.3f}")
    print(f"  uniform choice     {overall.get('uniform_p', float('nan')):.3f}\nwritten to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
