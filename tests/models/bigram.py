"""A real Qwen2 whose weights make it a bigram table: the next token depends only on the current one.

Attention and MLP write nothing to the residual stream (o_proj = down_proj = 0), so the last hidden state is
the normed embedding of the current token; with unit embeddings e_t and LM-head rows W_u = c · Σ e_t over the
t with table[t] = u, the logit of table[t] exceeds every other by about c·√d. Any backend, ours or vLLM,
then follows the table, which lets tests script stop strings, eos and length on a real engine.
"""

import torch


def make_bigram(model, table: dict[int, int], margin: float = 40.0):
    """Rewrite `model` (a tiny Qwen2, in place) so that greedy and T = 1 sampling follow `table`."""
    config = model.config
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        generator = torch.Generator().manual_seed(0)
        embeddings = torch.randn(config.vocab_size, config.hidden_size, generator=generator)
        embeddings = embeddings / embeddings.norm(dim=-1, keepdim=True)
        model.model.embed_tokens.weight.copy_(embeddings)
        model.model.norm.weight.fill_(1.0)
        head = torch.zeros_like(model.lm_head.weight)
        scale = margin / config.hidden_size**0.5
        for current, following in table.items():
            head[following] += scale * embeddings[current]
        model.lm_head.weight.copy_(head)
    return model
