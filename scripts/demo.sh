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
# 3. the small pretrained CT model (resources/models/lidc_unet_demo.pt, trained by
#    `bash scripts/make_demo_model.sh` on the normal slices of LIDC-IDRI-0001 only) scored on the bundled
#    24-slice slab around the series' nodule, slices it never saw, beside the non-learned floors.  The last
#    lines (ppii evaluate's summary) say, as measured, whether the strongest detection of the slab, and of
#    each slice through the nodule, lands on the nodule.
M=resources/models/lidc_unet_demo.pt
C=resources/lidc-idri-0001
if [ -f "$M" ]; then
  .venv/bin/ppii evaluate --checkpoint "$M" --data "$C/LIDC-IDRI-0001_slab_fov256.nii.gz" \
    --boxes "$C/LIDC-IDRI-0001_slab_fov256_boxes.csv" --out out/demo/pretrained --n-boot 200 --quiet
fi
