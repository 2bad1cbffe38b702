"""Teacher prompts (docs/method.md §4): privileged skills + the SAME student prompt + the same response
tokens.

Two placements of the skill text (`TeacherConfig.placement`):

- `prefix` (release-compatible): the raw text "[Privileged Skill Information]\\n<skills>\\n\\n" in front of
  the whole chat-templated prompt, outside any chat role. Built at TOKEN level: the header text is tokenized
  on its own and concatenated with the student's `prompt_ids`, so the student part is token-identical to
  what the student saw. With ChatML-style templates (Qwen, SmolLM2) this is also what tokenizing the release's
  concatenated string gives, since the prompt starts with a special token. A tokenizer that adds a BOS to
  plain text (Llama, Gemma) keeps that BOS first: [BOS] + header + prompt[1:].
- `system`: inside the chat template: a system message "[Privileged Skill Information]\\n<skills>", then the
  same user message (`turn.prompt_text`) and the generation prompt, rendered by the tokenizer's chat template.
  It replaces any default system message the template would add for the student.

The skill text is never truncated. The rollout renders the student prompt with a budget of
`max_prompt_tokens - skill_token_reserve(...)` (only history is dropped to meet it), and
`student_prompt_budget` refuses at start-up a reserve that leaves too little room for the prompt.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sdar.env_records import Task
from sdar.errors import ConfigError
from sdar.records import Turn
from sdar.skills.library import get_skill_library, teacher_context

SKILL_HEADER = "[Privileged Skill Information]\n"
PLACEMENTS = ("prefix", "system")
# The user message used to measure what the system placement adds (the difference does not depend on it:
# chat templates delimit messages with special tokens, which no merge crosses).
_PROBE_USER_MESSAGE = "probe"


class PromptBudgetError(ConfigError):
    """The skill text leaves too little of `rollout.max_prompt_tokens` for the student prompt."""


@dataclass(frozen=True)
class TeacherPrompt:
    """The teacher's prompt tokens for one row; the response tokens follow it unchanged.

    For `prefix`, the student's prompt is `prompt_ids[:insert_at] + prompt_ids[insert_at + inserted:]`
    (insert_at is 1 when a BOS stays first, else 0); for `system` both are None (the prompt is re-rendered).
    """

    skills: str
    prompt_ids: list[int]
    placement: str
    insert_at: int | None = None
    inserted: int | None = None


def check_placement(placement: str) -> None:
    if placement not in PLACEMENTS:
        raise ConfigError(
            f"teacher.placement={placement!r} is not valid; choose one of: {', '.join(PLACEMENTS)}"
        )


def skill_block(skills: str, placement: str) -> str:
    """The text that carries the skills: the raw prefix, or the system message's content."""
    check_placement(placement)
    return f"{SKILL_HEADER}{skills}\n\n" if placement == "prefix" else f"{SKILL_HEADER}{skills}"


def _encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _auto_bos_id(tokenizer) -> int | None:
    """The BOS id when the tokenizer puts one in front of plain text by itself (Llama, Gemma), else None.

    A BOS that only appears because the chat template writes it (SmolLM2's bos is `<|im_start|>`) is not one:
    moving it would break the template's first message.
    """
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return None
    with_specials = list(tokenizer("a")["input_ids"])
    return bos if with_specials and with_specials[0] == bos and _encode(tokenizer, "a")[:1] != [bos] else None


def _chat_ids(tokenizer, messages: list[dict], chat_template_kwargs: dict | None) -> list[int]:
    """Chat-templated ids with the generation prompt: render the text, then tokenize it without specials."""
    try:
        text = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, **(chat_template_kwargs or {})
        )
    except Exception as error:  # jinja raises e.g. "System role not supported" (Gemma-2)
        raise ConfigError(
            f"teacher.placement='system': the chat template cannot render a system message ({error}); "
            f"use teacher.placement=prefix"
        ) from None
    return _encode(tokenizer, text)


def _system_messages(skills: str, user_message: str) -> list[dict]:
    return [
        {"role": "system", "content": skill_block(skills, "system")},
        {"role": "user", "content": user_message},
    ]


def build_teacher_prompt(
    turn: Turn,
    tokenizer,
    *,
    env_name: str,
    placement: str = "prefix",
    skills: str | None = None,
    chat_template_kwargs: dict | None = None,
) -> TeacherPrompt:
    """One row's teacher prompt; `skills` defaults to the env library's routed text for `turn.task`."""
    if skills is None:
        skills = teacher_context(env_name, turn.task)
    return teacher_prompt_of(
        tokenizer, turn.prompt_ids, turn.prompt_text, skills, placement, chat_template_kwargs
    )


def teacher_prompt_of(
    tokenizer,
    prompt_ids: Sequence[int],
    prompt_text: str,
    skills: str,
    placement: str = "prefix",
    chat_template_kwargs: dict | None = None,
) -> TeacherPrompt:
    """The teacher's prompt for a student prompt (its ids and its user message) and a skill text."""
    check_placement(placement)
    if placement == "system":
        ids = _chat_ids(tokenizer, _system_messages(skills, prompt_text), chat_template_kwargs)
        return TeacherPrompt(skills=skills, prompt_ids=ids, placement=placement)
    header = _encode(tokenizer, skill_block(skills, "prefix"))
    return _prefix_prompt(prompt_ids, skills, header, _auto_bos_id(tokenizer))


