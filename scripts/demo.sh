#!/usr/bin/env bash
# Set up (if needed) and run the main job on the bundled sample data: P-PII synthesis on a real NIH
# chest radiograph (source patches from a second one); writes out/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
PPII_EXTRAS=${PPII_EXTRAS:-napari} bash scripts/setup.sh
S=resources/nih-cxr
.venv/bin/ppii synthesize "$S/00000002_000.png" --source "$S/00000005_000.png" \
  --method ppii --seed 0 --format png --out out/demo "$@"
