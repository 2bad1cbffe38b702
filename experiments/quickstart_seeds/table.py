"""The main job's table over seeds: panel success of the warm start (step 0), at each later evaluation and
after training, per seed and as mean ± population std, with the wall time; then the verdict on the bar
README.md sets (the gain above the spread between seeds).

    python experiments/quickstart_seeds/table.py                       # the committed results/
    python experiments/quickstart_seeds/table.py runs/quickstart-s*    # run directories of run.sh
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def evaluations(run: Path) -> dict[int, dict]:
    """Checkpoint step -> summary.json of each panel evaluation of one run."""
    found = {}
    for path in sorted(run.glob("eval/*/summary.json")):
        summary = json.loads(path.read_text())
        found[int(summary["checkpoint"]["step"])] = summary
    return found


def seed_of(run: Path) -> int:
    return int(json.loads((run / "run_info.json").read_text())["seed"])


def cell(summary: dict) -> str:
    return f"{summary['won']}/{summary['episodes']} ({100 * summary['success_rate']:.1f} %)"


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.pstdev(values)


def main(paths: list[str]) -> int:
    runs = sorted((Path(p) for p in paths), key=seed_of) if paths else sorted(RESULTS.glob("s*"), key=seed_of)
    if not runs:
        print(f"no runs: give run directories, or run run.sh to fill {RESULTS}", file=sys.stderr)
        return 1
    panels = {run: evaluations(run) for run in runs}
    steps = sorted(set.intersection(*(set(found) for found in panels.values())))
    first, last = steps[0], steps[-1]
    labels = ["warm start" if step == 0 else f"step {step}" for step in steps]
    print("| seed | " + " | ".join(labels) + " | last − first | wall time |")
    print("|---:|" + "---:|" * (len(steps) + 2))
    for run in runs:
        found = panels[run]
        gain = found[last]["won"] - found[first]["won"]
        wall = run / "wall_seconds"
        minutes = f"{int(wall.read_text()) / 60:.1f} min" if wall.is_file() else "–"
        cells = " | ".join(cell(found[step]) for step in steps)
        print(f"| {seed_of(run)} | {cells} | {gain:+d} games | {minutes} |")
    rates = {step: [100 * panels[run][step]["success_rate"] for run in runs] for step in steps}
    gains = [after - before for before, after in zip(rates[first], rates[last], strict=True)]
    means = " | ".join("{:.1f} ± {:.1f} %".format(*mean_std(rates[step])) for step in steps)
    print("| mean ± std | {} | {:+.1f} ± {:.1f} points | |".format(means, *mean_std(gains)))

    gain = statistics.fmean(gains)
    spread = max(statistics.pstdev(rates[first]), statistics.pstdev(rates[last]))
    verdict = "above" if gain > spread else "not above"
    print(
        f"\nafter − warm start: {gain:+.1f} points in the mean over {len(runs)} seeds, {verdict} the spread "
        f"between seeds ({spread:.1f} points, the larger population std of the two columns); the gain is "
        f"positive in {sum(g > 0 for g in gains)} of {len(gains)} seeds."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
