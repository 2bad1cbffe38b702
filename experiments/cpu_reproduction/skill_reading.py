"""Does the model read the skills? Where the student and the teacher would go first, on the valid panel.

    python experiments/cpu_reproduction/skill_reading.py                                  # the warm start
    python experiments/cpu_reproduction/skill_reading.py --checkpoint RUN_DIR             # its latest
    python experiments/cpu_reproduction/skill_reading.py --checkpoint RUN_DIR/checkpoints/step_000006
    python experiments/cpu_reproduction/skill_reading.py --skills answer --placement system --base-model
    python experiments/cpu_reproduction/skill_reading.py --output OUT.json sft.games=64   # another warm start

At the first turn of each panel task the agent stands in the middle of the room with nothing in view. Every
admissible "go to X" is scored as the reply the SFT taught the model to write (`default_reply`: think, then
the action), once under the student's prompt and once under the teacher's (the same prompt with the routed
skills, built as the trainer builds it). A softmax over those candidates says where each would go first.
Objects lie where the skills' "usual places" say (prior_strength 1.0), and the expert, which knows the room,
goes first to a receptacle that holds the target. Reported: the probability the student and the teacher give
that receptacle (mean over tasks; how often each ranks it first), beside the uniform choice. A model that
reads the skills gives it more as the teacher. Also reported: the probability of the receptacle(s) the
usual-places line points to (its first type the room has, the goal's type skipped), whether or not the
object is there: how closely each side follows the line. Written to
teacher_vs_student/skill_reading[-RUN-stepN].json.

What the teacher's prompt carries (`--skills`): `library`, the skills the trainer routes (default; the
config's teacher.skill_library: the alfworld-places line in config.yaml, the alfworld library's prose in
pilot_unread_skills/config.yaml); `priors`, the alfworld-places line whatever the config says (the target's
usual receptacles in the game's order); `answer`, the receptacle the expert goes to: a positive control, the
most a skill text could say. `--placement` overrides teacher.placement; `--base-model` scores SmolLM2
without the SFT; `--config` and trailing overrides choose another experiment or warm start.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from sdar.config import load_config  # noqa: E402
from sdar.envs import Task, get_env_spec, make_env  # noqa: E402
from sdar.envs.policies import default_reply  # noqa: E402
from sdar.evaluation.evaluate import checkpoint_run_config, checkpoint_step, resolve_checkpoint  # noqa: E402
from sdar.evaluation.panels import build_panel  # noqa: E402
from sdar.models import load_model, token_logprobs  # noqa: E402
from sdar.models.trained import load_trainable_weights  # noqa: E402
from sdar.records import Turn, pack_sequences  # noqa: E402
from sdar.rollout.engine import chat_prompt_ids  # noqa: E402
from sdar.skills import library_name  # noqa: E402
from sdar.skills.usual_places import game_places, usual_places_skill  # noqa: E402
from sdar.teacher import PLACEMENTS, build_teacher_prompt, teacher_logprobs  # noqa: E402
from sdar.training.sft import with_warm_start  # noqa: E402
from sdar.training.update import bf16_autocast  # noqa: E402

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "config.yaml"
GO_TO = "go to "
SKILL_TEXTS = ("library", "priors", "answer")


def skill_text(kind: str, task: Task, expert_first: str) -> str | None:
    """The teacher's skill text of `--skills kind`; None = the library's routed skills."""
    if kind == "library":
        return None
    if kind == "answer":
        place = expert_first[len(GO_TO) :]
        return f"The object you need is at {place}. Your first action must be: {expert_first}."
    return usual_places_skill(task)  # the alfworld-places library's line


def first_turn_candidates(env, env_spec, config, task_id: str) -> tuple[Task, str, list[str], str]:
    """(task, the student's user message at turn 0, every "go to X" action, the expert's first action)."""
    task, first = env.reset(task_id)
    actions = tuple(first.admissible_actions or ())
    message = env_spec.build_prompt(task, first.observation, actions, [], 0, config.env.history_length)
    return task, message, [a for a in actions if a.startswith(GO_TO)], env.expert_action()


def line_choice(task: Task, actions: list[str]) -> list[int]:
    """Indices of the "go to X" actions the usual-places line points to: its first receptacle type the room
    has, skipping the goal's type (the object never starts there)."""
    _, places, goal_type = game_places(task.metadata["game_dir"])
    kinds = [action[len(GO_TO) :].rsplit(" ", 1)[0] for action in actions]
    for place in places:
        if place.lower() != goal_type.lower() and place.lower() in kinds:
            return [index for index, kind in enumerate(kinds) if kind == place.lower()]
    return []


