# SPDX-License-Identifier: BSD-3-Clause
"""The long CPU runs of issue 23: every kept checkpoint of a run scored on real lesions, raw and
prior-weighted, beside the non-learned floors; which checkpoint each selection rule picks.

    python benchmarks/long_runs.py nih  [--run runs/nih_ppii_unet]    # radiograph model (NIH normals)
    python benchmarks/long_runs.py ct   [--run runs/lidc2_ppii_unet]  # CT model (both LIDC patients)

Sets (read from ../shared/data and resources/; a missing one is said and skipped):

* nih: ``NIH ref`` -- the NIH Nodule/Mass radiographs except the two bundled ones (the selection set;
  figures on it are not independent for the reference rule); ``NIH bundled`` -- the two bundled
  radiographs with a nodule (never trained on, never chose anything); ``JSRT test`` -- the JSRT test rows
  (measure only; nothing here is chosen on them).
* ct: ``LIDC-0001 slab`` -- the bundled 24-slice slab around LIDC-IDRI-0001's nodule (never trained on);
  ``LIDC-0002`` -- the whole LIDC-IDRI-0002 series with its XML (its nodule slices were never trained on).

Rows: each ``step_*.pt``, ``best.pt`` (the run's ``training.select``) and ``swa`` -- the mean of the weights
of the last three kept checkpoints.  For each: pixel AUROC, FROC@10FP and how often the strongest
detection lands on the lesion, for the raw map and for the map x soft lung prior (napari_ppii.prior
defaults), and the run's own validation scores at that step (synthetic Dice, held-out / reference score).
Writes ``out/long_runs/<kind>.md`` and ``.json``; last line: the JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _realdata import ROOT, SHARED, write_outputs  # noqa: E402

from napari_ppii.evaluation import EvalOptions, evaluate, load_csv_test_set, load_volume_test_set  # noqa: E402
from napari_ppii.evaluation.summary import fmt_ci  # noqa: E402
from napari_ppii.io import read_boxes, read_scan  # noqa: E402
from napari_ppii.predict import Predictor  # noqa: E402
from napari_ppii.prior import PriorSettings  # noqa: E402
from napari_ppii.tta import TTA_KINDS  # noqa: E402
from napari_ppii.training import load_checkpoint, read_log  # noqa: E402

#: the prior every trajectory here was scored with: lungs, sigma 0.03, floor 0.1 for radiographs and CT alike
#: (before CT got its own default in the eighth session), so that a run's checkpoints stay comparable
PRIOR = PriorSettings("lungs", 0.03, 0.1)


def _nih_sets() -> dict:
    nih = SHARED / "nih-cxr" / "annotations.csv"
    sets = {}
    bundled = {
        r["image"]
        for r in csv.DictReader((ROOT / "resources" / "nih-cxr" / "annotations.csv").open())
        if r["label"] != "normal"
    }
    if nih.exists():
        items = load_csv_test_set(nih, labels=["Nodule", "Mass"], split="all")
        sets["NIH ref"] = [it for it in items if it.positive and Path(it.path).name not in bundled]
    else:
        print(f"NIH data absent ({nih})")
    res = ROOT / "resources" / "nih-cxr" / "annotations.csv"
    sets["NIH bundled"] = [it for it in load_csv_test_set(res, labels=["Nodule", "Mass"]) if it.positive]
    jsrt = SHARED / "jsrt" / "annotations.csv"
    if jsrt.exists():
        sets["JSRT test"] = load_csv_test_set(jsrt)
    else:
        print(f"JSRT data absent ({jsrt})")
    return sets


def _ct_sets() -> dict:
    sets = {}
    c = ROOT / "resources" / "lidc-idri-0001"
    from napari_ppii.evaluation.evaluate import TestItem

    scan = read_scan(c / "LIDC-IDRI-0001_slab_fov256.nii.gz")
    boxes = [b for b in read_boxes(c / "LIDC-IDRI-0001_slab_fov256_boxes.csv") if b.ndim == 3]
    from napari_ppii.evaluation.evaluate import merge_overlapping

    sets["LIDC-0001 slab"] = [TestItem("LIDC-IDRI-0001 slab", c, merge_overlapping(boxes, "nodule"), scan)]
    l2 = SHARED / "lidc-idri-0002"
    if l2.exists():
        sets["LIDC-0002"] = load_volume_test_set(l2 / "dicom", l2 / "071.xml")
    else:
        print(f"LIDC-IDRI-0002 absent ({l2})")
    return sets


def _swa(paths: list[Path], out: Path) -> Path:
    cks = [load_checkpoint(p) for p in paths]
    avg = dict(cks[-1])
    avg["model"] = {
        k: (torch.stack([c["model"][k].float() for c in cks]).mean(0).to(v.dtype) if v.is_floating_point() else v)
        for k, v in cks[-1]["model"].items()
    }
    torch.save(avg, out)
    return out


def _row(ev_metrics: dict) -> dict:
    m = ev_metrics
    out = {
        "prior": {
            k: m[k] for k in ("pixel_auroc", "pixel_auroc_ci", "froc_at_10fp", "froc_at_10fp_ci", "top1_hits") if k in m
        }
    }
    flat = m.get("per_slice", m)
    out["prior"]["top1_hits"] = flat["top1_hits"]
    r = m.get("raw", {})
    out["raw"] = {
        k: r[k] for k in ("pixel_auroc", "pixel_auroc_ci", "froc_at_10fp", "froc_at_10fp_ci", "top1_hits") if k in r
    }
    if "per_lesion_3d" in m:
        out["volume_top1"] = m["per_lesion_3d"]["top1_hits"]
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["nih", "ct"])
    ap.add_argument("--run", type=Path)
    ap.add_argument("--n-boot", type=int, default=200)
    ap.add_argument("--every", type=int, default=1, help="score every Nth kept checkpoint")
    ap.add_argument("--only", nargs="*", help="checkpoint file names to score (default: all kept + best + swa)")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "long_runs")
    ap.add_argument(
        "--cache",
        action="store_true",
        help="keep each checkpoint's figures in OUT/cache-<run>/ and reuse them (score a run's checkpoints while it "
        "trains, the rest later; a checkpoint file that changed is scored again)",
    )
    ap.add_argument(
        "--detect-scale",
        type=float,
        default=0.0,
        help="the evaluation's detection scale (default 0: candidates from the raw map's peaks, as every trajectory "
        "before the default became 0.01, so that a run's checkpoints stay comparable)",
    )
    ap.add_argument(
        "--tta",
        choices=list(TTA_KINDS),
        default="none",
        help="test-time augmentation (default none, as every trajectory before mirror became the "
        "default, so that a run's checkpoints stay comparable)",
    )
    ap.add_argument(
        "--ensemble",
        nargs="+",
        type=Path,
        help="score these checkpoints as one ensemble (maps averaged; one row named 'ensemble') instead of the run's",
    )
    args = ap.parse_args(argv)
    if args.ensemble and not args.run:
        ap.error("--ensemble needs --run (the run whose log and folder name the row and its cache)")
    run = args.run or ROOT / "runs" / ("nih_ppii_unet" if args.kind == "nih" else "lidc2_ppii_unet")
    kept = sorted(run.glob("step_*.pt"))
    if not kept:
        res = {"skipped": f"no kept checkpoints in {run}"}
        print(json.dumps(res))
        return res
    sets = _nih_sets() if args.kind == "nih" else _ct_sets()
    for items in sets.values():
        for it in items:
            if it.scan is None:
                it.scan = read_scan(it.path)
    log = read_log(run / "log.jsonl")
    vals = {r["step"]: r for r in log if r["event"] == "val"}
    cands = kept[:: args.every]
    if kept[-1] not in cands:
        cands.append(kept[-1])
    tmp = Path(tempfile.mkdtemp())
    named = [(p.stem, p) for p in cands]
    if (run / "best.pt").exists():
        named.append(("best", run / "best.pt"))
    if len(kept) >= 3:
        named.append(("swa (last 3 kept)", _swa(kept[-3:], tmp / "swa.pt")))
    if args.only:
        named = [(n, p) for n, p in named if n in args.only or p.name in args.only]
    if args.ensemble:
        named = [("ensemble", list(args.ensemble))]
    opts = EvalOptions(n_boot=args.n_boot, prior=PRIOR, detect_scale=args.detect_scale)
    results: dict = {
        "run": str(run),
        "prior": PRIOR.to_dict(),
        "detect_scale": args.detect_scale,
        "rows": {},
        "floors": {},
    }
    cache = args.out / f"cache-{run.name}" if args.cache else None
    for name, path in named:
        # SWA: the kept checkpoints it averages; an ensemble: its members
        src = kept[-3:] if name.startswith("swa") else path if isinstance(path, list) else [path]
        key = ";".join(f"{q.name}-{q.stat().st_size}-{int(q.stat().st_mtime)}" for q in src)
        if args.detect_scale:
            key += f";detect_scale={args.detect_scale:g}"
        if args.tta != "none":
            key += f";tta={args.tta}"
        # one file per checkpoint, detection scale and TTA: scoring another way keeps the first one's figures
        tag = (f"@{args.detect_scale:g}" if args.detect_scale else "") + (f"+{args.tta}" if args.tta != "none" else "")
        hit = cache / f"{name}{tag}.json" if cache is not None else None
        if hit is not None and hit.exists():
            stored = json.loads(hit.read_text())
            if stored["key"] == key and set(stored["floors"]) >= set(sets):
                results["rows"][name] = stored["row"]
                for sname in sets:
                    results["floors"].setdefault(sname, stored["floors"][sname])
                print(f"{name}: figures from {hit}", flush=True)
                continue
        pred = Predictor(path, tta=args.tta)
        v = vals.get(pred.step, {}) if name != "ensemble" else {}
        row = {
            "step": pred.step if len(pred.steps) == 1 else pred.steps,
            "val_dice": v.get("val_dice"),
            "select": v.get("select"),
            "select_score": v.get("select_score") if name != "swa (last 3 kept)" else None,
        }
        for sname, items in sets.items():
            first = sname not in results["floors"]
            ev = evaluate(pred, items, opts, floors=["lung_field", "blob", "darkness"] if first else False)
            if first:
                results["floors"][sname] = ev.metrics["floors"]
            row[sname] = _row(ev.metrics)
            print(
                f"{name} (step {pred.step}) {sname}: raw {fmt_ci(ev.metrics.get('raw', {}), 'pixel_auroc')} / "
                f"prior {fmt_ci(ev.metrics, 'pixel_auroc')} pixel AUROC, top-1 {row[sname]['prior']['top1_hits']} "
                f"(raw {row[sname]['raw'].get('top1_hits')})",
                flush=True,
            )
        results["rows"][name] = row
        if hit is not None:
            floors = {sname: results["floors"][sname] for sname in sets}
            hit.parent.mkdir(parents=True, exist_ok=True)
            hit.write_text(json.dumps({"key": key, "row": row, "floors": floors}))
    # how well each selection rule's score follows lesion detection across the kept checkpoints
    from scipy.stats import spearmanr

    steps_rows = [r for n, r in results["rows"].items() if n.startswith("step_")]
    results["rule_vs_detection"] = {}
    for sname in sets:
        out = {}
        for rule in ("val_dice", "select_score"):
            xs = [r[rule] for r in steps_rows]
            if len(xs) < 3 or any(x is None for x in xs):
                continue
            for what, get in (
                ("pixel_auroc", lambda r: r[sname]["prior"]["pixel_auroc"]),
                ("froc_at_10fp", lambda r: r[sname]["prior"]["froc_at_10fp"]),
                ("top1", lambda r: r[sname]["prior"]["top1_hits"][0]),
            ):
                rho = spearmanr(xs, [get(r) for r in steps_rows]).statistic
                out[f"{rule} ~ {what}"] = None if rho != rho else float(rho)
        results["rule_vs_detection"][sname] = out
    md = [f"Run `{run.name}` ({len(kept)} kept checkpoints); prior: {PRIOR.describe()}.", ""]
    for sname in sets:
        md += [
            f"#### {sname}",
            "",
            "| checkpoint | step | synthetic val Dice | selection score | pixel AUROC raw | "
            "pixel AUROC x prior | FROC@10FP raw | FROC@10FP x prior | top-1 on lesion raw | top-1 x prior |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, row in results["rows"].items():
            r, p = row[sname]["raw"], row[sname]["prior"]
            vd = f"{row['val_dice']:.3f}" if row["val_dice"] is not None else ""
            ss = f"{row['select_score']:.3f}" if row["select_score"] is not None else ""
            md.append(
                f"| {name} | {row['step']} | {vd} | {ss} | {fmt_ci(r, 'pixel_auroc')} | {fmt_ci(p, 'pixel_auroc')} | "
                f"{fmt_ci(r, 'froc_at_10fp')} | {fmt_ci(p, 'froc_at_10fp')} | "
                f"{r['top1_hits'][0]}/{r['top1_hits'][1]} | "
                f"{p['top1_hits'][0]}/{p['top1_hits'][1]} |"
            )
        for fname, f in results["floors"][sname].items():
            f = f.get("per_slice", f)
            md.append(
                f"| floor: {fname} | | | | {fmt_ci(f, 'pixel_auroc')} | | {fmt_ci(f, 'froc_at_10fp')} | | "
                f"{f['top1_hits'][0]}/{f['top1_hits'][1]} | |"
            )
        md.append("")
        rv = results["rule_vs_detection"].get(sname, {})
        if rv:
            md += [
                "Spearman correlation across the kept checkpoints, rule score vs the x-prior figure: "
                + ", ".join(f"{k} {v:+.2f}" for k, v in rv.items() if v is not None),
                "",
            ]
    return write_outputs(args.out, args.kind, md, results)


if __name__ == "__main__":
    main()
