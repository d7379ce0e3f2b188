"""The paper's Table 1 (JSRT, U-Net, PII vs P-PII), reproduced on the CPU with a stated budget.

Trains -- or takes checkpoints of -- U-Net with PII and with P-PII on the JSRT training normals
(``configs/jsrt_{pii,ppii}_unet.yaml``: 256x256, base 16 channels, batch 8, 1,500 steps, Adam 1e-3 with
warm-up and cosine decay, anomalies in the lung fields, a checkpoint kept every 100 steps; about 100
minutes for both side by side on 2 CPU cores), then scores both in one run, beside the non-learned
floors (random, lung field, darkness, training atlas, blob filter; same metric code and CIs), on

* the JSRT test rows (78 nodules, 10 normals): the paper's Table 1 setting;
* the NIH ChestX-ray14 radiographs with Nodule/Mass boxes plus the normals (a cross-dataset check);
* the LIDC-IDRI-0001 CT series with its radiologists' XML (per slice and per 3D lesion),

and prints the table in the paper's layout beside the paper's figures (which used 512x512 and 100,000
steps on an A100).  Two checkpoint rules per model: ``best.pt`` as the configuration's
``training.select`` chose it (the JSRT configurations: best pixel AUROC on the NIH boxes -- real lesions
from another dataset; JSRT never chooses, and the NIH figures of that row are then not an independent
check) and the paper's rule (best Dice on the synthetic validation set), taken among the kept
``step_*.pt`` checkpoints; and a third row: the ``best.pt`` map times the soft lung-field prior (a
stated post-processing, never chosen on JSRT).  The trajectory of every kept checkpoint (synthetic
validation Dice, NIH and JSRT pixel AUROC, JSRT FROC@10FP, without CIs) is printed too.
Reads ``../shared/data``; says so and exits cleanly when it is absent.
Usage: ``python benchmarks/jsrt_table1.py [--train] [--n-boot 1000] [--out out/table1]``.
Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
SHARED = ROOT.parent / "shared" / "data"

from napari_ppii.evaluation import EvalOptions, evaluate, load_csv_test_set, load_volume_test_set  # noqa: E402
from napari_ppii.evaluation.report import PAPER_TABLE1, fmt_ci, write_report  # noqa: E402
from napari_ppii.predict import Predictor  # noqa: E402

MODELS = {"PII U-Net": "jsrt_pii_unet", "P-PII U-Net": "jsrt_ppii_unet"}
SELECT_NAMES = {"val_dice": "val Dice (paper)", "reference": "NIH pixel AUROC", "heldout": "held-out task Dice"}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", action="store_true", help="train the models whose checkpoints are missing")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs")
    ap.add_argument("--checkpoint", default="best.pt", help="best.pt (paper: best Dice) or last.pt")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "table1")
    ap.add_argument("--skip-lidc", action="store_true")
    ap.add_argument("--limit", type=int, default=None, help="only the first N rows of each set (a smoke run)")
    args = ap.parse_args(argv)
    jsrt = SHARED / "jsrt" / "annotations.csv"
    if not jsrt.exists():
        res = {"skipped": f"JSRT data not found at {jsrt}"}
        print(f"JSRT data absent ({jsrt}): nothing to evaluate")
        print(json.dumps(res))
        return res
    datasets = {"JSRT": load_csv_test_set(jsrt, limit=args.limit)}
    nih = SHARED / "nih-cxr" / "annotations.csv"
    if nih.exists():
        datasets["NIH (cross-dataset)"] = load_csv_test_set(nih, labels=["Nodule", "Mass"], limit=args.limit)
    else:
        print(f"NIH data absent ({nih}): cross-dataset check skipped")
    lidc = SHARED / "lidc-idri-0001"
    if lidc.exists() and not args.skip_lidc:
        datasets["LIDC-IDRI-0001"] = load_volume_test_set(lidc / "dicom", lidc / "069.xml")
    from napari_ppii.io import read_scan

    for items in datasets.values():  # read once, score with every checkpoint
        for it in items:
            if it.scan is None:
                it.scan = read_scan(it.path)
    opts = EvalOptions(n_boot=args.n_boot)
    floors: dict = {}
    atlas = None
    from napari_ppii.config import PPIIConfig
    from napari_ppii.evaluation.floors import training_atlas
    from napari_ppii.training import load_checkpoint
    from napari_ppii.training.data import load_normal_images

    first = next((args.runs / r / args.checkpoint for r in MODELS.values() if (args.runs / r / args.checkpoint).exists()), None)
    if first is not None:  # the atlas floor: the mean of the training normals at the model's input size
        atlas = training_atlas(load_normal_images(PPIIConfig.from_dict(load_checkpoint(first)["config"])))
    quick = EvalOptions(n_boot=0)
    results: dict = {}
    trajectories: dict = {}
    for model, run in MODELS.items():
        ck = args.runs / run / args.checkpoint
        if not ck.exists():
            if not args.train:
                print(f"{model}: no checkpoint at {ck} (run with --train, or `ppii train --config configs/{run}.yaml`)")
                continue
            from napari_ppii.config import PPIIConfig
            from napari_ppii.training import train

            cfg = PPIIConfig.load(ROOT / "configs" / f"{run}.yaml")
            train(cfg, progress=True)
        sel = load_checkpoint(ck)["config"]["training"].get("select", "val_dice")
        chosen = {SELECT_NAMES.get(sel, sel): ck}
        kept = sorted((args.runs / run).glob("step_*.pt"))
        if kept:
            traj = []
            for k in kept:
                pred = Predictor(k)
                row = {"step": pred.step, "checkpoint": str(k), "val_dice": _val_dice(k)}
                for name, key in (("NIH (cross-dataset)", "nih"), ("JSRT", "jsrt")):
                    if name in datasets:
                        m = evaluate(pred, datasets[name], quick, keep_maps=0, floors=False).metrics
                        row[f"{key}_pixel_auroc"] = m["pixel_auroc"]
                        row[f"{key}_froc_at_10fp"] = m["froc_at_10fp"]
                traj.append(row)
                print(f"{model} step {row['step']}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()
                                                                  if isinstance(v, float)), flush=True)
            trajectories[model] = traj
            with_dice = [r for r in traj if r["val_dice"] is not None]
            if with_dice and sel != "val_dice":
                pick = max(with_dice, key=lambda r: r["val_dice"])
                chosen["val Dice (paper)"] = Path(pick["checkpoint"])
        results[model] = {}
        first_rule = next(iter(chosen))
        chosen[f"{first_rule}, x lung field"] = chosen[first_rule]  # the same checkpoint, map x lung prior
        for rule, path in chosen.items():
            pred = Predictor(path)
            entry = {"checkpoint": str(path), "step": pred.step, "image_size": pred.cfg.data.image_size,
                     "steps": pred.cfg.training.steps}
            for name, items in datasets.items():
                with_floors = name not in floors
                ropts = replace(opts, restrict="lungs") if rule.endswith("x lung field") else opts
                ev = evaluate(pred, items, ropts, floors=with_floors, atlas=atlas if name != "LIDC-IDRI-0001" else None)
                if with_floors:
                    floors[name] = ev.metrics.get("floors", {})
                tag = "" if rule == first_rule else ("_lungs" if rule.endswith("x lung field") else "_val_dice")
                write_report(ev, args.out / f"{run}{tag}" / name.split()[0].lower(),
                             title=f"{model} ({rule}) on {name}", extra={"checkpoint": str(path), "step": pred.step})
                keep = ("pixel_auroc", "pixel_auroc_ci", "pixel_auroc_lung", "pixel_auroc_lung_ci", "froc_at_10fp",
                        "froc_at_10fp_ci", "froc_centre_at_10fp", "froc_centre_at_10fp_ci", "sample_auroc",
                        "sample_auroc_ci", "sample_ap", "sample_ap_ci")
                entry[name] = {k: ev.metrics[k] for k in keep}
                if "per_lesion_3d" in ev.metrics:
                    entry[name]["froc_3d_lesion"] = ev.metrics["per_lesion_3d"]["froc"]
                print(f"{model} ({rule}, step {pred.step}) on {name}: done", flush=True)
            results[model][rule] = entry

    print()
    cols = ("pixel_auroc", "pixel_auroc_lung", "froc_at_10fp", "froc_centre_at_10fp", "sample_auroc", "sample_ap")
    heads = ("Pixel AUC", "Pixel AUC lungs", "FROC@10FP box", "FROC@10FP centre", "Sample AUC", "Sample AP")
    md = []
    for name in datasets:
        print(f"== {name} ==")
        print(f"{'':44s} " + " ".join(f"{h:>24s}" for h in heads))
        md += [f"### {name}", "", "| map | " + " | ".join(heads) + " |", "|---" * (len(heads) + 1) + "|"]
        for model in MODELS:
            for rule, entry in results.get(model, {}).items():
                label = f"{model} ({rule}, step {entry['step']})"
                print(f"{label:44s} " + " ".join(f"{fmt_ci(entry[name], k):>24s}" for k in cols))
                md.append(f"| {label} | " + " | ".join(fmt_ci(entry[name], k) for k in cols) + " |")
            if name == "JSRT" and model in results:
                p = PAPER_TABLE1[model]
                print(f"{'  paper':44s} " + " ".join(f"{p[k]:>24.2f}" if k in p else f"{'':>24s}" for k in cols))
                md.append(f"| {model}, paper (512, 100k steps) | " + " | ".join(f"{p[k]:.2f}" if k in p else "" for k in cols) + " |")
        for fname, f in floors.get(name, {}).items():
            label = f"floor: {fname}"
            print(f"{label:44s} " + " ".join(f"{fmt_ci(f, k):>24s}" for k in cols))
            md.append(f"| {label} | " + " | ".join(fmt_ci(f, k) for k in cols) + " |")
        print()
        md.append("")
    for model, traj in trajectories.items():
        print(f"== {model}: kept checkpoints (no CIs) ==")
        keys = [k for k in traj[0] if k not in ("checkpoint", "step")]
        print(f"{'step':>6s} " + " ".join(f"{k:>20s}" for k in keys))
        for r in traj:
            print(f"{r['step']:>6d} " + " ".join(f"{r[k]:>20.3f}" if r[k] is not None else f"{'n/a':>20s}" for k in keys))
        print()
    results = {"table": results, "floors": floors, "trajectories": trajectories}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table1.md").write_text("\n".join(md) + "\n")
    (args.out / "table1.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results))
    return results


def _val_dice(path: Path) -> float | None:
    from napari_ppii.training import load_checkpoint

    v = load_checkpoint(path).get("val_dice")
    return None if v is None else float(v)


if __name__ == "__main__":
    main()
