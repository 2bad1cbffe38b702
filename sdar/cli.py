"""The `sdar` command line. Each subcommand is a thin shell over a library function."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
import warnings
from pathlib import Path

from sdar.config import load_config, preset_names, to_dict
from sdar.errors import ActionableError, ConfigError
from sdar.locking import DirectoryInUse


def _config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config", nargs="?", default=None, help=f"preset ({', '.join(preset_names())}) or YAML"
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. trainer.steps=10"
    )


def cmd_config(args: argparse.Namespace) -> int:
    """Print the fully resolved config (defaults + preset/YAML + overrides) as YAML."""
    import yaml

    config = load_config(args.config, args.overrides)
    print(yaml.safe_dump(to_dict(config), sort_keys=False), end="")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    """Per-GPU memory of training CONFIG on --gpus GPUs of --gpu-memory GiB (docs/plan.md); exit 1 when it
    does not fit, with the reason on stderr."""
    import json

    from rich.console import Console

    from sdar.training.plan import make_plan
    from sdar.training.plan_report import plan_json, render

    if args.config is None:
        raise ConfigError(f"sdar plan needs a CONFIG (a preset: {', '.join(preset_names())}, or a YAML file)")
    config = load_config(args.config, args.overrides)
    plan = make_plan(config, gpus=args.gpus, gpu_memory_gib=args.gpu_memory, margin=args.margin)
    if args.json:
        print(json.dumps(plan_json(plan, args.config), indent=1))
    else:
        render(plan, args.config, Console())
    if not plan.fits:
        print(f"sdar plan: does not fit: {plan.reason()}", file=sys.stderr)
    return 0 if plan.fits else 1


def cmd_chat(args: argparse.Namespace) -> int:
    """Load a model (default: the embedded SmolLM2-135M-Instruct, offline) and answer one chat prompt."""
    from sdar.models import generate_chat, load_model
    from sdar.models.backends import make_backend

    overrides = [f"model.name={args.model}", f"model.dtype={args.dtype}", f"rollout.backend={args.backend}"]
    config = load_config(None, overrides)
    started = time.perf_counter()
    model, tokenizer = load_model(config.model)
    backend = make_backend(config, model, tokenizer)
    try:
        loaded = time.perf_counter()
        reply = generate_chat(backend, tokenizer, args.prompt, max_new_tokens=args.max_new_tokens)
        done = time.perf_counter()
    finally:
        backend.close()
    print(reply)
    print(
        f"[model {config.model.name}: loaded in {loaded - started:.1f} s, replied in {done - loaded:.1f} s]",
        file=sys.stderr,
    )
    return 0


def cmd_envs(args: argparse.Namespace) -> int:
    """List registered environments and whether each can run here."""
    from sdar.envs import ENVS

    if args.config:
        load_config(args.config)  # imports its plugins
    for name, spec in sorted(ENVS.items()):
        problem = spec.check()
        status = "ready" if problem is None else f"not ready: {problem}"
        extra = f" [extra: {spec.requires}]" if spec.requires else ""
        print(f"{name:16s} {spec.description}{extra}\n{'':16s} {status}")
    return 0


def cmd_play(args: argparse.Namespace) -> int:
    """Play one task of an env in the terminal, seeing exactly what the model sees."""
    from sdar.envs import make_env
    from sdar.envs.play import play

    config = load_config(args.config, [f"env.name={args.env}", *args.overrides])
    env = make_env(config.env)
    try:
        task_ids = env.task_ids(args.split or config.env.split)
        if not task_ids:
            raise ConfigError(f"env {args.env!r} has no tasks in split {args.split or config.env.split!r}")
        task_id = task_ids[args.task % len(task_ids)] if args.task_id is None else args.task_id
        play(env, task_id)
    finally:
        env.close()
    return 0


def print_run_summary(run_dir: Path, history: list[dict], evaluations: dict) -> None:
    """The end of `sdar train`: panel success before/after, the training signal, where the run is."""
    if history:
        first, last = history[0], history[-1]
        won_before, won_after = first.get("train/won_rate", 0), last.get("train/won_rate", 0)
        print(f"steps {first['step']}..{last['step']}: train won rate {won_before:.2f} -> {won_after:.2f}")
        ratios = f"final valid action ratio {last.get('train/valid_action_ratio', 0):.2f}"
        if "train/admissible_action_ratio" in last:
            ratios += f", admissible {last['train/admissible_action_ratio']:.2f}"
        print(ratios)
        if "distill/gate_mean" in last:
            gates = [m["distill/gate_mean"] for m in history if "distill/gate_mean" in m]
            gaps = [m["distill/gap_mean"] for m in history if "distill/gap_mean" in m]
            print(
                f"gate mean {gates[0]:.3f} -> {gates[-1]:.3f}, gap mean {gaps[0]:+.3f} -> {gaps[-1]:+.3f}, "
                f"positive-gap ratio {last.get('distill/positive_gap_ratio', 0):.2f}"
            )
    if "before" in evaluations or "after" in evaluations:
        parts = []
        for key, label in (("before", "before training"), ("after", "after")):
            if key in evaluations:
                summary = evaluations[key]
                rate = summary.get("average", {}).get("mean", summary["success_rate"])  # the env's Avg
                parts.append(f"{label} {100 * rate:.1f} %")
        panel = (evaluations.get("after") or evaluations["before"])["panel"]
        print(
            f"panel success on {panel['name']} ({panel['size']} tasks, {panel['fingerprint']}): "
            + ", ".join(parts)
        )
        print(f"per-episode results: {run_dir / 'eval'}")
    print(f"run directory: {run_dir}")


def cmd_train(args: argparse.Namespace) -> int:
    """Train with the configured method (docs/method.md §5), or `--resume DIR` a killed or finished run: the
    work is `sdar.api.train`'s; this prints its summary."""
    from sdar.api import train

    if args.resume:  # every positional is an override of the run's own config
        overrides = args.overrides if args.config is None else [args.config, *args.overrides]
        result = train(None, *overrides, resume=args.resume)
    else:
        result = train(args.config, *args.overrides, output=args.output)
    if result.is_main:
        print_run_summary(result.run_dir, result.history, result.evaluations)
        if result.history:
            from sdar.evaluation.plots import plot_run_success

            curve = plot_run_success(result.run_dir)
            print(f"learning curve: {curve or 'not drawn (pip install matplotlib)'}")
    return 0