def reply_logprobs(model, tokenizer, config, task: Task, message: str, actions: list[str], skills=None):
    """Summed log-probs of each action's reply under the student's prompt and under the teacher's: two [A].
    `skills`: the teacher's skill text (None: the library's routed skills)."""
    prompt = chat_prompt_ids(tokenizer, message)
    texts = [default_reply(task, action) for action in actions]
    replies = [tokenizer(text, add_special_tokens=False).input_ids for text in texts]
    turns = [
        Turn(task, 0, index, 0, message, prompt, reply, text, action, True)
        for index, (action, reply, text) in enumerate(zip(actions, replies, texts, strict=True))
    ]
    pad = tokenizer.pad_token_id
    input_ids, attention_mask, response_mask, start = pack_sequences([prompt] * len(replies), replies, pad)
    library = library_name(get_env_spec(config.env.name), config.teacher.skill_library)
    placement = config.teacher.placement
    prompts = [
        build_teacher_prompt(turn, tokenizer, env_name=library, placement=placement, skills=skills)
        for turn in turns
    ]
    with torch.no_grad(), bf16_autocast(config.trainer.autocast_bf16, "cpu"):  # the trainer's precision
        student, _ = token_logprobs(model, input_ids, attention_mask, start=start)
        teacher = teacher_logprobs(
            model,
            tokenizer,
            turns,
            env_name=library,
            placement=placement,
            response_length=response_mask.shape[1],
            prompts=prompts,
        )
    student = student[:, start:]
    mask = response_mask.float()
    return (student * mask).sum(-1), (teacher * mask).sum(-1)


def measure(config, model, tokenizer, skills: str = "library") -> dict:
    env_spec, env = get_env_spec(config.env.name), make_env(config.env)
    panel = build_panel(env.task_ids, config.env.name, config.eval.split, config.eval.num_tasks)
    rows = []
    try:
        for task_id in panel.task_ids:
            task, message, actions, expert = first_turn_candidates(env, env_spec, config, task_id)
            if expert not in actions:
                continue  # the expert does not start by going somewhere (never in these rooms, but be safe)
            text = skill_text(skills, task, expert)
            student, teacher = reply_logprobs(model, tokenizer, config, task, message, actions, text)
            target, pointed = actions.index(expert), line_choice(task, actions)
            p_student, p_teacher = student.softmax(0), teacher.softmax(0)
            rows.append(
                {
                    "task_id": task_id,
                    "task_type": task.task_type,
                    "expert_first": expert,
                    "candidates": len(actions),
                    "student_p": float(p_student[target]),
                    "teacher_p": float(p_teacher[target]),
                    "student_top": int(p_student.argmax()) == target,
                    "teacher_top": int(p_teacher.argmax()) == target,
                    "line_choice": [actions[index] for index in pointed],
                    "student_line_p": float(p_student[pointed].sum()),
                    "teacher_line_p": float(p_teacher[pointed].sum()),
                }
            )
    finally:
        env.close()
    return {
        "panel": {"name": f"{config.env.name}/{config.eval.split}", "tasks": len(panel.task_ids)},
        "skills": skills,
        "placement": config.teacher.placement,
        "tasks": len(rows),
        "uniform_p": statistics.fmean(1 / row["candidates"] for row in rows),
        "student_p": statistics.fmean(row["student_p"] for row in rows),
        "teacher_p": statistics.fmean(row["teacher_p"] for row in rows),
        "student_top": sum(row["student_top"] for row in rows),
        "teacher_top": sum(row["teacher_top"] for row in rows),
        "teacher_higher": sum(row["teacher_p"] > row["student_p"] for row in rows),
        "line_uniform_p": statistics.fmean(len(row["line_choice"]) / row["candidates"] for row in rows),
        "student_line_p": statistics.fmean(row["student_line_p"] for row in rows),
        "teacher_line_p": statistics.fmean(row["teacher_line_p"] for row in rows),
        "rows": rows,
    }


