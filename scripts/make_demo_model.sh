#!/usr/bin/env bash
# Train the small demo model shipped in resources/models/ (U-Net, base 8 channels, 256x256, 400 steps,
# about 10 minutes on 2 CPU cores) only on data we may ship: the 13 NIH ChestX-ray14 "No Finding"
# radiographs of ../shared/data/nih-cxr (attribution: resources/README.md), then keep its weights only.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ppii train --config configs/demo_nih_unet.yaml --quiet
mkdir -p resources/models
.venv/bin/python -m napari_ppii.checkpoint runs/demo_nih_unet/best.pt resources/models/nih_unet_demo.pt
