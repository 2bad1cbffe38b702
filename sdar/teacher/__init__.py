"""The teacher (docs/method.md §2, §4): skill-augmented prompts, teacher log-probs on the student's tokens,
weights.

Usage:
    reserve = skill_token_reserve(tokenizer, "alfworld", task_types, placement)    # at start-up
    budget = student_prompt_budget(config.rollout.max_prompt_tokens, reserve)     # the student prompt's
    weights = TeacherWeights.from_config(config.teacher, model)
    with weights.scoring_model() as scorer:
        batch.teacher_logprobs = teacher_logprobs(scorer, tokenizer, turns, env_name="alfworld")  # [N, T]
    print(render_teacher_prompt(turns[0], tokenizer, env_name="alfworld"))
"""

from sdar.teacher.prompts import (
    PLACEMENTS,
    SKILL_HEADER,
    PromptBudgetError,
    TeacherPrompt,
    build_teacher_prompt,
    build_teacher_prompts,
    render_teacher_prompt,
    skill_block,
    skill_token_reserve,
    student_prompt_budget,
    student_prompts,
)
from sdar.teacher.scoring import PREFIX_BATCHING, longest_common_prefix, teacher_logprobs
from sdar.teacher.weights import WEIGHT_KINDS, EmaTeacher, TeacherWeights, is_peft_model

__all__ = [
    "PLACEMENTS",
    "PREFIX_BATCHING",
    "SKILL_HEADER",
    "WEIGHT_KINDS",
    "EmaTeacher",
    "PromptBudgetError",
    "TeacherPrompt",
    "TeacherWeights",
    "build_teacher_prompt",
    "build_teacher_prompts",
    "is_peft_model",
    "longest_common_prefix",
    "render_teacher_prompt",
    "skill_block",
    "skill_token_reserve",
    "student_prompt_budget",
    "student_prompts",
    "teacher_logprobs",
]
