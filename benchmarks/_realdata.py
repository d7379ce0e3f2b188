# SPDX-License-Identifier: BSD-3-Clause
"""Shared by the real-data benchmarks (Table 1, the method ablation): the test sets in ``../shared/data``,
scoring one checkpoint on each with the evaluation's code and CIs, and the table layout."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
SHARED = ROOT.parent / "shared" / "data"

from napari_ppii.evaluation import evaluate, load_csv_test_set, load_volume_test_set  # noqa: E402
from napari_ppii.evaluation.report import write_report  # noqa: E402
from napari_ppii.evaluation.summary import fmt_ci  # noqa: E402

#: Columns of the tables: metric key -> heading.
COLUMNS = {
    "pixel_auroc": "Pixel AUC",
    "pixel_auroc_lung": "Pixel AUC lungs",
    "froc_at_10fp": "FROC@10FP box",
    "froc_centre_at_10fp": "FROC@10FP centre",
    "sample_auroc": "Sample AUC",
    "sample_ap": "Sample AP",
}
KEEP = tuple(k for c in COLUMNS for k in (c, f"{c}_ci"))


def load_datasets(limit: int | None = None, skip_lidc: bool = False) -> dict:
    """JSRT test rows, NIH Nodule/Mass (+ normals), LIDC-IDRI-0001 -- those present -- with scans read once.
    Empty when JSRT is absent (the caller says so)."""
    from napari_ppii.io import read_scan

    jsrt = SHARED / "jsrt" / "annotations.csv"
    if not jsrt.exists():
        print(f"JSRT data absent ({jsrt}): nothing to evaluate")
        return {}
    datasets = {"JSRT": load_csv_test_set(jsrt, limit=limit)}
    nih = SHARED / "nih-cxr" / "annotations.csv"
    if nih.exists():
        datasets["NIH (cross-dataset)"] = load_csv_test_set(nih, labels=["Nodule", "Mass"], limit=limit)
    else:
        print(f"NIH data absent ({nih}): cross-dataset check skipped")
    lidc = SHARED / "lidc-idri-0001"
    if lidc.exists() and not skip_lidc:
        datasets["LIDC-IDRI-0001"] = load_volume_test_set(lidc / "dicom", lidc / "069.xml")
    elif not skip_lidc:
        print(f"LIDC data absent ({lidc}): CT check skipped")
    for items in datasets.values():
        for it in items:
            if it.scan is None:
                it.scan = read_scan(it.path)
    return datasets


def score_checkpoint(
    pred, datasets: dict, opts, floors: dict, atlas, out: Path, title: str, restrict: str | None = None
) -> dict:
    """Score ``pred`` on every dataset (floors scored alongside the first time a dataset is seen, into
    ``floors``); write a report per dataset under ``out``; return the table entry."""
    entry = {
        "checkpoint": str(pred.path),
        "step": pred.step,
        "image_size": pred.cfg.data.image_size,
        "steps": pred.cfg.training.steps,
    }
    for name, items in datasets.items():
        with_floors = name not in floors
        if restrict:
            from napari_ppii.prior import PriorSettings

            ropts = replace(opts, prior=PriorSettings("lungs", 0.03, 0.0))
        else:
            ropts = opts
        ev = evaluate(pred, items, ropts, floors=with_floors, atlas=atlas if name != "LIDC-IDRI-0001" else None)
        if with_floors:
            floors[name] = ev.metrics.get("floors", {})
        write_report(
            ev,
            out / name.split()[0].lower(),
            title=f"{title} on {name}",
            extra={"checkpoint": str(pred.path), "step": pred.step},
        )
        entry[name] = {k: ev.metrics[k] for k in KEEP}
        if "per_lesion_3d" in ev.metrics:
            entry[name]["froc_3d_lesion"] = ev.metrics["per_lesion_3d"]["froc"]
        print(f"{title} (step {pred.step}) on {name}: done", flush=True)
    return entry


def table(datasets, rows: list[tuple[str, dict]], floors: dict, extra: dict | None = None) -> list[str]:
    """Print one block per dataset (``rows``: label, entry) with the floors under it; return Markdown lines.
    ``extra``: dataset -> [(label, {key: value})] printed without CIs (e.g. the paper's figures)."""
    heads = tuple(COLUMNS.values())
    md = []
    for name in datasets:
        print(f"== {name} ==")
        print(f"{'':44s} " + " ".join(f"{h:>24s}" for h in heads))
        md += [f"### {name}", "", "| map | " + " | ".join(heads) + " |", "|---" * (len(heads) + 1) + "|"]
        for label, entry in rows:
            if name in entry:
                print(f"{label:44s} " + " ".join(f"{fmt_ci(entry[name], k):>24s}" for k in COLUMNS))
                md.append(f"| {label} | " + " | ".join(fmt_ci(entry[name], k) for k in COLUMNS) + " |")
        for label, vals in (extra or {}).get(name, []):
            print(f"{label:44s} " + " ".join(f"{vals[k]:>24.2f}" if k in vals else f"{'':>24s}" for k in COLUMNS))
            md.append(f"| {label} | " + " | ".join(f"{vals[k]:.2f}" if k in vals else "" for k in COLUMNS) + " |")
        for fname, f in floors.get(name, {}).items():
            label = f"floor: {fname}"
            print(f"{label:44s} " + " ".join(f"{fmt_ci(f, k):>24s}" for k in COLUMNS))
            md.append(f"| {label} | " + " | ".join(fmt_ci(f, k) for k in COLUMNS) + " |")
        print()
        md.append("")
    return md


def training_atlas_of(checkpoint: Path):
    """The atlas floor: the mean of the training normals at the model's input size."""
    from napari_ppii.config import PPIIConfig
    from napari_ppii.evaluation.floors import training_atlas
    from napari_ppii.training import load_checkpoint
    from napari_ppii.training.data import load_normal_images

    return training_atlas(load_normal_images(PPIIConfig.from_dict(load_checkpoint(checkpoint)["config"])))


def write_outputs(out: Path, name: str, md: list[str], results: dict) -> dict:
    """``<name>.md`` and ``<name>.json`` into ``out``; print the JSON as the last line; return it."""
    import json

    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.md").write_text("\n".join(md) + "\n")
    (out / f"{name}.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results))
    return results