def main() -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--checkpoint",
        type=Path,
        help="a run (its latest checkpoint) or one of its checkpoints, not the warm start",
    )
    which.add_argument("--base-model", action="store_true", help="SmolLM2 without the SFT warm start")
    parser.add_argument("--config", type=Path, default=CONFIG, help="default: %(default)s")
    parser.add_argument("--skills", choices=SKILL_TEXTS, default="library", help="what the teacher is told")
    parser.add_argument("--placement", choices=PLACEMENTS, help="where (default: the config's)")
    parser.add_argument("--output", type=Path, help="default: teacher_vs_student/skill_reading[-...].json")
    parser.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. sft.games=64")
    args = parser.parse_args()
    checkpoint = resolve_checkpoint(args.checkpoint) if args.checkpoint is not None else None
    if checkpoint is not None:
        config = checkpoint_run_config(checkpoint)
        if config is None:
            raise SystemExit(f"--checkpoint {args.checkpoint}: its run's config.yaml is missing")
        label = checkpoint.parent.parent.name  # the run
    elif args.base_model:
        config, label = load_config(str(args.config), args.overrides), "base"
    else:
        config, label = with_warm_start(load_config(str(args.config), args.overrides)), ""
    if args.placement:
        teacher = dataclasses.replace(config.teacher, placement=args.placement)
        config = dataclasses.replace(config, teacher=teacher)
    model, tokenizer = load_model(config.model)
    if checkpoint is not None:
        load_trainable_weights(checkpoint, model)
    step = checkpoint_step(checkpoint) if checkpoint is not None else 0
    model.eval()
    result = measure(config, model, tokenizer, args.skills)
    result["model"] = {"": "warm start", "base": "SmolLM2 without SFT"}.get(label, label)
    result["step"] = step  # the RL step of the checkpoint (0: the warm start or the base model)
    at_step = f"step{step}" if checkpoint is not None else ""
    parts = [label, at_step, "" if args.skills == "library" else args.skills, args.placement or ""]
    name = "-".join(["skill_reading", *(part for part in parts if part)])
    output = args.output or HERE / "teacher_vs_student" / f"{name}.json"
    output.write_text(json.dumps(result, indent=2) + "\n")
    tasks = result["tasks"]
    told = f"skills: {args.skills}, placed: {config.teacher.placement}"
    at = f" at step {step}" if checkpoint is not None else ""
    print(f"{result['model']}{at} on {result['panel']['name']} ({tasks} tasks; {told})")
    print("the expert's first receptacle gets")
    print(f"  uniform choice  p {result['uniform_p']:.3f}")
    for side in ("student", "teacher"):
        print(f"  {side:8s} p {result[f'{side}_p']:.3f}, ranked first in {result[f'{side}_top']} of {tasks}")
    print(f"  the teacher gives it more than the student in {result['teacher_higher']} of {tasks}")
    print("the receptacle the usual-places line points to gets")
    print(f"  uniform choice  p {result['line_uniform_p']:.3f}")
    for side in ("student", "teacher"):
        print(f"  {side:8s} p {result[f'{side}_line_p']:.3f}")
    print(f"written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
