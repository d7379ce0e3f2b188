# SPDX-License-Identifier: BSD-3-Clause
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
        central.append(m[:, int(0.42 * w) : int(0.58 * w)].mean())
        bottom.append(m[int(0.8 * h) :].mean())
        if pts:
            inside.append(mask_coverage(m, pts))
        if png is not None and i < 12:
            _overlay(a, m, pts, png / f"{csv_path.parent.name}_{Path(img).stem}.png")
    return {
        "images": len(area),
        "lesions": len(inside),
        "lesion_centres_inside": float(np.mean(inside)) if inside else None,
        "mask_area": float(np.mean(area)),
        "mask_share_of_central_band": float(np.mean(central)),
        "mask_share_of_bottom_fifth": float(np.mean(bottom)),
        "empty_masks": int(sum(a == 0 for a in area)),
    }


def _overlay(a, m, pts, path):
    from skimage.io import imsave
    from skimage.segmentation import find_boundaries

    path.parent.mkdir(parents=True, exist_ok=True)
    g = (a - a.min()) / max(1e-9, a.max() - a.min())
    rgb = np.stack([g, g, g], -1)
    rgb[find_boundaries(m)] = (0, 1, 0)
    for y, x in pts:
        y, x = int(y), int(x)
        rgb[max(0, y - 3) : y + 4, max(0, x - 3) : x + 4] = (1, 0, 0)
    imsave(path, (rgb * 255).astype(np.uint8), check_contrast=False)


def worst_cases_figure(path: Path, n: int = 4) -> None:
    """NIH lesions farthest outside the mask (then those the dark field alone missed) and LIDC-IDRI-0001's
    nodule slice: the mask (green) beside the dark field / threshold mask alone (blue), the lesion box in
    red.  Only shippable data (NIH, LIDC): no JSRT image goes into the figure."""
    from scipy import ndimage as ndi
    from skimage.io import imsave
    from skimage.segmentation import find_boundaries
    from skimage.transform import resize

    def tile(g, m, m0, boxes):
        g = resize(g, (256, 256))
        rgb = np.stack([g] * 3, -1)
        rgb[find_boundaries(resize(m0.astype(float), (256, 256)) >= 0.5)] = (0, 0.5, 1)
        rgb[find_boundaries(resize(m.astype(float), (256, 256)) >= 0.5)] = (0, 1, 0)
        for y0, x0, y1, x1 in boxes:
            y0, x0, y1, x1 = (int(np.clip(v, 0, 255)) for v in (y0, x0, y1, x1))
            rgb[y0 : y1 + 1, [x0, x1]] = (1, 0, 0)
            rgb[[y0, y1], x0 : x1 + 1] = (1, 0, 0)
        return rgb

    nih = SHARED / "nih-cxr" / "annotations.csv"
    rows = []
    for r in csv.DictReader(nih.open()):
        if r["label"] not in ("Nodule", "Mass"):
            continue
        a = read_scan(nih.parent / r["image"]).array.astype(np.float32)
        a = a[..., :3].mean(-1) if a.ndim == 3 else a
        m, m0 = lung_mask_cxr(a), lung_mask_cxr(a, symmetric=False)
        y, x = (float(r["y0"]) + float(r["y1"])) / 2, (float(r["x0"]) + float(r["x1"])) / 2
        rows.append((-ndi.distance_transform_edt(~m)[int(y), int(x)], bool(m0[int(y), int(x)]), r, a, m, m0))
    rows.sort(key=lambda t: (t[0], t[1]))
    tiles = []
    for _, _, r, a, m, m0 in rows[:n]:
        s = 256 / a.shape[0]
        tiles.append(
            tile((a - a.min()) / (a.max() - a.min()), m, m0, [[float(r[k]) * s for k in ("y0", "x0", "y1", "x1")]])
        )
    lidc = SHARED / "lidc-idri-0001"
    if lidc.exists():
        scan = read_scan(lidc / "dicom")
        m, m0 = lung_mask_ct(scan.array), lung_mask_ct(scan.array, envelope=False)
        big = [
            b for b in read_boxes(lidc / "069.xml", scan.slice_positions) if b.ndim == 3 and b.label == "nodule>=3mm"
        ]
        z = int(round(big[0].centre[0])) if big else scan.shape[0] // 2
        s = 256 / scan.shape[1]
        bx = [[v * s for v in (*b.lo[1:], *b.hi[1:])] for b in big[:1]]
        tiles.append(tile((scan.array[z].clip(-1000, 400) + 1000) / 1400.0, m[z], m0[z], bx))
    path.parent.mkdir(parents=True, exist_ok=True)
    imsave(path, (np.concatenate(tiles, 1) * 255).astype(np.uint8), check_contrast=False)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--png", type=Path, default=None)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--figure", type=Path, default=None, help="write the worst cases (NIH, LIDC) as one PNG")
    args = ap.parse_args(argv)
    if args.figure is not None and (SHARED / "nih-cxr").exists():
        worst_cases_figure(args.figure)
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
        out[key] = {
            "boxes": len(boxes),
            "box_centres_inside": mask_coverage(m, cents),
            "nodule_3mm_centres_inside": mask_coverage(m, big) if big else None,
            "mask_volume_share": float(m.mean()),
            "mask_share_of_soft_tissue": float((m & body).sum() / max(1, body.sum())),
            "slices_with_lung": int(m.any((1, 2)).sum()),
            "slices": int(m.shape[0]),
        }
        if args.png is not None:
            for b in boxes[:: max(1, len(boxes) // 4)][:4]:
                z = int(round(b.centre[0]))
                _overlay(
                    scan.array[z].astype(np.float32).clip(-1000, 400),
                    m[z],
                    [b.centre[1:]],
                    args.png / f"{lidc.name}_z{z}.png",
                )
    for k, v in out.items():
        print(k, v)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