def cmd_sft(args: argparse.Namespace) -> int:
    """Supervised warm start on expert demonstrations; saves a merged model directory."""
    from sdar.training.sft import ADAPTER, rebuild_from_adapter, train_sft, warm_start

    if args.config is None:
        raise ConfigError(f"sdar sft needs a CONFIG (a preset: {', '.join(preset_names())}, or a YAML file)")
    config = load_config(args.config, args.overrides)
    directory = Path(args.output) if args.output else warm_start(config)
    if args.output and config.sft.adapter:
        rebuild_from_adapter(config, directory)
    elif args.output:
        summary = train_sft(config, directory)
        print(
            f"sft: loss {summary['loss_first']:.4f} -> {summary['loss_last']:.4f} in {summary['seconds']} s"
        )
    print(f"model directory: {directory} (use it as model.name=...)")
    if (directory / ADAPTER).is_dir():
        print(f"its LoRA adapter: {directory / ADAPTER} (sft.adapter=... rebuilds this warm start anywhere)")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate a policy (model, optionally a checkpoint; expert; random) on a fixed panel over seeds."""
    from rich.console import Console

    from sdar.evaluation import evaluate, print_summary, resolve_checkpoint
    from sdar.evaluation.journal import FINISHED, PARTIAL

    source, overrides = args.config, list(args.overrides)
    if source is not None and "=" in source and not Path(source).exists():  # an override, not a CONFIG
        source, overrides = None, [source, *overrides]
    checkpoint = None if args.checkpoint is None else resolve_checkpoint(args.checkpoint)  # fail fast
    if source is not None:
        config = load_config(source, overrides)
        name = Path(source).stem
    elif checkpoint is not None:  # the run's own config: same model, LoRA and env
        run_config = checkpoint.parent.parent / "config.yaml"
        if not run_config.is_file():
            raise ConfigError(f"--checkpoint {args.checkpoint}: no run config.yaml next to it; give a CONFIG")
        config = load_config(str(run_config), overrides)
        name = run_config.parent.name
    else:
        raise ConfigError(
            f"sdar eval needs a CONFIG (a preset: {', '.join(preset_names())}, or a YAML file) "
            f"or --checkpoint RUN_DIR"
        )
    output = Path(args.output) if args.output else None
    if output is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        output = Path(config.output_dir) / f"eval-{name}-{config.eval.policy}-{stamp}"
    if config.eval.policy == "model":  # the model a run of this config trains from (the cached warm start)
        from sdar.training.sft import with_warm_start

        config = with_warm_start(config)
    console = Console(stderr=True)
    if (output / PARTIAL).is_file():
        print(f"resuming: what {output / PARTIAL} holds is not played again", file=sys.stderr)
    elif not (output / FINISHED).is_file():  # a finished one is refused (Journal)
        print(
            f"evaluating into {output}; if stopped, the same command with --output {output} resumes",
            file=sys.stderr,
        )
    with _warnings_printed("eval"), console.status("evaluating") as status:
        summary = evaluate(config, output_dir=output, checkpoint=args.checkpoint, on_progress=status.update)
    print_summary(summary)
    print(f"results: {output / 'summary.json'}, {output / 'episodes.jsonl'}")
    return 0


@contextlib.contextmanager
def _warnings_printed(command: str):
    """Library warnings (e.g. a torn metrics line that was skipped) as one plain stderr line each."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for warning in caught:
        print(f"sdar {command}: warning: {warning.message}", file=sys.stderr)


