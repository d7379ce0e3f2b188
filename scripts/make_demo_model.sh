#!/usr/bin/env bash
# Train the pretrained models shipped in resources/models/ only on data we may ship, then keep their weights
# only, as float16 (about 4 MB per model), with their provenance.  The runs use the CPU's bf16 path (where the
# CPU has native bf16) and one thread each, so the CT run and the radiograph runs fit side by side on 2 cores
# (the CT run about 80 minutes, the two radiograph seeds about 80 minutes each, one after the other).
#
#   bash scripts/make_demo_model.sh            # both, side by side
#   MODEL=lidc bash scripts/make_demo_model.sh # the CT model, resources/models/lidc_unet_demo.pt:
#       configs/lidc2_ppii_unet.yaml, U-Net base 16, 256x256, 4,000 steps, on the normal slices of both LIDC
#       patients (CC BY 3.0; attribution: resources/README.md): every slice more than 9 slices from an
#       annotated lesion, so the 24 slices of the bundled slab (LIDC-IDRI-0001 z 78-101) and LIDC-IDRI-0002's
#       nodule slices (z 171-198) are never trained on, and of those only the slices that cross the lungs
#       (data.min_mask_share 0.02); best.pt by label-free held-out-anomaly (FPI) Dice; the shipped weights are
#       the kept step with the best synthetic validation Dice (STEP=3500; benchmarks/README.md). The shipped CT
#       model's stack was built before lung_mask_ct left the airways out, so a stack built now differs from it
#       in the trachea's slices of the masks (its provenance says so); a rerun is another draw in that too.
#   MODEL=nih bash scripts/make_demo_model.sh  # the radiograph model, resources/models/nih_unet_demo.pt:
#       configs/nih_ppii_unet.yaml on the 72 PA "No Finding" NIH radiographs, 4,000 steps, seeds 0 and 1 one
#       after the other; each seed's best.pt by pixel AUROC on the NIH Nodule/Mass radiographs except the two
#       bundled in resources/nih-cxr; shipped as an ensemble file naming both members' files beside it
#       (nih_unet_demo_member0/1.pt, 3.9 MB each; benchmarks/README.md).
#   STEP=...: ship that kept step_*.pt of the CT run instead of its best.pt (the choice and why: benchmarks/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
MODEL=${MODEL:-both}
mkdir -p runs resources/models
PY=.venv/bin/python

lidc() {
  local L1=../shared/data/lidc-idri-0001 L2=../shared/data/lidc-idri-0002
  for f in "$L1/069.xml" "$L2/071.xml"; do
    [ -f "$f" ] || { echo "make_demo_model: $f (an LIDC series' XML) not found" >&2; return 2; }
  done
  [ -f runs/ct2/lidc_normals_images.npy ] || $PY scripts/build_ct_stack.py configs/demo_lidc_unet.yaml runs/ct2/lidc_normals \
      "$L1/dicom:$L1/069.xml" "$L2/dicom:$L2/071.xml"
  local run=runs/lidc2_ppii_unet resume=()
  [ -f "$run/last.pt" ] && resume=(--resume "$run/last.pt")
  .venv/bin/ppii train --config configs/lidc2_ppii_unet.yaml --quiet "${resume[@]}"
  local ck="$run/${STEP:+step_$(printf %07d "$STEP").pt}"; [ -n "${STEP:-}" ] || ck="$run/best.pt"
  $PY - "$ck" runs/ct2/lidc_normals_sources.json runs/ct2/lidc_normals_masks.npy runs/ct2/provenance.json <<'PY'
import json, sys
import numpy as np
from napari_ppii.checkpoint import load_checkpoint
from napari_ppii.training.data import with_room
ck, src, masks, out = sys.argv[1:]
c = load_checkpoint(ck)
share = c["config"]["data"].get("min_mask_share", 0.0)
keep = with_room(np.load(masks), share)  # the slices the trainer kept, by its own rule
sources, i = [], 0
for s in json.load(open(src)):
    sl = [z for j, z in enumerate(s["slices"]) if keep[i + j]]
    i += s["n_slices"]
    sources.append({**s, "slices": sl, "n_slices": len(sl)})
json.dump({"data": "normal slices of the LIDC-IDRI series below (lesion margin 9 slices) whose lung mask covers at least "
           f"{share:.0%} of the slice, built by scripts/build_ct_stack.py",
           "sources": sources, "selection": c["config"]["training"]["select"], "step": c["step"]},
          open(out, "w"))
PY
  $PY -m napari_ppii.checkpoint "$ck" resources/models/lidc_unet_demo.pt --half --provenance runs/ct2/provenance.json
}

