"""Rollout throughput, two comparisons (`--compare`):

backends (the generation backends side by side, at the `alfworld_cpu` shape): that config's rollout
(the embedded SmolLM2-135M-Instruct with LoRA, 1 generated ALFWorld game x G = 4, up to 10 turns of up to 64
tokens), played by `HFBackend` and by `VLLMBackend` on the same tasks and seeds, steps alternating between
the backends so that load drifts hit both. Per backend: engine start (vLLM: process start and the first
weight load), the per-step weight sync (vLLM: `load_weights` of the merged LoRA model, as the trainer does
after every update), and per step the rollout's wall time and generated tokens per second of generation.
Printed: the medians, and the wall time of the rollouts of a 20-step run with start-up and syncs included.

batching (the HF backend's batched engine vs episode by episode): the same episodes (default 16 = 4 generated
ALFWorld games x G = 4) through `sdar.rollout.engine.collect_episodes`: batched = one call with every
episode; sequential = one call per episode (G = 1).

    python benchmarks/rollout_throughput.py --compare backends              # alfworld_cpu shape, ~10 min
    python benchmarks/rollout_throughput.py --compare backends --vllm-dtype bf16
    python benchmarks/rollout_throughput.py                       # batching, tiny random model, seconds
    python benchmarks/rollout_throughput.py --model smollm2-135m --dtype bf16 --max-new-tokens 32
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from sdar.config import ModelConfig  # noqa: E402
from sdar.envs.alfworld.env import AlfworldEnv  # noqa: E402
from sdar.envs.alfworld.generator import generate_games  # noqa: E402
from sdar.envs.alfworld.prompts import build_alfworld_prompt  # noqa: E402
from sdar.envs.base import EnvSpec  # noqa: E402
from sdar.envs.pool import EnvPool  # noqa: E402
from sdar.envs.replies import parse_action_reply  # noqa: E402
from sdar.models import load_model  # noqa: E402
from sdar.models.generation import HFBackend  # noqa: E402
from sdar.rollout.engine import RolloutSettings, collect_episodes, rollout_stats  # noqa: E402

ALFWORLD_GENERATED = EnvSpec(
    name="alfworld-generated",
    factory=AlfworldEnv,
    description="generated ALFWorld games",
    build_prompt=build_alfworld_prompt,
    parse_reply=parse_action_reply,
    stop_strings=("</action>",),
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="tiny", help="tiny | smollm2-135m | a model folder")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--max-turns", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--max-prompt-tokens", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-shared-prefill", action="store_true", help="prefill duplicate prompts too")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    parser.add_argument("--compare", default="batching", choices=("batching", "backends"))
    parser.add_argument("--steps", type=int, default=3, help="backends: rollout steps per backend")
    parser.add_argument(
        "--run-steps", type=int, default=20, help="backends: the run length start-up amortises over"
    )
    parser.add_argument("--vllm-dtype", default="auto", choices=("auto", "fp32", "bf16"))
    parser.add_argument("--vllm-compile", action="store_true", help="backends: torch.compile the vLLM model")
    parser.add_argument("--vllm-cores", default="all", help="backends: rollout.vllm.cpu_cores")
    args = parser.parse_args()
    if args.compare == "backends":
        torch.set_num_threads(args.threads)
        compare_backends(args)
        return
    if args.episodes % args.group_size:
        parser.error("--episodes must be a multiple of --group-size")
    torch.set_num_threads(args.threads)

    started = time.perf_counter()
    model, tokenizer = load_model(ModelConfig(name=args.model, dtype=args.dtype))
    games = [path.parent.as_posix() for path in generate_games(args.episodes // args.group_size, seed=0)]
    print(
        f"model {args.model} ({args.dtype}), {len(games)} games x G={args.group_size}, "
        f"{args.max_turns} turns, {args.max_new_tokens} new tokens, {args.threads} thread(s), "
        f"shared prefill {'off' if args.no_shared_prefill else 'on'}; "
        f"setup {time.perf_counter() - started:.1f} s"
    )
    settings = RolloutSettings(
        group_size=args.group_size,
        max_turns=args.max_turns,
        max_new_tokens=args.max_new_tokens,
        max_prompt_tokens=args.max_prompt_tokens,
        seed=args.seed,
    )
    backend = HFBackend(model, tokenizer, share_prefill=not args.no_shared_prefill)
    with EnvPool(_factory(games), num_slots=args.episodes, num_workers=0) as pool:
        pool.reset_many([(slot, games[0]) for slot in range(args.episodes)])  # load the engine once
        # Warm-up (allocator, kernels) on one short turn, not timed.
        collect_episodes(
            pool,
            ALFWORLD_GENERATED,
            backend,
            tokenizer,
            games[:1],
            RolloutSettings(group_size=1, max_turns=1, max_new_tokens=4),
        )

        batched_rollout = collect_episodes(pool, ALFWORLD_GENERATED, backend, tokenizer, games, settings)
        batched = batched_rollout.stats

        episodes, generate_time, env_time, calls = [], 0.0, 0.0, 0
        clock = time.perf_counter()
        one = RolloutSettings(**{**settings.__dict__, "group_size": 1})
        for index in range(args.episodes):
            game = games[index // args.group_size]
            single = RolloutSettings(**{**one.__dict__, "seed": args.seed * 1000 + index})
            rollout = collect_episodes(pool, ALFWORLD_GENERATED, backend, tokenizer, [game], single)
            episodes += rollout.episodes
            generate_time += rollout.stats.generate_time_s
            env_time += rollout.stats.env_time_s
            calls += rollout.stats.generate_calls
        sequential = rollout_stats(
            episodes,
            time_s=time.perf_counter() - clock,
            generate_time_s=generate_time,
            env_time_s=env_time,
            generate_calls=calls,
        )

    print(
        f"{'mode':<12}{'episodes':>9}{'calls':>7}{'tokens':>8}{'prompt tok':>11}{'gen s':>8}"
        f"{'wall s':>8}{'tok/s':>8}"
    )
    for name, stats in (("batched", batched), ("sequential", sequential)):
        print(
            f"{name:<12}{stats.episodes:>9}{stats.generate_calls:>7}{stats.generated_tokens:>8}"
            f"{stats.prompt_tokens:>11}{stats.generate_time_s:>8.1f}{stats.time_s:>8.1f}"
            f"{stats.tokens_per_s:>8.1f}"
        )
    ratio = batched.tokens_per_s / sequential.tokens_per_s if sequential.tokens_per_s else float("nan")
    print(
        f"batched / sequential tokens per second: {ratio:.2f}x "
        f"(wall-clock speed-up {sequential.time_s / batched.time_s:.2f}x)"
    )
    distinct = [
        len({tuple(t.prompt_ids) for e in batched_rollout.episodes for t in e.turns if t.turn_index == k})
        for k in range(args.max_turns)
    ]
    print(f"distinct prompts per turn (batched): {distinct} of {args.episodes} episodes")
    print(f"finish reasons batched {batched.finish_reasons}, sequential {sequential.finish_reasons}")


def compare_backends(args) -> None:
    import statistics

    from sdar.config import load_config
    from sdar.envs import env_factory, get_env_spec
    from sdar.models.backends import make_backend
    from sdar.training.session import sample_tasks

    overrides = [
        "sft.warm_start=false",  # the shape is what matters here, not the warm start's skill
        f"rollout.vllm.dtype={args.vllm_dtype}",
        f"rollout.vllm.enforce_eager={not args.vllm_compile}",
        f"rollout.vllm.cpu_cores={args.vllm_cores}",
    ]
    config = load_config("alfworld_cpu", overrides)
    model, tokenizer = load_model(config.model)
    spec = get_env_spec(config.env.name)
    rollout = config.rollout
    slots = rollout.tasks_per_step * rollout.group_size
    timings: dict[str, dict[str, list[float]]] = {}
    backends = {}
    for name in ("hf", "vllm"):
        clock = time.perf_counter()
        backends[name] = make_backend(
            replace(config, rollout=replace(rollout, backend=name)), model, tokenizer
        )
        timings[name] = {
            "start": [time.perf_counter() - clock],
            "sync": [],
            "wall": [],
            "tok/s": [],
            "tokens": [],
        }
    print(
        f"alfworld_cpu shape: {config.model.name} LoRA r={config.model.lora_rank} ({config.model.dtype}), "
        f"{rollout.tasks_per_step} task x G={rollout.group_size}, <= {config.env.max_turns} turns x "
        f"{rollout.max_new_tokens} tokens; vLLM {args.vllm_dtype} "
        f"{'compiled' if args.vllm_compile else 'eager'}, cores {args.vllm_cores}; "
        f"{args.threads} torch thread(s) here"
    )
    try:
        with EnvPool(env_factory(config.env), num_slots=slots, num_workers=config.env.workers) as pool:
            tasks_all = pool.task_ids(config.env.split)
            settings = RolloutSettings.from_config(config)
            for step in range(args.steps):
                tasks = sample_tasks(tasks_all, step, rollout.tasks_per_step, config.seed)
                order = ("hf", "vllm") if step % 2 == 0 else ("vllm", "hf")
                for name in order:
                    backend = backends[name]
                    clock = time.perf_counter()
                    backend.load_weights(model)  # what the trainer does after each update
                    timings[name]["sync"].append(time.perf_counter() - clock)
                    result = collect_episodes(
                        pool, spec, backend, tokenizer, tasks, replace(settings, seed=1000 + step)
                    )
                    stats = result.stats
                    timings[name]["wall"].append(stats.time_s)
                    timings[name]["tok/s"].append(stats.tokens_per_s)
                    timings[name]["tokens"].append(stats.generated_tokens)
                    print(
                        f"  step {step + 1} {name:<5} wall {stats.time_s:6.1f} s, "
                        f"{stats.generated_tokens:5d} tokens, {stats.tokens_per_s:6.1f} tok/s, "
                        f"{stats.episodes} episodes, won {stats.won_rate:.2f}",
                        flush=True,
                    )
    finally:
        for backend in backends.values():
            backend.close()
    median = {
        name: {key: statistics.median(values) for key, values in t.items()} for name, t in timings.items()
    }
    run = {name: m["start"] + args.run_steps * (m["wall"] + m["sync"]) for name, m in median.items()}
    run_label = f"{args.run_steps}-step s"
    print(f"{'backend':<8}{'start s':>9}{'sync s':>8}{'rollout s':>11}{'tok/s':>8}{run_label:>12}")
    for name, m in median.items():
        numbers = f"{m['start']:>9.1f}{m['sync']:>8.2f}{m['wall']:>11.1f}{m['tok/s']:>8.1f}{run[name]:>12.0f}"
        print(f"{name:<8}{numbers}")
    print(
        f"vLLM / HF: {median['vllm']['tok/s'] / median['hf']['tok/s']:.2f}x tok/s, "
        f"{median['hf']['wall'] / median['vllm']['wall']:.2f}x faster per rollout, "
        f"{run['hf'] / run['vllm']:.2f}x over a {args.run_steps}-step run with start-up and syncs"
    )


def _factory(games):
    import functools

    return functools.partial(AlfworldEnv, game_dirs=games, plan_cache_dir="")


if __name__ == "__main__":
    main()
