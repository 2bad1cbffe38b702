"""Cost of the teacher pass (docs/method.md §5 step 5): shared skill prefix vs a full forward per row, vs a
GRPO step.

    python benchmarks/teacher_cost.py                       # tiny model, CPU
    python benchmarks/teacher_cost.py --model smollm2-135m  # the embedded SmolLM2-135M-Instruct
    python benchmarks/teacher_cost.py --model DIR --random-init --device cuda --dtype bf16  # any shape on GPU

Rows are ALFWorld turns: real prompts from the packaged templates (admissible actions added until the prompt
reaches ~--prompt-tokens), the real ALFWorld skill contexts routed by task type (--groups task types, so that
many distinct skill sets), and random response tokens of --response-tokens. Timed (median of --repeats after
one warm-up): the student's no-grad forward (old log-probs; the reference pass costs the same), the teacher
pass without and with the shared prefix, and optionally (--step) a LoRA/full update forward+backward and a
64-token generation, to put the teacher's cost next to a whole GRPO step on these rows.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time

import torch

from sdar.config import ModelConfig
from sdar.env_records import Task
from sdar.envs.alfworld.prompts import render_alfworld_prompt
from sdar.models import load_model, token_logprobs
from sdar.models.loading import DTYPES, add_lora, prepare_tokenizer
from sdar.records import Turn, rows_to_batch
from sdar.skills.library import ALFWORLD_ROUTES
from sdar.teacher import build_teacher_prompts, longest_common_prefix, teacher_logprobs

OBJECTS = ("mug", "apple", "pen", "book", "knife", "plate", "cup", "egg", "lettuce", "vase", "cd", "pillow")
PLACES = ("cabinet", "drawer", "countertop", "shelf", "desk", "sidetable", "fridge", "microwave", "sinkbasin")


def make_prompt(tokenizer, task: Task, rng: random.Random, prompt_tokens: int) -> tuple[str, list[int]]:
    """A with-history ALFWorld user message grown (more admissible actions) to about `prompt_tokens`."""
    place = lambda: f"{rng.choice(PLACES)} {rng.randint(1, 9)}"  # noqa: E731
    thing = lambda: f"{rng.choice(OBJECTS)} {rng.randint(1, 3)}"  # noqa: E731
    observation = f"You arrive at {place()}. On it, you see a {thing()}, a {thing()}, and a {thing()}."
    history = [(f"You arrive at {place()}. You see a {thing()}.", f"go to {place()}") for _ in range(2)]
    actions: list[str] = []
    while True:
        actions += [f"go to {place()}", f"take {thing()} from {place()}", f"examine {place()}"]
        text = render_alfworld_prompt(task, observation, actions, history, step_count=rng.randint(2, 20)).text
        ids = chat_ids(tokenizer, text)
        if len(ids) >= prompt_tokens:
            return text, ids


def chat_ids(tokenizer, user_message: str) -> list[int]:
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": user_message}], tokenize=False, add_generation_prompt=True
    )
    return tokenizer(text, add_special_tokens=False).input_ids


def make_turns(tokenizer, rows: int, groups: int, prompt_tokens: int, response_tokens: int, seed: int):
    rng = random.Random(seed)
    task_types = list(ALFWORLD_ROUTES)[:groups]
    high = min(len(tokenizer), 30000)
    turns = []
    for row in range(rows):
        task_type = task_types[row % len(task_types)]
        task = Task(
            f"game-{task_type}", task_type, f"Your task is to: put a clean {rng.choice(OBJECTS)} in a box."
        )
        text, ids = make_prompt(tokenizer, task, rng, prompt_tokens)
        response = [rng.randrange(100, high) for _ in range(response_tokens)]
        turns.append(Turn(task, row % groups, row, rng.randint(1, 9), text, ids, response, "", "look", True))
    return turns


def load(args, device: torch.device):
    if not args.random_init:
        return load_model(ModelConfig(name=args.model, dtype=args.dtype, lora_rank=args.lora_rank))
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(args.model)
    with torch.random.fork_rng(devices=[]), device:  # built on the device: a 7B init on CPU takes minutes
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config, dtype=DTYPES[args.dtype]).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    prepare_tokenizer(tokenizer, model)
    if args.lora_rank:
        model = add_lora(model, ModelConfig(name="random", lora_rank=args.lora_rank))
    return model, tokenizer


def timed(functions: dict, repeats: int, device: torch.device, warmup: int = 1) -> dict[str, float]:
    """Median seconds per function; the functions take turns (round robin), so load drifts hit all alike."""
    for _ in range(warmup):
        for function in functions.values():
            function()
    seconds: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            begin = time.perf_counter()
            function()
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds[name].append(time.perf_counter() - begin)
    return {name: statistics.median(values) for name, values in seconds.items()}


def micro_batches(batch, rows: int):
    for begin in range(0, len(batch), rows):
        yield batch.select(slice(begin, begin + rows))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default="tiny", help="tiny, smollm2-135m, or a folder (with --random-init)"
    )
    parser.add_argument(
        "--random-init", action="store_true", help="build the folder's config with random weights"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=tuple(DTYPES))
    parser.add_argument("--lora-rank", type=int, default=16, help="alfworld_cpu's LoRA rank (0 = full)")
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--groups", type=int, default=4, help="distinct task types = distinct skill sets")
    parser.add_argument("--prompt-tokens", type=int, default=600)
    parser.add_argument("--response-tokens", type=int, default=64)
    parser.add_argument("--micro-batch-rows", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls before the timed ones")
    parser.add_argument(
        "--step", action="store_true", help="also time an update and a generation (GRPO step)"
    )
    parser.add_argument(
        "--check", action="store_true", help="compare shared with plain (fp32: fail above 1e-4)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    model, tokenizer = load(args, device)
    model = model.to(device)
    tokenizer.model_max_length = 1 << 30  # long byte-level rows of the tiny model are intended here
    turns = make_turns(tokenizer, args.rows, args.groups, args.prompt_tokens, args.response_tokens, args.seed)
    prompts = build_teacher_prompts(turns, tokenizer, env_name="alfworld")
    student_tokens = sum(len(t.prompt_ids) + len(t.response_ids) for t in turns)
    teacher_tokens = sum(len(p.prompt_ids) + len(t.response_ids) for p, t in zip(prompts, turns, strict=True))
    by_skills: dict[str, list[list[int]]] = {}
    for prompt in prompts:
        by_skills.setdefault(prompt.skills, []).append(prompt.prompt_ids)
    lengths = [longest_common_prefix(group) for group in by_skills.values()]
    saved = sum(
        (length - 1) * (len(group) - 1) for length, group in zip(lengths, by_skills.values(), strict=True)
    )
    saved_batched = (min(lengths) - 1) * (len(prompts) - len(lengths))
    skill_lengths = sorted({p.inserted for p in prompts})
    print(
        f"model {args.model} ({'random init, ' if args.random_init else ''}{args.dtype}, {device}, "
        f"LoRA {args.lora_rank}), {args.rows} rows, {len(by_skills)} skill sets"
    )
    print(
        f"tokens per row: prompt {statistics.mean(len(t.prompt_ids) for t in turns):.0f}, skills "
        f"{skill_lengths[0]}-{skill_lengths[-1]}, response {args.response_tokens}; shared prefixes "
        f"{min(lengths)}-{max(lengths)} tokens\nforward tokens: student {student_tokens}, "
        f"teacher plain {teacher_tokens}, "
        f"teacher shared per_group {teacher_tokens - saved}, batched {teacher_tokens - saved_batched}"
    )

    batch = rows_to_batch(turns, tokenizer.pad_token_id)

    def student_forward():
        with torch.no_grad():
            for micro in micro_batches(batch, args.micro_batch_rows):
                token_logprobs(
                    model,
                    micro.input_ids.to(device),
                    micro.attention_mask.to(device),
                    start=batch.response_start,
                )

    def teacher(share_prefix: bool, prefix_batching: str = "auto"):
        return lambda: teacher_logprobs(
            model,
            tokenizer,
            turns,
            env_name="alfworld",
            share_prefix=share_prefix,
            prefix_batching=prefix_batching,
            micro_batch_rows=args.micro_batch_rows,
            prompts=prompts,
        )

    modes = ("per_group", "batched")
    if args.check:
        plain = teacher(False)()
        for mode in modes:
            difference = (teacher(True, mode)() - plain)[batch.response_mask].abs()
            print(
                f"check {mode}: |shared - plain| max {difference.max():.2e}, mean {difference.mean():.2e} "
                f"({args.dtype})"
            )
            if args.dtype == "fp32" and not difference.max() <= 1e-4:
                return 1

    functions = {
        "student forward (old log-probs)": student_forward,
        "teacher, full forward per row": teacher(False),
        "teacher, shared prefix, per_group": teacher(True, "per_group"),
        "teacher, shared prefix, batched": teacher(True, "batched"),
    }
    if args.step:
        update_rows = 4  # the alfworld_cpu preset's micro_batch_rows

        def update():
            model.train()
            for micro in micro_batches(batch, update_rows):
                logprobs, _ = token_logprobs(
                    model,
                    micro.input_ids.to(device),
                    micro.attention_mask.to(device),
                    start=batch.response_start,
                )
                logprobs.sum().backward()
            model.zero_grad(set_to_none=True)
            model.eval()

        def generate():
            left = tokenizer.padding_side
            tokenizer.padding_side = "left"
            encoded = tokenizer.pad({"input_ids": [t.prompt_ids for t in turns]}, return_tensors="pt").to(
                device
            )
            tokenizer.padding_side = left
            with torch.no_grad():
                model.generate(
                    **encoded,
                    max_new_tokens=args.response_tokens,
                    min_new_tokens=args.response_tokens,
                    do_sample=True,
                    pad_token_id=tokenizer.pad_token_id,
                )

        functions["update forward+backward (micro-batch 4)"] = update
        functions[f"generation ({args.response_tokens} new tokens)"] = generate
    times = timed(functions, args.repeats, device, args.warmup)

    width = max(map(len, times))
    for name, seconds in times.items():
        print(f"  {name:{width}s} {seconds * 1000:10.1f} ms")
    plain, forward = times["teacher, full forward per row"], times["student forward (old log-probs)"]
    shared = {mode: times[f"teacher, shared prefix, {mode}"] for mode in modes}
    print(
        f"teacher / student forward: plain {plain / forward:.2f}, "
        + ", ".join(f"{mode} {value / forward:.2f}" for mode, value in shared.items())
    )
    print(
        "shared-prefix speed-up (plain / shared): "
        + ", ".join(f"{mode} {plain / value:.2f}x" for mode, value in shared.items())
    )
    if args.step:
        # GRPO step = generation + old + reference (costs as old) + update; SDAR adds the teacher.
        grpo = forward * 2 + times["update forward+backward (micro-batch 4)"]
        grpo += times[f"generation ({args.response_tokens} new tokens)"]
        print(
            "SDAR / GRPO step (generation + old + ref + update [+ teacher]): "
            f"plain {(grpo + plain) / grpo:.3f}, "
            + ", ".join(f"{mode} {(grpo + value) / grpo:.3f}" for mode, value in shared.items())
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
