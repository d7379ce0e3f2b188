# SPDX-License-Identifier: BSD-3-Clause
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
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _realdata import ROOT, load_datasets, score_checkpoint, table, training_atlas_of, write_outputs  # noqa: E402

from napari_ppii.evaluation import EvalOptions, evaluate  # noqa: E402
from napari_ppii.evaluation.report import PAPER_TABLE1  # noqa: E402
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
    datasets = load_datasets(args.limit, args.skip_lidc)
    if not datasets:
        res = {"skipped": "JSRT data not found"}
        print(json.dumps(res))
        return res
    opts = EvalOptions(n_boot=args.n_boot)
    floors: dict = {}
    from napari_ppii.training import load_checkpoint

    first = next(
        (args.runs / r / args.checkpoint for r in MODELS.values() if (args.runs / r / args.checkpoint).exists()), None
    )
    atlas = training_atlas_of(first) if first is not None else None
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
                pred = Predictor(k, tta="none")
                row = {"step": pred.step, "checkpoint": str(k), "val_dice": _val_dice(k)}
                for name, key in (("NIH (cross-dataset)", "nih"), ("JSRT", "jsrt")):
                    if name in datasets:
                        m = evaluate(pred, datasets[name], quick, keep_maps=0, floors=False).metrics
                        row[f"{key}_pixel_auroc"] = m["pixel_auroc"]
                        row[f"{key}_froc_at_10fp"] = m["froc_at_10fp"]
                traj.append(row)
                print(
                    f"{model} step {row['step']}: "
                    + ", ".join(f"{k} {v:.3f}" for k, v in row.items() if isinstance(v, float)),
                    flush=True,
                )
            trajectories[model] = traj
            with_dice = [r for r in traj if r["val_dice"] is not None]
            if with_dice and sel != "val_dice":
                pick = max(with_dice, key=lambda r: r["val_dice"])
                chosen["val Dice (paper)"] = Path(pick["checkpoint"])
        results[model] = {}
        first_rule = next(iter(chosen))
        chosen[f"{first_rule}, x lung field"] = chosen[first_rule]  # the same checkpoint, map x lung prior
        for rule, path in chosen.items():
            tag = "" if rule == first_rule else ("_lungs" if rule.endswith("x lung field") else "_val_dice")
            results[model][rule] = score_checkpoint(
                Predictor(path, tta="none"),
                datasets,
                opts,
                floors,
                atlas,
                args.out / f"{run}{tag}",
                f"{model} ({rule})",
                restrict="lungs" if rule.endswith("x lung field") else None,
            )

    print()
    rows = [
        (f"{model} ({rule}, step {entry['step']})", entry)
        for model in MODELS
        for rule, entry in results.get(model, {}).items()
    ]
    paper = {
        "JSRT": [(f"{model}, paper (512, 100k steps)", PAPER_TABLE1[model]) for model in MODELS if model in results]
    }
    md = table(datasets, rows, floors, paper)
    for model, traj in trajectories.items():
        print(f"== {model}: kept checkpoints (no CIs) ==")
        keys = [k for k in traj[0] if k not in ("checkpoint", "step")]
        print(f"{'step':>6s} " + " ".join(f"{k:>20s}" for k in keys))
        for r in traj:
            print(
                f"{r['step']:>6d} " + " ".join(f"{r[k]:>20.3f}" if r[k] is not None else f"{'n/a':>20s}" for k in keys)
            )
        print()
    return write_outputs(args.out, "table1", md, {"table": results, "floors": floors, "trajectories": trajectories})


def _val_dice(path: Path) -> float | None:
    from napari_ppii.training import load_checkpoint

    v = load_checkpoint(path).get("val_dice")
    return None if v is None else float(v)


if __name__ == "__main__":
    main()