def _prefix_prompt(student: Sequence[int], skills: str, header: list[int], bos: int | None) -> TeacherPrompt:
    """header + student prompt, token level; a BOS the tokenizer adds by itself stays first."""
    insert_at = 1 if bos is not None and list(student[:1]) == [bos] else 0
    ids = [*student[:insert_at], *header, *student[insert_at:]]
    return TeacherPrompt(skills, ids, "prefix", insert_at=insert_at, inserted=len(header))


def student_prompts(turns: Sequence[Turn]) -> list[TeacherPrompt]:
    """The student's own prompts as teacher prompts: a teacher without privileged text (nothing inserted)."""
    return [TeacherPrompt("", list(turn.prompt_ids), "prefix", insert_at=0, inserted=0) for turn in turns]


def build_teacher_prompts(
    turns: Sequence[Turn],
    tokenizer,
    *,
    env_name: str,
    placement: str = "prefix",
    chat_template_kwargs: dict | None = None,
) -> list[TeacherPrompt]:
    """Teacher prompts of many rows, in order; the skill block is tokenized once per distinct skill text."""
    check_placement(placement)
    contexts = [teacher_context(env_name, turn.task) for turn in turns]
    if placement == "system":
        return [
            build_teacher_prompt(
                turn,
                tokenizer,
                env_name=env_name,
                placement=placement,
                skills=skills,
                chat_template_kwargs=chat_template_kwargs,
            )
            for turn, skills in zip(turns, contexts, strict=True)
        ]
    headers = {skills: _encode(tokenizer, skill_block(skills, "prefix")) for skills in set(contexts)}
    bos = _auto_bos_id(tokenizer)
    return [
        _prefix_prompt(turn.prompt_ids, skills, headers[skills], bos)
        for turn, skills in zip(turns, contexts, strict=True)
    ]


def render_teacher_prompt(
    turn: Turn,
    tokenizer,
    *,
    env_name: str,
    placement: str = "prefix",
    with_response: bool = True,
    chat_template_kwargs: dict | None = None,
) -> str:
    """The exact teacher input of a row as text (special tokens kept), for debugging and the viewer."""
    prompt = build_teacher_prompt(
        turn, tokenizer, env_name=env_name, placement=placement, chat_template_kwargs=chat_template_kwargs
    )
    ids = prompt.prompt_ids + (list(turn.response_ids) if with_response else [])
    return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def _skill_contexts(env_name: str, tasks_or_task_types: Iterable[Task | str] | None) -> list[str]:
    """Distinct skill texts of the given tasks / task types; None = every skill file of the library at once.

    The None case is an upper bound for any routing (a keyword router may concatenate several categories).
    """
    library = get_skill_library(env_name)
    if tasks_or_task_types is None:
        names = list(dict.fromkeys([*library.always, *library.skill_names()]))
        texts = [library.load(name) for name in names]
        if library.generated is not None:  # its bound: what it gives a task without a game
            texts.append(library.generated(Task(task_id="skill-reserve", task_type="", goal="")))
        return ["\n\n".join(texts)]
    contexts = []
    for item in tasks_or_task_types:
        task = item if isinstance(item, Task) else Task(task_id="skill-reserve", task_type=item, goal="")
        contexts.append(teacher_context(env_name, task))
    if not contexts:
        raise ValueError("skill_token_reserve needs at least one task or task type (or None for all skills)")
    return list(dict.fromkeys(contexts))


def skill_token_reserve(
    tokenizer,
    env_name: str,
    tasks_or_task_types: Iterable[Task | str] | None = None,
    placement: str = "prefix",
    *,
    chat_template_kwargs: dict | None = None,
) -> int:
    """Max tokens the teacher prompt adds over the student's, over the env's skill contexts.

    prefix: len(tokens of the header + skills block); system: len(teacher template) − len(student template)
    for the same user message (a default system message the teacher's replaces is subtracted).
    """
    check_placement(placement)
    contexts = _skill_contexts(env_name, tasks_or_task_types)
    if placement == "prefix":
        return max(len(_encode(tokenizer, skill_block(skills, "prefix"))) for skills in contexts)
    student = _chat_ids(tokenizer, [{"role": "user", "content": _PROBE_USER_MESSAGE}], chat_template_kwargs)
    teacher = max(
        len(_chat_ids(tokenizer, _system_messages(skills, _PROBE_USER_MESSAGE), chat_template_kwargs))
        for skills in contexts
    )
    return max(teacher - len(student), 0)


def student_prompt_budget(max_prompt_tokens: int, reserve: int, *, min_prompt_share: float = 0.25) -> int:
    """Start-up check: the student prompt's token budget = max_prompt_tokens − reserve, if it leaves enough.

    An over-long skill text is an error here, never a silent cut of the skills later.
    """
    budget = max_prompt_tokens - reserve
    needed = math.ceil(min_prompt_share * max_prompt_tokens)
    if budget < needed:
        raise PromptBudgetError(
            f"the teacher's skill text needs {reserve} tokens of rollout.max_prompt_tokens="
            f"{max_prompt_tokens}, leaving {budget} for the student prompt (at least {needed} = "
            f"{min_prompt_share:.0%} are required); raise rollout.max_prompt_tokens to at least "
            f"{math.ceil(reserve / max(1.0 - min_prompt_share, 1e-9))} or shorten the skill files"
        )
    return budget
