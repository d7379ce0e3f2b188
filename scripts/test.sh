#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite on the CPU, headless (pytest-xvfb starts Xvfb).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CUDA_VISIBLE_DEVICES=""
exec .venv/bin/python -m pytest "$@"
