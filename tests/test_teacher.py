"""Teacher: prompt layout per placement, shared-prefix == plain log-probs, alignment, reserve, weights."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from sdar.config import ModelConfig, TeacherConfig  # noqa: E402
from sdar.env_records import Task  # noqa: E402
from sdar.errors import ConfigError  # noqa: E402
from sdar.models import load_model  # noqa: E402
from sdar.models.loading import add_lora  # noqa: E402
from sdar.records import Turn, rows_to_batch  # noqa: E402
from sdar.skills.library import SKILL_LIBRARIES, SkillLibrary, teacher_context  # noqa: E402
from sdar.teacher import (  # noqa: E402
    SKILL_HEADER,
    EmaTeacher,
    PromptBudgetError,
    TeacherWeights,
    build_teacher_prompt,
    build_teacher_prompts,
    longest_common_prefix,
    render_teacher_prompt,
    skill_token_reserve,
    student_prompt_budget,
    teacher_logprobs,
)

ENV = "teacher-test"
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def tiny():
    return load_model(ModelConfig(name="tiny"))


@pytest.fixture
def skills(tmp_path, monkeypatch):
    """A small skill library (short texts keep the byte-level tiny model fast), routed by task type."""
    texts = {
        "general": "## General\n1. Read the goal. When: always.",
        "mug": "## Mug\n1. Mugs are in cabinets. When: a mug is the target.\n2. Rinse it in the sinkbasin.",
        "lamp": "## Lamp\n1. Go to the desklamp, then use it. When: look at an object in light.",
    }
    for name, text in texts.items():
        (tmp_path / f"{name}.md").write_text(text + "\n")
    library = SkillLibrary(ENV, tmp_path, route=lambda task: [task.task_type])
    monkeypatch.setitem(SKILL_LIBRARIES, ENV, library)
    return texts


def make_turn(tokenizer, task_type: str, prompt_text: str, response: str, index: int = 0) -> Turn:
    prompt_ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt_text}], tokenize=False, add_generation_prompt=True
    )
    prompt_ids = tokenizer(prompt_ids, add_special_tokens=False).input_ids
    return Turn(
        task=Task(task_id=f"game-{task_type}", task_type=task_type, goal="put a mug on the desk"),
        group_index=0 if task_type == "mug" else 1,
        episode_index=index,
        turn_index=index,
        prompt_text=prompt_text,
        prompt_ids=prompt_ids,
        response_ids=tokenizer(response, add_special_tokens=False).input_ids,
        response_text=response,
        action="look",
        valid=True,
    )


@pytest.fixture
def turns(tiny, skills):
    """Five rows, two skill groups, different prompt and response lengths (so left padding happens)."""
    _, tokenizer = tiny
    rows = [
        (
            "mug",
            "Your task is to: put a mug on the desk.\nYou see a cabinet 1.",
            "<action>go to cabinet 1</action>",
        ),
        ("lamp", "Your task is to: look at the book under the desklamp.", "<think>lamp</think>"),
        (
            "mug",
            "Your task is to: put a mug on the desk.\nStep 2. You see a mug 1.",
            "<action>take mug 1</action>",
        ),
        ("lamp", "Your task is to: look at the book.\nObs: nothing happens. Long history here.", "ok"),
        ("mug", "Your task is to: put a clean mug on the desk.", "<think>a much longer reply here</think>x"),
    ]
    return [make_turn(tokenizer, *row, index=i) for i, row in enumerate(rows)]


def plain_reference(model, teacher_ids: list[int], response_ids: list[int]) -> torch.Tensor:
    """Per-row, unpadded, no cache, straight from the logits: log p(response_t | teacher prompt + ...)."""
    ids = torch.tensor([teacher_ids + response_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float()[0]  # [L, V]
    logprobs = torch.log_softmax(logits[:-1], dim=-1).gather(-1, ids[0, 1:, None]).squeeze(-1)
    return logprobs[len(teacher_ids) - 1 :]


# --- prompts


def test_prefix_placement_puts_raw_skill_text_before_the_token_identical_student_prompt(tiny, turns, skills):
    _, tokenizer = tiny
    turn = turns[0]
    prompt = build_teacher_prompt(turn, tokenizer, env_name=ENV, placement="prefix")
    skill_text = skills["general"] + "\n\n" + skills["mug"]
    header = tokenizer(f"{SKILL_HEADER}{skill_text}\n\n", add_special_tokens=False).input_ids
    assert prompt.skills == skill_text
    assert prompt.prompt_ids == header + turn.prompt_ids
    assert (prompt.insert_at, prompt.inserted) == (0, len(header))
    # The student part is the student's own tokens, and the layout equals tokenizing the release's string.
    assert prompt.prompt_ids[prompt.inserted :] == turn.prompt_ids
    release = f"{SKILL_HEADER}{skill_text}\n\n" + tokenizer.decode(turn.prompt_ids)
    assert tokenizer(release, add_special_tokens=False).input_ids == prompt.prompt_ids
    assert tokenizer.decode(prompt.prompt_ids).startswith("[Privileged Skill Information]\n## General")


def test_prefix_placement_keeps_an_automatic_bos_first(tiny, turns):
    _, tokenizer = tiny

    class BosTokenizer:  # a tokenizer that adds a BOS (id 1) in front of plain text, like Llama's
        bos_token_id = 1

        def __call__(self, text, add_special_tokens=True):
            ids = tokenizer(text, add_special_tokens=False).input_ids
            return {"input_ids": [1, *ids] if add_special_tokens else ids}

    turn = turns[0]
    turn.prompt_ids = [1, *turn.prompt_ids[1:]]
    prompt = build_teacher_prompt(turn, BosTokenizer(), env_name=ENV, placement="prefix")
    assert prompt.insert_at == 1 and prompt.prompt_ids[0] == 1
    student = prompt.prompt_ids[:1] + prompt.prompt_ids[1 + prompt.inserted :]
    assert student == turn.prompt_ids
    # The tiny tokenizer adds no BOS: <|im_start|> (SmolLM2's bos) stays where the template put it.
    assert build_teacher_prompt(turns[0], tokenizer, env_name=ENV).insert_at == 0


def test_system_placement_puts_skills_inside_the_system_role(tiny, turns, skills):
    _, tokenizer = tiny
    turn = turns[1]
    prompt = build_teacher_prompt(turn, tokenizer, env_name=ENV, placement="system")
    text = tokenizer.decode(prompt.prompt_ids)
    skill_text = skills["general"] + "\n\n" + skills["lamp"]
    assert text == (
        f"<|im_start|>system\n{SKILL_HEADER}{skill_text}<|im_end|>\n"
        f"<|im_start|>user\n{turn.prompt_text}<|im_end|>\n<|im_start|>assistant\n"
    )
    # The user message and generation prompt are the student's tokens (the student had no system message).
    assert prompt.prompt_ids[-len(turn.prompt_ids) :] == turn.prompt_ids
    assert prompt.insert_at is None


def test_render_teacher_prompt_shows_skills_prompt_and_response(tiny, turns, skills):
    _, tokenizer = tiny
    turn = turns[0]
    for placement in ("prefix", "system"):
        text = render_teacher_prompt(turn, tokenizer, env_name=ENV, placement=placement)
        assert SKILL_HEADER in text and skills["mug"] in text and turn.prompt_text in text
        assert text.endswith("<|im_start|>assistant\n" + turn.response_text)
        assert text.index(skills["mug"]) < text.index(turn.prompt_text)
    without = render_teacher_prompt(turn, tokenizer, env_name=ENV, with_response=False)
    assert not without.endswith(turn.response_text)


def test_render_with_the_real_alfworld_library_routes_the_task_type(tiny):
    _, tokenizer = tiny
    turn = make_turn(tokenizer, "pick_cool_then_place_in_recep", "Your task is to: cool some apple.", "x")
    text = render_teacher_prompt(turn, tokenizer, env_name="alfworld")
    assert teacher_context("alfworld", turn.task) in text
    assert "## General skills" in text and "cool" in text.lower()


def test_unknown_placement_is_a_config_error(tiny, turns):
    with pytest.raises(ConfigError, match="placement='user'.*prefix, system"):
        build_teacher_prompt(turns[0], tiny[1], env_name=ENV, placement="user")


# --- reserve and start-up check


def test_skill_token_reserve_is_the_longest_extra_text(tiny, skills):
    _, tokenizer = tiny
    mug = len(tokenizer(f"{SKILL_HEADER}{skills['general']}\n\n{skills['mug']}\n\n").input_ids)
    lamp = len(tokenizer(f"{SKILL_HEADER}{skills['general']}\n\n{skills['lamp']}\n\n").input_ids)
    assert skill_token_reserve(tokenizer, ENV, ["mug"], "prefix") == mug
    assert skill_token_reserve(tokenizer, ENV, ["mug", "lamp"], "prefix") == max(mug, lamp)
    # System: the system block "<|im_start|>system\n...<|im_end|>\n" minus the "\n\n" the prefix ends with.
    system = skill_token_reserve(tokenizer, ENV, ["mug", "lamp"], "system")
    assert system == max(mug, lamp) - 2 + len(tokenizer("<|im_start|>system\n<|im_end|>\n").input_ids)
    # None = every skill at once: an upper bound for any routing.
    assert skill_token_reserve(tokenizer, ENV, None, "prefix") > max(mug, lamp)


def test_reserve_matches_built_prompts_for_every_alfworld_task_type(tiny):
    _, tokenizer = tiny
    from sdar.skills.library import ALFWORLD_ROUTES

    for placement in ("prefix", "system"):
        reserve = skill_token_reserve(tokenizer, "alfworld", list(ALFWORLD_ROUTES), placement)
        extra = []
        for task_type in ALFWORLD_ROUTES:
            turn = make_turn(tokenizer, task_type, "Your task is to: do it.", "x")
            built = build_teacher_prompt(turn, tokenizer, env_name="alfworld", placement=placement)
            extra.append(len(built.prompt_ids) - len(turn.prompt_ids))
        assert reserve == max(extra)


def test_start_up_check_refuses_a_reserve_that_leaves_too_little_prompt():
    assert student_prompt_budget(2048, 600) == 1448
    assert student_prompt_budget(1024, 768) == 256  # exactly 25 % left is enough
    with pytest.raises(PromptBudgetError, match=r"needs 800 tokens.*max_prompt_tokens=1024.*at least 1067"):
        student_prompt_budget(1024, 800)
    assert isinstance(PromptBudgetError("x"), ConfigError)


# --- log-probs


@pytest.mark.parametrize("prefix_batching", ["per_group", "batched"])
@pytest.mark.parametrize("placement", ["prefix", "system"])
def test_shared_prefix_equals_the_plain_computation(tiny, turns, placement, prefix_batching):
    model, tokenizer = tiny
    options = dict(env_name=ENV, placement=placement, micro_batch_rows=2)
    shared = teacher_logprobs(model, tokenizer, turns, prefix_batching=prefix_batching, **options)
    plain = teacher_logprobs(model, tokenizer, turns, share_prefix=False, **options)
    one_batch = teacher_logprobs(
        model, tokenizer, turns, prefix_batching=prefix_batching, env_name=ENV, placement=placement
    )
    prompts = build_teacher_prompts(turns, tokenizer, env_name=ENV, placement=placement)
    # The shared prefix really is used: both groups share more than the skill block's first tokens.
    for task_type in ("mug", "lamp"):
        group = [p.prompt_ids for p, t in zip(prompts, turns, strict=True) if t.task.task_type == task_type]
        assert longest_common_prefix(group) > 40
    for row, (turn, prompt) in enumerate(zip(turns, prompts, strict=True)):
        count = len(turn.response_ids)
        reference = plain_reference(model, prompt.prompt_ids, turn.response_ids)
        torch.testing.assert_close(shared[row, :count], reference, atol=TOLERANCE, rtol=0)
        torch.testing.assert_close(plain[row, :count], reference, atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(one_batch, shared, atol=TOLERANCE, rtol=0)


def test_prefix_batching_plans_one_cache_per_group_or_one_batched_cache(tiny, turns):
    from sdar.teacher.scoring import _plans

    model, tokenizer = tiny
    prompts = build_teacher_prompts(turns, tokenizer, env_name=ENV)
    per_group = _plans(model, prompts, True, "per_group")
    assert sorted(len(plan.rows) for plan in per_group) == [2, 3]
    assert all(plan.cache.get_seq_length() > 40 for plan in per_group)
    (batched,) = _plans(model, prompts, True, "batched")
    assert batched.cache.layers[0].keys.shape[0] == 2  # one cache row per skill group
    assert batched.cache.get_seq_length() == min(plan.cache.get_seq_length() for plan in per_group)
    assert [batched.group_of[row] for row in range(5)] == [0, 1, 0, 1, 0]
    assert _plans(model, prompts, True, "auto")[0].group_of is None  # CPU: per group
    (plain,) = _plans(model, prompts, False, "auto")
    assert plain.cache is None and plain.suffixes[0] == prompts[0].prompt_ids
    with pytest.raises(ValueError, match="prefix_batching='both'"):
        _plans(model, prompts, True, "both")


def test_rows_align_with_rows_to_batch_and_are_zero_outside_the_mask(tiny, turns):
    model, tokenizer = tiny
    batch = rows_to_batch(turns, tokenizer.pad_token_id)
    result = teacher_logprobs(model, tokenizer, turns, env_name=ENV, micro_batch_rows=2)
    assert result.shape == batch.response_mask.shape and result.dtype == torch.float32
    assert torch.all(result[~batch.response_mask] == 0)
    assert torch.all(result[batch.response_mask] < 0)
    # Order follows the turns, not the internal grouping/sorting: a permutation permutes the rows.
    order = [3, 0, 4, 2, 1]
    permuted = teacher_logprobs(model, tokenizer, [turns[i] for i in order], env_name=ENV, micro_batch_rows=2)
    torch.testing.assert_close(permuted, result[order], atol=TOLERANCE, rtol=0)
    wider = teacher_logprobs(model, tokenizer, turns, env_name=ENV, response_length=50)
    assert wider.shape == (len(turns), 50)
    torch.testing.assert_close(wider[:, : result.shape[1]], result, atol=TOLERANCE, rtol=0)
    with pytest.raises(ValueError, match="shorter than the longest response"):
        teacher_logprobs(model, tokenizer, turns, env_name=ENV, response_length=3)


def test_teacher_differs_from_the_student_and_uses_the_routed_skills(tiny, turns):
    model, tokenizer = tiny
    teacher = teacher_logprobs(model, tokenizer, turns[:1], env_name=ENV)
    student = plain_reference(model, turns[0].prompt_ids, turns[0].response_ids)
    assert not torch.allclose(teacher[0], student, atol=1e-3)


def test_no_gradient_and_training_mode_restored(tiny, turns):
    model, tokenizer = tiny
    model.train()
    try:
        with torch.enable_grad():
            result = teacher_logprobs(model, tokenizer, turns, env_name=ENV)
        assert result.requires_grad is False and result.grad_fn is None
        assert model.training
    finally:
        model.eval()


# --- weights


def perturb_(parameters, seed: int, scale: float = 0.05) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in parameters:
            parameter.add_(torch.randn(parameter.shape, generator=generator) * scale)


def test_live_weights_are_the_policy_model(tiny):
    model, _ = tiny
    weights = TeacherWeights.from_config(TeacherConfig(weights="live"), model)
    with weights.scoring_model() as scorer:
        assert scorer is model
    weights.update()  # a no-op


def test_base_weights_with_lora_score_like_the_base_model(turns, skills):
    model, tokenizer = load_model(ModelConfig(name="tiny"))
    base_scores = teacher_logprobs(model, tokenizer, turns, env_name=ENV)
    peft_model = add_lora(model, ModelConfig(name="tiny", lora_rank=4))
    perturb_([p for p in peft_model.parameters() if p.requires_grad], seed=1)  # lora_B starts at 0
    live_scores = teacher_logprobs(peft_model, tokenizer, turns, env_name=ENV)
    assert not torch.allclose(live_scores, base_scores, atol=1e-3)
    weights = TeacherWeights("base", peft_model)
    assert weights.base_model is None  # no copy: the adapters are switched off instead
    with weights.scoring_model() as scorer:
        torch.testing.assert_close(
            teacher_logprobs(scorer, tokenizer, turns, env_name=ENV), base_scores, atol=TOLERANCE, rtol=0
        )
    torch.testing.assert_close(
        teacher_logprobs(peft_model, tokenizer, turns, env_name=ENV), live_scores, atol=0, rtol=0
    )


def test_base_weights_without_lora_are_a_frozen_copy(turns, skills):
    model, tokenizer = load_model(ModelConfig(name="tiny"))
    before = teacher_logprobs(model, tokenizer, turns, env_name=ENV)
    weights = TeacherWeights("base", model)
    perturb_(model.parameters(), seed=2)  # training moves the live model
    with weights.scoring_model() as scorer:
        assert scorer is not model and not any(p.requires_grad for p in scorer.parameters())
        torch.testing.assert_close(
            teacher_logprobs(scorer, tokenizer, turns, env_name=ENV), before, atol=0, rtol=0
        )
    reference, _ = load_model(ModelConfig(name="tiny"))
    assert TeacherWeights("base", model, base_model=reference).base_model is reference


def test_ema_weights_follow_the_average_and_restore_the_live_weights_exactly(turns, skills):
    model, tokenizer = load_model(ModelConfig(name="tiny"))
    decay = 0.9
    weights = TeacherWeights.from_config(TeacherConfig(weights="ema", ema_decay=decay), model)
    expected = {name: p.detach().clone() for name, p in model.named_parameters()}
    for step in range(3):  # three "optimizer steps", each followed by an EMA update
        perturb_(model.parameters(), seed=10 + step)
        weights.update()
        for name, p in model.named_parameters():
            expected[name] = decay * expected[name] + (1 - decay) * p.detach()
    live = {name: p.detach().clone() for name, p in model.named_parameters()}
    live_scores = teacher_logprobs(model, tokenizer, turns, env_name=ENV)
    with weights.scoring_model() as scorer:
        assert scorer is model
        for name, p in scorer.named_parameters():
            torch.testing.assert_close(p, expected[name], atol=1e-6, rtol=0)
        ema_scores = teacher_logprobs(scorer, tokenizer, turns, env_name=ENV)
    for name, p in model.named_parameters():
        assert torch.equal(p, live[name]), name  # bit-exact restore
    assert torch.equal(teacher_logprobs(model, tokenizer, turns, env_name=ENV), live_scores)
    # The EMA scores are those of a model holding the averaged weights.
    averaged, _ = load_model(ModelConfig(name="tiny"))
    averaged.load_state_dict(expected)
    torch.testing.assert_close(
        ema_scores, teacher_logprobs(averaged, tokenizer, turns, env_name=ENV), atol=TOLERANCE, rtol=0
    )


def test_ema_restores_the_live_weights_when_scoring_fails():
    model, _ = load_model(ModelConfig(name="tiny"))
    ema = EmaTeacher(model, decay=0.5)
    perturb_(model.parameters(), seed=3)
    live = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(RuntimeError, match="boom"), ema.swapped_in(model):
        raise RuntimeError("boom")
    assert all(torch.equal(p, saved) for p, saved in zip(model.parameters(), live, strict=True))


def test_ema_with_lora_averages_only_the_adapters_and_resumes_from_its_state():
    model, _ = load_model(ModelConfig(name="tiny", lora_rank=4))
    weights = TeacherWeights("ema", model, ema_decay=0.5)
    assert weights.ema.shadow and all("lora_" in name for name in weights.ema.shadow)
    perturb_([p for p in model.parameters() if p.requires_grad], seed=4)
    weights.update()
    resumed = TeacherWeights("ema", model, ema_decay=0.5)
    resumed.load_state_dict(weights.state_dict())
    assert resumed.ema.updates == 1
    assert all(torch.equal(resumed.ema.shadow[n], v) for n, v in weights.ema.shadow.items())


def test_unknown_weight_kind_is_a_config_error(tiny):
    with pytest.raises(ConfigError, match="teacher.weights='old'.*live, base, ema"):
        TeacherWeights("old", tiny[0])
