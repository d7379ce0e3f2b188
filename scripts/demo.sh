#!/usr/bin/env bash
# Set up (if needed) and run the main job on the bundled sample data:
#  1. P-PII synthesis on a real NIH chest radiograph (source patches from a second one) -> out/demo/
#  2. napari with the sample scan, its nodule box and the live P-PII preview docked; without a display
#     the same steps run on a virtual display and a screenshot is saved to out/demo/viewer.png.
set -euo pipefail
cd "$(dirname "$0")/.."
PPII_EXTRAS=${PPII_EXTRAS:-napari} bash scripts/setup.sh
S=resources/nih-cxr
.venv/bin/ppii synthesize "$S/00000002_000.png" --source "$S/00000005_000.png" \
  --method ppii --seed 0 --format png --out out/demo
if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
  .venv/bin/ppii view --sample nih "$@"
else
  .venv/bin/ppii view --sample nih --screenshot out/demo/viewer.png "$@"
fi
