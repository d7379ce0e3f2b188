#!/usr/bin/env bash
# Set up (if needed) and run the main job on the bundled sample data, the whole loop:
#  1. `ppii synthesize`: P-PII on a real NIH chest radiograph (patches from a second one) -> out/demo/
#  2. `ppii view --demo`: napari with the NIH sample -> live P-PII preview -> brief training in a
#     subprocess on the four normal radiographs -> anomaly map over the radiograph with its nodule box.
#     With a display the viewer stays open; without one the same steps run on a virtual display and
#     out/demo/{1_preview,2_training,3_prediction}.png are saved.
set -euo pipefail
cd "$(dirname "$0")/.."
PPII_EXTRAS=${PPII_EXTRAS:-napari} bash scripts/setup.sh
S=resources/nih-cxr
.venv/bin/ppii synthesize "$S/00000002_000.png" --source "$S/00000005_000.png" \
  --method ppii --seed 0 --format png --out out/demo
.venv/bin/ppii view --demo --out out/demo "$@"
# 3. the small pretrained model (resources/models/nih_unet_demo.pt, trained by
#    `bash scripts/make_demo_model.sh` on NIH normals only) scored on the two bundled radiographs with a
#    nodule, which it never saw, beside the non-learned floors: the last lines say whether each image's
#    strongest detection lands on its nodule.
M=resources/models/nih_unet_demo.pt
if [ -f "$M" ]; then
  .venv/bin/ppii evaluate --checkpoint "$M" --data "$S/annotations.csv" --train-data "$S/annotations.csv" \
    --out out/demo/pretrained --n-boot 200 --quiet
fi
