#!/usr/bin/env bash
# Set up (if needed) and run the main job on the bundled sample data, the whole loop:
#  1. `ppii synthesize`: P-PII on a real NIH chest radiograph (patches from a second one) -> out/demo/
#  2. `ppii view --demo`: napari with the NIH sample -> live P-PII preview -> brief training in a
#     subprocess on the four normal radiographs -> anomaly map over the radiograph with its nodule box.
#     With a display the viewer stays open; without one the same steps run on a virtual display and
#     out/demo/{1_preview,2_training,3_prediction}.png are saved.  The 150-step training shows the mechanism;
#     its map is no detector (the pretrained models below are measured).
set -euo pipefail
cd "$(dirname "$0")/.."
PPII_EXTRAS=${PPII_EXTRAS:-napari} bash scripts/setup.sh
S=resources/nih-cxr
.venv/bin/ppii synthesize "$S/00000002_000.png" --source "$S/00000005_000.png" \
  --method ppii --seed 0 --format png --out out/demo
.venv/bin/ppii view --demo --out out/demo "$@"
# 3. the pretrained models (resources/models/, trained by `bash scripts/make_demo_model.sh` only on data we
#    may ship) on scans they never saw, scored beside the non-learned floors with the default lung prior
#    (the raw map's figures are printed beside it).  The last lines of each (ppii evaluate's summary) say,
#    as measured, where the strongest detections land:
#    - the radiograph model (two seeds trained on 72 NIH normal PA radiographs, as one ensemble) on the two
#      bundled NIH radiographs with a nodule;
#    - the CT model (normal slices of both LIDC patients) on the bundled 24-slice LIDC-IDRI-0001 slab.
C=resources/lidc-idri-0001
N=resources/nih-cxr
if [ -f resources/models/nih_unet_demo.pt ]; then
  echo "== pretrained radiograph model on the two bundled NIH radiographs with a nodule (never trained on) =="
  .venv/bin/ppii evaluate --checkpoint resources/models/nih_unet_demo.pt --data "$N/annotations.csv" \
    --labels Nodule,Mass --out out/demo/pretrained_nih --n-boot 200 --quiet
fi
if [ -f resources/models/lidc_unet_demo.pt ]; then
  echo "== pretrained CT model on the LIDC-IDRI-0001 slab (slices never trained on) =="
  .venv/bin/ppii evaluate --checkpoint resources/models/lidc_unet_demo.pt --data "$C/LIDC-IDRI-0001_slab_fov256.nii.gz" \
    --boxes "$C/LIDC-IDRI-0001_slab_fov256_boxes.csv" --out out/demo/pretrained --n-boot 200 --quiet
fi
