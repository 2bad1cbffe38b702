#!/usr/bin/env bash
# The GPU checks, on a machine with a CUDA GPU and a CUDA build of PyTorch (this script installs nothing):
#   scripts/gpu_check.sh [LOG_DIR]        # default: gpu-check/
# 1. tests/test_gpu.py: bf16 weights and autocast, seeded sampling and scoring on the GPU, SDAR training and a
#    killed-and-resumed run with dropout on the GPU (the training cases need $SEARCHQA_DATA and bm25s);
# 2. the whole test suite with the GPU visible: the trainer, SFT and evaluation pick it up by themselves.
# Each part's output goes to LOG_DIR; the exit status is non-zero when either part failed.
set -uo pipefail
log_dir=${1:-gpu-check}
python=${PYTHON:-python3}
mkdir -p "$log_dir"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
# bm25s uses JAX for its top-k when JAX is installed; JAX's CUDA backend fails to start in pytest-xdist workers.
export JAX_PLATFORMS=${JAX_PLATFORMS:-cpu}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

{
  nvidia-smi -L
  "$python" -c 'import sys, torch, transformers, peft
print("python", sys.version.split()[0], "| torch", torch.__version__, "| cuda", torch.version.cuda,
      "| transformers", transformers.__version__, "| peft", peft.__version__)
print("device:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "NO CUDA DEVICE")'
} 2>&1 | tee "$log_dir/device.txt"

"$python" -m pytest tests/test_gpu.py -v -rs -p no:cacheprovider 2>&1 | tee "$log_dir/test_gpu.txt"
gpu_status=${PIPESTATUS[0]}

parallel=()
if "$python" -c "import xdist" 2>/dev/null; then
  parallel=(-n "${WORKERS:-8}")
fi
"$python" -m pytest tests -q -rs -p no:cacheprovider "${parallel[@]}" 2>&1 | tee "$log_dir/suite.txt"
suite_status=${PIPESTATUS[0]}

echo "tests/test_gpu.py: exit $gpu_status; whole suite: exit $suite_status" | tee -a "$log_dir/device.txt"
[ "$gpu_status" -eq 0 ] && [ "$suite_status" -eq 0 ]
