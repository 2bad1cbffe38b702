"""`generate_chat`: one chat reply from a model, through its chat template (behind `sdar chat "text"`)."""

from __future__ import annotations

import torch


def generate_chat(
    model,
    tokenizer,
    messages: str | list[dict],
    *,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    top_p: float = 1.0,
) -> str:
    """Text or [{"role", "content"}, ...] -> the assistant's reply; temperature 0 = greedy decoding."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    encoded = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    device = next(model.parameters()).device
    encoded = {key: value.to(device) for key, value in encoded.items()}
    sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature > 0 else {}
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            output = model.generate(
                **encoded,
                max_new_tokens=max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
                use_cache=True,  # the config may say False after enabling gradient checkpointing
                **(sampling or {"do_sample": False}),
            )
    finally:
        model.train(was_training)
    prompt_length = encoded["input_ids"].shape[1]
    return tokenizer.decode(output[0, prompt_length:], skip_special_tokens=True).strip()
