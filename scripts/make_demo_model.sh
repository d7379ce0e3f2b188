#!/usr/bin/env bash
# Train the small demo model shipped in resources/models/ (U-Net, base 16 channels, 256x256, 1,500 steps,
# about 40 minutes on 2 CPU cores) only on data we may ship: the 13 NIH ChestX-ray14 "No Finding"
# radiographs of ../shared/data/nih-cxr (attribution: resources/README.md).  best.pt is chosen on the
# other NIH Nodule/Mass radiographs; the two bundled in resources/nih-cxr are left out of that choice so
# that the demo scores the model on scans it never saw.  Then keep its weights only, as float16 (4 MB).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
NIH=${NIH:-../shared/data/nih-cxr}
[ -f "$NIH/annotations.csv" ] || { echo "make_demo_model: $NIH/annotations.csv not found (the NIH sample set)" >&2; exit 2; }
mkdir -p runs
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
mkdir -p resources/models
.venv/bin/python -m napari_ppii.checkpoint runs/demo_nih_unet/best.pt resources/models/nih_unet_demo.pt --half
ls -l resources/models/nih_unet_demo.pt
