"""`generate_chat`: one chat reply through a generation backend and the chat template (`sdar chat`)."""

from __future__ import annotations

from sdar.models.generation import GenerationBackend


def generate_chat(
    backend: GenerationBackend,
    tokenizer,
    messages: str | list[dict],
    *,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
) -> str:
    """Text or [{"role", "content"}, ...] -> the assistant's reply; temperature 0 = greedy decoding."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    prompt = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True
    )
    (reply,) = backend.generate(
        [list(prompt["input_ids"])],
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
    )
    return reply.text.strip()
