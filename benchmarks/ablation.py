# SPDX-License-Identifier: BSD-3-Clause
"""The method ablation: FPI, PII, NSA and P-PII with one backbone, one budget and one selection rule,
scored on real scans in one run beside the non-learned floors, with 95% bootstrap CIs.

Each method trains a U-Net on the JSRT training normals with the method's own synthesis defaults (the
calibrated, anatomy-aware ones: anomalies inside the lung fields) and nothing else changed: the same
backbone (``--base`` channels, five levels), image size, batch, steps, learning-rate schedule, seed and
checkpoint rule (``--select``, default ``reference``: best pixel AUROC on the NIH Nodule/Mass boxes,
real lesions from another dataset -- so the NIH figures of these rows are not an independent check;
``val_dice``: the paper's rule, best Dice on each method's own synthetic validation set; ``heldout``:
best Dice on a held-out synthetic task).  JSRT test rows only measure.  The checkpoints are then scored
on the JSRT test rows, the NIH radiographs (Nodule/Mass boxes plus normals) and the LIDC-IDRI-0001 CT
series (per slice and per 3D lesion), one Markdown table per dataset with the floors under it.

Budget (default, stated in the table): 256x256, base 16 channels, batch 8, 600 steps, Adam 1e-3 with
100 warm-up steps and cosine decay, validation every 100 steps -- about 25 minutes per method on 2 CPU
cores (the recorded CPU run: ``--steps 400 --val-every 50``); on a GPU pass
``--device cuda --size 512 --steps 20000 --batch 16 --base 32``.
Reads ``../shared/data`` and says so when it is absent.
Usage: ``python benchmarks/ablation.py [--train] [--methods fpi,pii,nsa,ppii] [--steps N] [--out out/ablation]``.
Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _realdata import ROOT, SHARED, load_datasets, score_checkpoint, table, training_atlas_of, write_outputs  # noqa: E402

NAMES = {"fpi": "FPI U-Net", "pii": "PII U-Net", "nsa": "NSA U-Net", "ppii": "P-PII U-Net"}


def method_config(method: str, args):
    """One method's training configuration: its own synthesis defaults, the shared budget and rule."""
    from napari_ppii.config import PPIIConfig

    training = {
        "steps": args.steps,
        "batch_size": args.batch,
        "lr": 1e-3,
        "warmup_steps": min(100, args.steps // 5),
        "val_every": args.val_every,
        "log_every": 20,
        "select": args.select,
        "device": args.device,
        "out_dir": str(args.runs / f"ablation_{method}"),
    }
    if args.threads:
        training["num_threads"] = args.threads
    if args.select == "reference":
        training |= {"reference": str(SHARED / "nih-cxr" / "annotations.csv"), "reference_labels": ["Nodule", "Mass"]}
    return PPIIConfig.from_dict(
        {
            "data": {"train": str(SHARED / "jsrt" / "annotations.csv"), "image_size": args.size, "val_samples": 32},
            "model": {"backbone": "unet", "base_channels": args.base},
            "training": training,
            "synthesis": {"method": method, "placement": "lungs"}
            | ({"source_in_mask": True} if method == "nsa" else {}),
            "seed": args.seed,
        }
    )


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", action="store_true", help="train the methods whose best.pt is missing")
    ap.add_argument("--methods", default="fpi,pii,nsa,ppii")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--base", type=int, default=16)
    ap.add_argument("--val-every", type=int, default=100)
    ap.add_argument("--select", default="reference", choices=["reference", "val_dice", "heldout"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "ablation")
    ap.add_argument("--skip-lidc", action="store_true")
    ap.add_argument("--limit", type=int, default=None, help="only the first N rows of each set (a smoke run)")
    args = ap.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in NAMES]
    if unknown:
        ap.error(f"unknown methods {unknown}; known: {', '.join(NAMES)}")
    if not (SHARED / "jsrt" / "annotations.csv").exists():
        res = {"skipped": f"JSRT data not found under {SHARED}"}
        print(f"JSRT data absent ({SHARED / 'jsrt'}): the ablation needs it to train and to score")
        print(json.dumps(res))
        return res

    from napari_ppii.evaluation import EvalOptions
    from napari_ppii.predict import Predictor
    from napari_ppii.training import train

    checkpoints = {}
    for m in methods:
        cfg = method_config(m, args)
        ck = Path(cfg.training.out_dir) / "best.pt"
        if not ck.exists():
            if not args.train:
                print(f"{NAMES[m]}: no checkpoint at {ck} (run with --train)")
                continue
            print(
                f"training {NAMES[m]}: {args.steps} steps at {args.size}, batch {args.batch}, base {args.base}",
                flush=True,
            )
            args.out.mkdir(parents=True, exist_ok=True)
            cfg.save(args.out / f"ablation_{m}.yaml")  # what was trained, for `ppii train --config`
            train(cfg, progress=True)
        checkpoints[m] = ck
    if not checkpoints:
        print(json.dumps({"skipped": "no checkpoints"}))
        return {"skipped": "no checkpoints"}

    datasets = load_datasets(args.limit, args.skip_lidc)
    opts = EvalOptions(n_boot=args.n_boot)
    atlas = training_atlas_of(next(iter(checkpoints.values())))
    floors: dict = {}
    results: dict = {}
    for m, ck in checkpoints.items():
        pred = Predictor(ck, device="cuda" if args.device.startswith("cuda") else "cpu", tta="none")
        results[m] = score_checkpoint(pred, datasets, opts, floors, atlas, args.out / m, NAMES[m])
        results[m]["synthesis"] = pred.cfg.synthesis.model_dump(mode="json")

    budget = (
        f"Budget: {args.size}x{args.size}, U-Net base {args.base}, batch {args.batch}, {args.steps} steps, "
        f"Adam 1e-3 (warm-up, cosine), checkpoint rule `{args.select}`"
        + (" (best NIH Nodule/Mass pixel AUROC: NIH rows are not independent)" if args.select == "reference" else "")
        + f", seed {args.seed}; 95% CIs from {args.n_boot} bootstrap resamples of images."
    )
    print(budget)
    rows = [(f"{NAMES[m]} (step {e['step']})", e) for m, e in results.items()]
    md = ["# Method ablation (FPI, PII, NSA, P-PII)", "", budget, ""] + table(datasets, rows, floors)
    return write_outputs(args.out, "ablation", md, {"budget": budget, "table": results, "floors": floors})


if __name__ == "__main__":
    main()
