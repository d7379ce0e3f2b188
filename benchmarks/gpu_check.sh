#!/usr/bin/env bash
# The prepared GPU check (benchmarks/gpu_check.py): one JSON line.  On a lent GPU machine, from a clone:
#   bash benchmarks/gpu_check.sh            (sets up .venv if needed; keeps a CUDA torch already installed)
#   bash benchmarks/gpu_check.sh --cpu-smoke
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || PPII_EXTRAS=${PPII_EXTRAS:-test} bash scripts/setup.sh >&2
exec timeout 600 .venv/bin/python benchmarks/gpu_check.py "$@"
