"""HFBackend: exact sampling log-probs, seeded reproducibility, per-row stop on eos / stop string / length."""

import math

import pytest
import torch

from sdar.config import ModelConfig
from sdar.models import load_model, token_logprobs
from sdar.models.generation import (
    Generation,
    GenerationBackend,
    HFBackend,
    sample_next,
    top_p_filter,
)

TOLERANCE = 1e-4  # fp32: cached decoding vs one full forward


def chat_ids(tokenizer, text):
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True, return_dict=False
    )


@pytest.fixture
def prompts(tiny):
    _, tokenizer = tiny
    texts = ["go", "find a mug and put it on the desk, please", "look around the room"]
    return [chat_ids(tokenizer, text) for text in texts]  # three lengths: left padding is exercised


def assert_logprobs_match_model(model, prompts, generations):
    for prompt, generation in zip(prompts, generations, strict=True):
        ids = torch.tensor([prompt + generation.token_ids])
        with torch.no_grad():
            expected, _ = token_logprobs(model, ids, start=len(prompt))
        expected = expected[0, len(prompt) :]
        assert len(generation.logprobs) == len(generation.token_ids) == expected.shape[0] > 0
        torch.testing.assert_close(torch.tensor(generation.logprobs), expected, atol=TOLERANCE, rtol=0)


def test_backend_satisfies_protocol(tiny):
    assert isinstance(HFBackend(*tiny), GenerationBackend)


def test_sampling_logprobs_equal_token_logprobs_at_temperature_one(tiny, prompts):
    model, tokenizer = tiny
    generations = HFBackend(model, tokenizer).generate(
        prompts, max_new_tokens=24, temperature=1.0, top_p=1.0, seed=0
    )
    assert_logprobs_match_model(model, prompts, generations)


def test_same_seed_same_tokens_and_other_seed_differs(tiny, prompts):
    backend = HFBackend(*tiny)
    options = dict(max_new_tokens=16, temperature=1.0, top_p=1.0)
    first = backend.generate(prompts, seed=7, **options)
    again = HFBackend(*tiny).generate(prompts, seed=7, **options)
    other = backend.generate(prompts, seed=8, **options)
    assert first == again
    assert [g.token_ids for g in first] != [g.token_ids for g in other]


def test_unseeded_calls_follow_the_backend_generator(tiny, prompts):
    options = dict(max_new_tokens=8, temperature=1.0, top_p=1.0)
    a, b = HFBackend(*tiny, seed=3), HFBackend(*tiny, seed=3)
    assert a.generate(prompts, **options) == b.generate(prompts, **options)
    assert a.generate(prompts, **options) == b.generate(prompts, **options)


def test_token_ids_decode_to_text(tiny, prompts):
    model, tokenizer = tiny
    for generation in HFBackend(model, tokenizer).generate(
        prompts, max_new_tokens=12, temperature=1.0, top_p=1.0, seed=1
    ):
        assert generation.text == tokenizer.decode(generation.token_ids, skip_special_tokens=True)


def test_greedy_equals_hf_generate(tiny, prompts):
    model, tokenizer = tiny
    generations = HFBackend(model, tokenizer).generate(prompts, max_new_tokens=10, temperature=0.0, top_p=1.0)
    for prompt, generation in zip(prompts, generations, strict=True):
        with torch.no_grad():
            reference = model.generate(
                torch.tensor([prompt]), max_new_tokens=10, do_sample=False, pad_token_id=0
            )[0, len(prompt) :].tolist()
        assert generation.token_ids == reference[: len(generation.token_ids)]
    assert_logprobs_match_model(model, prompts, generations)  # greedy reports the model's T = 1 log-probs


def test_tiny_top_p_is_greedy_with_zero_logprobs(tiny, prompts):
    backend = HFBackend(*tiny)
    greedy = backend.generate(prompts, max_new_tokens=8, temperature=0.0, top_p=1.0)
    nucleus = backend.generate(prompts, max_new_tokens=8, temperature=1.0, top_p=1e-6, seed=5)
    assert [g.token_ids for g in nucleus] == [g.token_ids for g in greedy]
    assert all(lp == 0.0 for g in nucleus for lp in g.logprobs)  # a one-token nucleus has probability 1


def test_top_p_filter_hand_computed():
    logits = torch.tensor([[math.log(0.5), math.log(0.3), math.log(0.2)]])
    kept = top_p_filter(logits, 0.6).softmax(-1)  # 0.5 < 0.6, then 0.5 + 0.3 >= 0.6: keep two tokens
    torch.testing.assert_close(kept, torch.tensor([[0.625, 0.375, 0.0]]))
    torch.testing.assert_close(top_p_filter(logits, 0.5).softmax(-1), torch.tensor([[1.0, 0.0, 0.0]]))
    assert torch.equal(top_p_filter(logits, 1.0), logits)


def test_sampling_logprob_uses_temperature():
    logits = torch.tensor([[2.0, 0.0]])
    generator = torch.Generator().manual_seed(0)
    tokens, logprobs = sample_next(logits, 0.5, 1.0, generator)
    expected = (logits / 0.5).log_softmax(-1)[0, tokens[0]]
    torch.testing.assert_close(logprobs[0], expected)