def cmd_export(args: argparse.Namespace) -> int:
    """A run's checkpoint as a Hugging Face model folder (merged weights or LoRA adapter, tokenizer, model
    card), optionally pushed to the Hub."""
    from sdar.training.export import export_run

    exported = export_run(
        args.run_dir,
        args.output,
        step=args.step,
        adapter=args.adapter,
        force=args.force,
        push_to_hub=args.push_to_hub,
        private=not args.public,
    )
    kind = "LoRA adapter" if args.adapter else "model"
    print(f"exported the {kind} of {exported.checkpoint} (step {exported.step}) to {exported.folder}")
    if exported.url:
        print(f"pushed to {exported.url}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Table-1-style comparison of runs (mean ± std over seeds, per panel) and learning curves."""
    import shlex

    from sdar.evaluation.report import write_report

    default = Path(args.runs[0]) / "report" if len(args.runs) == 1 else Path("report")
    output = Path(args.output) if args.output else default
    command = "sdar report " + " ".join(shlex.quote(item) for item in args.runs)
    with _warnings_printed("report"):
        written = write_report(args.runs, output, strict=args.strict, command=command)
    print(f"report: {written['markdown']}, {written['html']} ({len(written) - 2} plot(s) in {output})")
    return 0


def cmd_view(args: argparse.Namespace) -> int:
    """A static HTML trajectory viewer of a run's sample episodes (and its evaluation episodes)."""
    from sdar.evaluation.viewer import write_viewer

    with _warnings_printed("view"):
        path, count = write_viewer(
            args.run_dir, args.output, max_episodes=args.max_episodes, gap_scale=args.gap_scale
        )
    print(f"viewer: {path} ({count} episodes); open it in a browser")
    return 0


def cmd_retriever(args: argparse.Namespace) -> int:
    """Search-QA retrieval: assemble the local corpus, or serve a retriever over HTTP (Search-R1 API)."""
    from sdar.envs.search_qa.retriever_commands import build_corpus_command, serve_command
    from sdar.retrieval.server import ServerLimits

    if args.action == "build-corpus":
        build_corpus_command(args.data_dir, args.output)
        return 0
    limits = ServerLimits(
        max_body_bytes=args.max_body_bytes,
        max_queries=args.max_queries,
        max_topk=args.max_topk,
        default_topk=args.topk,
    )
    serve_command(
        data_dir=args.data_dir,
        corpus=args.corpus,
        retriever=args.retriever,
        host=args.host,
        port=args.port,
        limits=limits,
        dense_model=args.dense_model,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sdar", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    config = commands.add_parser("config", help="print the resolved config")
    _config_arguments(config)
    config.set_defaults(run=cmd_config)

    plan = commands.add_parser("plan", help="per-GPU memory of a training config, before renting GPUs")
    _config_arguments(plan)
    plan.add_argument("--gpus", type=int, default=1, help="GPUs, one training process each (default 1)")
    plan.add_argument("--gpu-memory", type=float, default=80.0, help="GiB per GPU (default 80)")
    plan.add_argument("--margin", type=float, default=0.1, help="share of the GPU kept free (default 0.1)")
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.set_defaults(run=cmd_plan)

    chat = commands.add_parser(
        "chat", help="one chat reply from a model (default: embedded SmolLM2, offline)"
    )
    chat.add_argument("prompt", help="the user message")
    chat.add_argument("--model", default="smollm2-135m", help="smollm2-135m | tiny | HF id | local dir")
    chat.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"))
    chat.add_argument("--max-new-tokens", type=int, default=64)
    chat.add_argument("--backend", default="hf", choices=("hf", "vllm"), help="generation backend")
    chat.set_defaults(run=cmd_chat)

    train = commands.add_parser("train", help="train a policy (SDAR or a baseline)")
    _config_arguments(train)
    train.add_argument(
        "--output", default=None, help="run directory (default: output_dir/<config>-<method>-<time>)"
    )
    train.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue the run in RUN_DIR")
    train.set_defaults(run=cmd_train)

    sft = commands.add_parser("sft", help="supervised warm start on expert demonstrations")
    _config_arguments(sft)
    sft.add_argument("--output", default=None, help="model directory (default: the cached warm start)")
    sft.set_defaults(run=cmd_sft)

    evaluation = commands.add_parser("eval", help="evaluate a model, checkpoint, expert or random policy")
    _config_arguments(evaluation)
    evaluation.add_argument(
        "--output",
        default=None,
        help="result directory (default: output_dir/eval-<config>-<policy>-<time>); the same command "
        "with the same --output resumes a killed evaluation",
    )
    evaluation.add_argument(
        "--checkpoint",
        default=None,
        metavar="RUN_DIR_OR_CHECKPOINT",
        help="trained weights: a run directory (its latest checkpoint) or a checkpoint directory",
    )
    evaluation.set_defaults(run=cmd_eval)

    export = commands.add_parser("export", help="write a run's checkpoint as a Hugging Face model folder")
    export.add_argument("run_dir", metavar="RUN", help="a run directory (as sdar train wrote it)")
    export.add_argument("--output", required=True, metavar="DIR", help="the folder to write (new or empty)")
    export.add_argument("--step", type=int, metavar="N", help="the checkpoint of step N (default: latest)")
    export.add_argument("--adapter", action="store_true", help="the LoRA adapter alone (peft), unmerged")
    export.add_argument("--force", action="store_true", help="replace an existing non-empty DIR")
    export.add_argument("--push-to-hub", default=None, metavar="REPO", help="then upload DIR to owner/name")
    export.add_argument("--public", action="store_true", help="create REPO public (default: private)")
    export.set_defaults(run=cmd_export)

    report = commands.add_parser("report", help="compare runs: Table-1-style report and learning curves")
    report.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories and/or sdar eval outputs")
    report.add_argument(
        "--output", default=None, help="report directory (default: RUN_DIR/report for one run, else ./report)"
    )
    report.add_argument(
        "--strict", action="store_true", help="refuse (instead of flag) results measured on different panels"
    )
    report.set_defaults(run=cmd_report)

    view = commands.add_parser("view", help="write a static HTML trajectory viewer of a run")
    view.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (or an sdar eval output)")
    view.add_argument(
        "--output",
        default=None,
        help="HTML file, or a directory for its viewer.html (default: RUN_DIR/viewer.html)",
    )
    view.add_argument(
        "--max-episodes",
        type=int,
        default=400,
        help="at most this many episodes per source (training samples, each evaluation), evenly spread",
    )
    view.add_argument(
        "--gap-scale",
        type=float,
        default=1.0,
        help="the gap |Δ| in nats drawn at full colour (default 1: a token e times more or less likely)",
    )
    view.set_defaults(run=cmd_view)

    retriever = commands.add_parser("retriever", help="Search-QA: build the local corpus, serve a retriever")
    retriever.add_argument("action", choices=("build-corpus", "serve"))
    retriever.add_argument("--data-dir", default=None, help="Search-QA data folder (default: $SEARCHQA_DATA)")
    retriever.add_argument("--output", default=None, help="build-corpus: the JSONL to write")
    retriever.add_argument("--corpus", default=None, help="serve: a FlashRAG JSONL to index instead")
    retriever.add_argument("--retriever", default="bm25", choices=("bm25", "dense"))
    retriever.add_argument("--dense-model", default="", help="sentence-transformers model (default MiniLM)")
    retriever.add_argument("--host", default="127.0.0.1", help="bind address (no authentication: keep local)")
    retriever.add_argument("--port", type=int, default=8000)
    retriever.add_argument("--topk", type=int, default=3, help="topk when a request names none")
    retriever.add_argument("--max-topk", type=int, default=50)
    retriever.add_argument("--max-queries", type=int, default=256, help="queries per request")
    retriever.add_argument("--max-body-bytes", type=int, default=1_000_000)
    retriever.set_defaults(run=cmd_retriever)

    envs = commands.add_parser("envs", help="list the registered environments")
    envs.add_argument("config", nargs="?", help="a config whose plugins to import first (to list theirs)")
    envs.set_defaults(run=cmd_envs)

    play = commands.add_parser("play", help="play a task of an env in the terminal")
    play.add_argument("env", help="env name, e.g. alfworld-gen or alfworld")
    play.add_argument("--split", default=None)
    play.add_argument("--task", type=int, default=0, help="index of the task in the split")
    play.add_argument("--task-id", default=None, help="an explicit task id (overrides --task)")
    play.add_argument("--config", default=None, help="preset or YAML for env settings")
    play.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    play.set_defaults(run=cmd_play)
    return parser


def _exit_on_sigterm(signum, frame) -> None:
    """SIGTERM (kill, SLURM's time limit, a scheduler's preemption) unwinds like Ctrl-C: the trainer's
    `finally` blocks run, so a vLLM engine and env workers stop with the command instead of outliving it."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    if threading.current_thread() is not threading.main_thread():  # signal handlers need the main thread
        return _main(argv)
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return _main(argv)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str] | None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # transformers' per-load "Loading weights" bars would interleave with sdar's own progress display
    # (sdar.models.loading turns them off when it loads a model).
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)  # overrides may follow options: `--output DIR a.b=1`
    unknown = [item for item in extra if item.startswith("-") or "=" not in item]
    if unknown or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(unknown or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    try:
        return args.run(args)
    except (ConfigError, ActionableError, DirectoryInUse, KeyError, FileNotFoundError, ImportError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"sdar {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C
        print(f"sdar {args.command}: interrupted", file=sys.stderr)
        return 130  # 128 + SIGINT, the shell's status for a command Ctrl-C stopped
    except SystemExit as stop:
        if stop.code == 128 + signal.SIGTERM:
            print(f"sdar {args.command}: terminated", file=sys.stderr)
        raise


if __name__ == "__main__":
    raise SystemExit(main())
