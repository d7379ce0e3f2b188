"""How good are the classical lung masks?  Measured on real scans, no learning.

* JSRT (all 162 images; the test rows only measure, they choose nothing) and NIH (34 images):
  fraction of annotated nodule/mass centres inside the radiograph lung mask, the mask's share of the
  image, and its share of the central band (the mediastinum: middle 16% of columns) and of the bottom
  fifth (abdomen).
* LIDC-IDRI-0001: fraction of the radiologists' nodule box centres inside the CT lung mask, and the
  mask's share of the volume.

Reads ``../shared/data``; says so when absent.  ``--png DIR`` writes overlays.  Last line: JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
SHARED = ROOT.parent / "shared" / "data"

from napari_ppii.anatomy import lung_mask_ct, lung_mask_cxr, mask_coverage  # noqa: E402
from napari_ppii.io import read_boxes, read_scan  # noqa: E402


def _cxr_set(csv_path: Path, labels=None, limit=None, png: Path | None = None):
    rows = list(csv.DictReader(csv_path.open()))
    by_img: dict[str, list] = {}
    for r in rows:
        by_img.setdefault(r["image"], [])
        if r.get("x0") and (labels is None or r["label"] in labels):
            by_img[r["image"]].append(((float(r["y0"]) + float(r["y1"])) / 2, (float(r["x0"]) + float(r["x1"])) / 2))
    inside, area, central, bottom = [], [], [], []
    for i, (img, pts) in enumerate(list(by_img.items())[:limit]):
        a = read_scan(csv_path.parent / img).array
        m = lung_mask_cxr(a)
        h, w = m.shape
        area.append(m.mean())
        central.append(m[:, int(0.42 * w):int(0.58 * w)].mean())
        bottom.append(m[int(0.8 * h):].mean())
        if pts:
            inside.append(mask_coverage(m, pts))
        if png is not None and i < 12:
            _overlay(a, m, pts, png / f"{csv_path.parent.name}_{Path(img).stem}.png")
    return {"images": len(area), "lesions": len(inside), "lesion_centres_inside": float(np.mean(inside)) if inside else None,
            "mask_area": float(np.mean(area)), "mask_share_of_central_band": float(np.mean(central)),
            "mask_share_of_bottom_fifth": float(np.mean(bottom)), "empty_masks": int(sum(a == 0 for a in area))}


def _overlay(a, m, pts, path):
    from skimage.io import imsave
    from skimage.segmentation import find_boundaries

    path.parent.mkdir(parents=True, exist_ok=True)
    g = (a - a.min()) / max(1e-9, a.max() - a.min())
    rgb = np.stack([g, g, g], -1)
    rgb[find_boundaries(m)] = (0, 1, 0)
    for y, x in pts:
        y, x = int(y), int(x)
        rgb[max(0, y - 3):y + 4, max(0, x - 3):x + 4] = (1, 0, 0)
    imsave(path, (rgb * 255).astype(np.uint8), check_contrast=False)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--png", type=Path, default=None)
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args(argv)
    out = {}
    jsrt = SHARED / "jsrt" / "annotations.csv"
    nih = SHARED / "nih-cxr" / "annotations.csv"
    lidcs = {"lidc": (SHARED / "lidc-idri-0001", "069.xml"), "lidc2": (SHARED / "lidc-idri-0002", "071.xml")}
    if jsrt.exists():
        out["jsrt"] = _cxr_set(jsrt, limit=args.limit, png=args.png)
    else:
        print(f"JSRT absent ({jsrt})")
    if nih.exists():
        out["nih"] = _cxr_set(nih, labels={"Nodule", "Mass"}, limit=args.limit, png=args.png)
    else:
        print(f"NIH absent ({nih})")
    for key, (lidc, xml) in lidcs.items():
        if not lidc.exists():
            print(f"LIDC absent ({lidc})")
            continue
        scan = read_scan(lidc / "dicom")
        m = lung_mask_ct(scan.array)
        boxes = [b for b in read_boxes(lidc / xml, scan.slice_positions) if b.ndim == 3]
        cents = [b.centre for b in boxes]
        big = [b.centre for b in boxes if b.label == "nodule>=3mm" or b.properties.get("kind") == "nodule>=3mm"]
        body = scan.array > -500
        out[key] = {"boxes": len(boxes), "box_centres_inside": mask_coverage(m, cents),
                    "nodule_3mm_centres_inside": mask_coverage(m, big) if big else None,
                    "mask_volume_share": float(m.mean()), "mask_share_of_soft_tissue": float((m & body).sum() / max(1, body.sum())),
                    "slices_with_lung": int(m.any((1, 2)).sum()), "slices": int(m.shape[0])}
        if args.png is not None:
            for b in boxes[:: max(1, len(boxes) // 4)][:4]:
                z = int(round(b.centre[0]))
                _overlay(scan.array[z].astype(np.float32).clip(-1000, 400), m[z], [b.centre[1:]],
                         args.png / f"{lidc.name}_z{z}.png")
    for k, v in out.items():
        print(k, v)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