nih() {
  local NIH=${NIH:-../shared/data/nih-cxr}
  [ -f "$NIH/annotations.csv" ] || { echo "make_demo_model: $NIH/annotations.csv not found (the NIH sample set)" >&2; return 2; }
  $PY - "$NIH/annotations.csv" resources/nih-cxr/annotations.csv runs/demo_reference.csv runs/nih_pa_normals.csv <<'PY'
import csv, sys
from pathlib import Path
src, bundled, ref, normals = map(Path, sys.argv[1:])
held = {Path(r["image"]).name for r in csv.DictReader(bundled.open()) if r["label"] != "normal"}
rows = [r for r in csv.DictReader(src.open()) if Path(r["image"]).name not in held]
for r in rows:
    r["image"] = str((src.parent / r["image"]).resolve())
with ref.open("w", newline="") as fh:
    w = csv.DictWriter(fh, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
pa = [r for r in rows if r["label"] == "normal" and r["view_position"] == "PA"]
with normals.open("w", newline="") as fh:
    w = csv.writer(fh)
    w.writerow(["image", "label", "view_position"])
    w.writerows([[r["image"], "normal", "PA"] for r in pa])
print(f"reference set: {sum(r['label'] != 'normal' for r in rows)} lesion rows ({len(held)} bundled radiographs left out); "
      f"{len(pa)} PA normals to train on")
PY
  # two seeds of one configuration, each its own best.pt by the NIH reference rule, shipped as one ensemble file
  local cks=()
  for seed in 0 1; do
    local run=runs/nih_ppii_unet resume=()
    [ "$seed" = 0 ] || run=runs/nih_ppii_unet_seed$seed
    [ -f "$run/last.pt" ] && resume=(--resume "$run/last.pt")
    .venv/bin/ppii train --config configs/nih_ppii_unet.yaml --set seed=$seed --set training.out_dir=$run --quiet "${resume[@]}"
    cks+=("$run/best.pt")
  done
  $PY - "${cks[@]}" runs/nih_pa_normals.csv runs/nih_provenance.json <<'PY'
import csv, json, sys
from pathlib import Path
from napari_ppii.checkpoint import load_checkpoint
*cks, normals, out = sys.argv[1:]
c = [load_checkpoint(ck) for ck in cks]
json.dump({"data": "NIH ChestX-ray14 'No Finding' PA radiographs (../shared/data/nih-cxr)",
           "train_images": [Path(r["image"]).name for r in csv.DictReader(open(normals))],
           "selection": c[0]["config"]["training"]["select"], "step": c[0]["step"],
           "ensemble": "two seeds of configs/nih_ppii_unet.yaml, maps averaged (benchmarks/README.md)",
           "members": [{"run": str(Path(ck).parent), "seed": x["config"]["seed"], "step": x["step"]} for ck, x in zip(cks, c)]},
          open(out, "w"))
PY
  $PY -m napari_ppii.checkpoint "${cks[@]}" resources/models/nih_unet_demo.pt --half --provenance runs/nih_provenance.json
}

case "$MODEL" in
  lidc) lidc ;;
  nih) nih ;;
  both) lidc & p1=$!; nih & p2=$!; wait $p1; wait $p2 ;;
  *) echo "make_demo_model: MODEL must be lidc, nih or both" >&2; exit 2 ;;
esac
ls -l resources/models/
