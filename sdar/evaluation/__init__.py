"""Evaluation on fixed panels (docs/method.md §7): one policy (model, expert, random) over seeds,
per-task-type success.

summary = evaluate(load_config("smoke", ["eval.split=valid"]), output_dir="runs/eval", checkpoint=run_dir)
print_summary(summary)
"""

from sdar.evaluation.evaluate import (
    EpisodeRecord,
    PerEpisodeRandomPolicy,
    evaluate,
    load_trainable_weights,
    print_summary,
    resolve_checkpoint,
    summarize,
)
from sdar.evaluation.panels import TASK_TYPE_LABELS, Panel, build_panel, panel_fingerprint, portable_task_id

__all__ = [
    "TASK_TYPE_LABELS",
    "EpisodeRecord",
    "Panel",
    "PerEpisodeRandomPolicy",
    "build_panel",
    "evaluate",
    "load_trainable_weights",
    "panel_fingerprint",
    "portable_task_id",
    "print_summary",
    "resolve_checkpoint",
    "summarize",
]