class ScriptedLM(torch.nn.Module):
    """Wraps a real model (cache, masks, positions run for real) but forces the next token from the last one.

    `table[last_token] = next_token`: a row follows its chain deterministically whatever the sampler.
    """

    def __init__(self, inner, table):
        super().__init__()
        self.inner, self.table = inner, table
        self.generation_config, self.config = inner.generation_config, inner.config
        self.forward_batch_sizes = []

    def forward(self, input_ids, attention_mask=None, position_ids=None, cache=None, use_cache=None, **kw):
        output = self.inner(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=use_cache,
            **kw,
        )
        self.forward_batch_sizes.append(input_ids.shape[0])
        forced = torch.full_like(output.logits, -30.0)
        for row, last in enumerate(input_ids[:, -1].tolist()):
            forced[row, -1, self.table.get(last, last)] = 30.0
        output.logits = forced
        return output


def test_each_row_stops_on_its_own_stop_string_eos_or_length(tiny):
    model, tokenizer = tiny
    ids = {char: tokenizer.convert_tokens_to_ids(char) for char in "qa</>zkxyw"}
    eos = tokenizer.eos_token_id
    table = {ids["x"]: ids["q"], ids["q"]: ids["<"], ids["<"]: ids["/"], ids["/"]: ids["a"]}
    table |= {ids["a"]: ids[">"], ids[">"]: ids["z"], ids["z"]: ids["z"]}  # "q</a>" then "zzz..."
    table |= {ids["y"]: ids["k"], ids["k"]: ids["k"], ids["w"]: eos}  # "kkk..." forever; eos at once
    scripted = ScriptedLM(model, table)
    prompts = [[ids["x"]], [ids["w"], ids["y"]], [ids["w"]]]
    generations = HFBackend(scripted, tokenizer).generate(
        prompts, max_new_tokens=8, temperature=1.0, top_p=1.0, stop_strings=("</a>",), seed=0
    )
    stop, length, end = generations
    assert (stop.text, stop.finish_reason) == ("q</a>", "stop")
    assert stop.token_ids == [ids[c] for c in "q</a>"]  # the closing tag's tokens are part of the response
    assert (length.text, length.finish_reason, len(length.token_ids)) == ("k" * 8, "length", 8)
    assert (end.token_ids, end.text, end.finish_reason) == ([eos], "", "eos")  # eos kept in the ids
    # Finished rows leave the batch: 3 rows at the prefill, 2 after the eos row, 1 after the stop row.
    assert scripted.forward_batch_sizes == [3, 2, 2, 2, 2, 1, 1, 1]


def test_identical_prompts_share_one_prefill_but_sample_independently(tiny, prompts):
    model, tokenizer = tiny
    scripted = ScriptedLM(model, {})  # an empty table repeats each row's last token
    repeated = [prompts[0], prompts[1], prompts[0], prompts[0]]
    HFBackend(scripted, tokenizer).generate(repeated, max_new_tokens=2, temperature=1.0, top_p=1.0, seed=0)
    assert scripted.forward_batch_sizes == [2, 4]  # 2 distinct prompts prefilled, 4 rows decoded
    scripted.forward_batch_sizes.clear()
    HFBackend(scripted, tokenizer, share_prefill=False).generate(
        repeated, max_new_tokens=2, temperature=1.0, top_p=1.0, seed=0
    )
    assert scripted.forward_batch_sizes == [4, 4]
    generations = HFBackend(model, tokenizer).generate(
        repeated, max_new_tokens=16, temperature=1.0, top_p=1.0, seed=0
    )
    assert len({tuple(g.token_ids) for g in generations}) == 4  # the copies are independent samples
    assert_logprobs_match_model(model, repeated, generations)


def test_lora_model_and_training_state(tiny, prompts):
    model, tokenizer = load_model(ModelConfig(name="tiny", lora_rank=4, gradient_checkpointing=True))
    model.train()
    generations = HFBackend(model, tokenizer).generate(
        prompts, max_new_tokens=12, temperature=1.0, top_p=1.0, seed=2
    )
    assert model.training  # restored after generating in eval mode
    model.eval()
    assert_logprobs_match_model(model, prompts, generations)


def test_bf16_model_generates_finite_logprobs(prompts):
    model, tokenizer = load_model(ModelConfig(name="tiny", dtype="bf16"))
    generations = HFBackend(model, tokenizer).generate(
        prompts, max_new_tokens=8, temperature=1.0, top_p=0.9, seed=0
    )
    assert all(len(g.token_ids) == len(g.logprobs) > 0 for g in generations)
    assert all(math.isfinite(lp) and lp <= 0.0 for g in generations for lp in g.logprobs)


def test_bad_arguments(tiny):
    backend = HFBackend(*tiny)
    assert backend.generate([], max_new_tokens=4, temperature=1.0, top_p=1.0) == []
    with pytest.raises(ValueError, match="max_new_tokens"):
        backend.generate([[1]], max_new_tokens=0, temperature=1.0, top_p=1.0)
    with pytest.raises(ValueError, match="at least one token"):
        backend.generate([[]], max_new_tokens=4, temperature=1.0, top_p=1.0)


def test_generation_record():
    generation = Generation([5, 2], [-0.1, -0.2], "hi", "eos")
    assert generation.finish_reason == "eos" and generation.token_ids == [5, 2]
