"""How busy `sdar eval`'s env slots are: what playing in waves costs against refilling slots as episodes end.

    python benchmarks/eval_waves.py EVAL_DIR...      # directories holding summary.json + episodes.jsonl

A model evaluation plays its panel in waves (`play_model`): a chunk of as many tasks as the pool has slots,
every chunk waits for its longest episode, and a slot whose episode ended idles until then. Each batched
decoding step of a wave serves the episodes still active. From the committed episodes this prints, per
evaluation: the batch-steps the waves took (sum over chunks of the longest episode), the episode turns they
served, the share of slot-steps that were busy, the batch-steps a refilling scheduler would have needed for
the same episode lengths (each task, in panel order, to the first slot that frees up: a simulation, not a
run), and the least any scheduler could need (every slot busy until the turns run out, and no fewer than the
longest episode). Episode lengths would not be the same under refilling (an episode's turn seeds would
change), and a batch with fewer active episodes already costs less than a full one, so the time saved is less
than the batch-steps saved: this bounds what refilling could win, it does not measure it.
"""

from __future__ import annotations

import argparse
import heapq
import json
from pathlib import Path

from sdar.evaluation.evaluate import model_slots


def wave_steps(lengths: list[int], slots: int) -> int:
    """Batch-steps of playing `lengths` (episode turns, panel order) in chunks of `slots`."""
    return sum(max(lengths[begin : begin + slots]) for begin in range(0, len(lengths), slots))


def refill_steps(lengths: list[int], slots: int) -> int:
    """Batch-steps when each episode, in panel order, starts on the first slot to free up."""
    free_at = [0] * slots
    for length in lengths:
        heapq.heappush(free_at, heapq.heappop(free_at) + length)
    return max(free_at)


def least_steps(lengths: list[int], slots: int) -> int:
    """No scheduler needs fewer batch-steps: all slots busy throughout, and the longest episode played out."""
    return max(-(-sum(lengths) // slots), max(lengths))


def evaluation_lengths(directory: Path) -> tuple[dict, dict[int, list[int]]]:
    """The evaluation's summary and, per eval seed, its episodes' turn counts in panel order."""
    summary = json.loads((directory / "summary.json").read_text())
    if summary["policy"] != "model":
        raise SystemExit(
            f"{directory}: a {summary['policy']!r} evaluation; only the model policy plays in waves"
        )
    lengths: dict[int, list[int]] = {}
    with open(directory / "episodes.jsonl") as handle:
        for line in handle:
            episode = json.loads(line)
            lengths.setdefault(episode["seed"], []).append(episode["turns"])
    return summary, lengths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("evaluations", nargs="+", type=Path, help="directories with summary.json")
    args = parser.parse_args()
    print(
        "| evaluation | slots | episodes | turns | wave batch-steps | busy | refill (saved) | least (saved) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for directory in args.evaluations:
        summary, lengths = evaluation_lengths(directory)
        rollout = summary["config"]["rollout"]
        slots = model_slots(summary["panel"]["size"], rollout["tasks_per_step"], rollout["group_size"])
        waves = sum(wave_steps(seed_lengths, slots) for seed_lengths in lengths.values())
        refill = sum(refill_steps(seed_lengths, slots) for seed_lengths in lengths.values())
        least = sum(least_steps(seed_lengths, slots) for seed_lengths in lengths.values())
        turns = sum(sum(seed_lengths) for seed_lengths in lengths.values())
        episodes = sum(len(seed_lengths) for seed_lengths in lengths.values())
        print(
            f"| {directory} | {slots} | {episodes} | {turns} | {waves} | {turns / (slots * waves):.0%} | "
            f"{refill} ({1 - refill / waves:.0%}) | {least} ({1 - least / waves:.0%}) |"
        )


if __name__ == "__main__":
    main()
