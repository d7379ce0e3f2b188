#!/usr/bin/env bash
# Train the small demo model shipped in resources/models/ only on data we may ship, then keep its weights
# only, as float16 (about 4 MB).
#
#   bash scripts/make_demo_model.sh        # the shipped CT model, resources/models/lidc_unet_demo.pt:
#       U-Net base 16, 256x256, 1,200 steps (about an hour on 2 CPU cores), configs/demo_lidc_unet.yaml:
#       the normal slices of the LIDC-IDRI-0001 series (CC BY 3.0; attribution: resources/README.md), every
#       slice more than 9 slices from an annotated nodule, so the 24 slices of the bundled slab (series
#       z 78-101) are never trained on; best.pt by label-free selection on a held-out anomaly type (FPI).
#   MODEL=nih bash scripts/make_demo_model.sh   # the radiograph experiment, not shipped (benchmarks/README.md):
#       configs/demo_nih_unet.yaml on the 13 NIH "No Finding" radiographs, best.pt chosen on the NIH
#       Nodule/Mass radiographs except the two bundled in resources/nih-cxr.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
MODEL=${MODEL:-lidc}
mkdir -p runs resources/models
if [ "$MODEL" = lidc ]; then
  LIDC=../shared/data/lidc-idri-0001
  [ -f "$LIDC/069.xml" ] || { echo "make_demo_model: $LIDC (the LIDC-IDRI-0001 series and its XML) not found" >&2; exit 2; }
  .venv/bin/ppii train --config configs/demo_lidc_unet.yaml --quiet "$@"
  .venv/bin/python -m napari_ppii.checkpoint runs/demo_lidc_unet/best.pt resources/models/lidc_unet_demo.pt --half
  ls -l resources/models/lidc_unet_demo.pt
  exit 0
fi
NIH=${NIH:-../shared/data/nih-cxr}
[ -f "$NIH/annotations.csv" ] || { echo "make_demo_model: $NIH/annotations.csv not found (the NIH sample set)" >&2; exit 2; }
.venv/bin/python - "$NIH/annotations.csv" resources/nih-cxr/annotations.csv runs/demo_reference.csv <<'PY'
import csv, sys
from pathlib import Path
src, bundled, out = map(Path, sys.argv[1:])
held = {Path(r["image"]).name for r in csv.DictReader(bundled.open()) if r["label"] != "normal"}
rows = [r for r in csv.DictReader(src.open()) if Path(r["image"]).name not in held]
for r in rows:
    r["image"] = str((src.parent / r["image"]).resolve())
with out.open("w", newline="") as fh:
    w = csv.DictWriter(fh, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
print(f"reference set: {sum(r['label'] != 'normal' for r in rows)} lesion rows, {len(held)} bundled radiographs left out")
PY
.venv/bin/ppii train --config configs/demo_nih_unet.yaml --quiet "$@"
.venv/bin/python -m napari_ppii.checkpoint runs/demo_nih_unet/best.pt runs/demo_nih_unet/nih_unet_demo.pt --half
ls -l runs/demo_nih_unet/nih_unet_demo.pt
