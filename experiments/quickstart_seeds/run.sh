#!/bin/bash
# The main job over 3 seeds, each from an empty cache (README.md): run from the repository root.
#   bash experiments/quickstart_seeds/run.sh [SEED...]        # default: 0 1 2, one after the other
# Each seed: `sdar train quickstart seed=S` into runs/quickstart-sS with a fresh SDAR_CACHE (so the time
# includes converting the embedded model and training the warm start), its wall time in
# runs/quickstart-sS/wall_seconds, then its light files (config, metrics, panels, run_info, the curve)
# copied into experiments/quickstart_seeds/results/sS (with the panels' episodes). table.py reads them.
set -euo pipefail
here=experiments/quickstart_seeds
sdar=${SDAR:-.venv/bin/sdar}
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(0 1 2)
for s in "${seeds[@]}"; do
  run=runs/quickstart-s$s
  cache=$(mktemp -d)
  start=$(date +%s)
  HF_HUB_OFFLINE=1 SDAR_CACHE=$cache "$sdar" train quickstart "seed=$s" --output "$run"
  echo $(( $(date +%s) - start )) > "$run/wall_seconds"
  rm -rf "$cache"
  out=$here/results/s$s
  mkdir -p "$out"
  cp "$run"/{config.yaml,metrics.jsonl,run_info.json,wall_seconds,curve_success.png} "$out"/
  for evaluation in "$run"/eval/*/; do
    mkdir -p "$out/eval/$(basename "$evaluation")"
    cp "$evaluation"/{summary.json,episodes.jsonl} "$out/eval/$(basename "$evaluation")/"
  done
done
