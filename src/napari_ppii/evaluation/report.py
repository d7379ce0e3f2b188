# SPDX-License-Identifier: BSD-3-Clause
"""Evaluation outputs: ``metrics.json``, a Markdown report and PNG plots (ROC, FROC, score histograms,
example overlays with the map, the ground-truth boxes and the candidates)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .metrics import extract_candidates
from .summary import fmt_ci

PAPER_TABLE1 = {  # JSRT, U-Net (paper Table 1)
    "P-PII U-Net": {"pixel_auroc": 0.90, "froc_at_10fp": 0.27, "sample_auroc": 0.64, "sample_ap": 0.94},
    "PII U-Net": {"pixel_auroc": 0.80, "froc_at_10fp": 0.08, "sample_auroc": 0.44, "sample_ap": 0.87},
}


def _subplots(figsize):
    """A figure and its axes without pyplot (no global backend switch, safe off the GUI thread)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots()


def _plots(ev, out: Path) -> list[str]:
    from matplotlib.patches import Rectangle
    from sklearn.metrics import roc_curve

    m = ev.metrics.get("per_slice", ev.metrics)
    files = []
    y, s = np.array(m["sample_labels"]), np.array(m["sample_scores"])
    if 0 < y.sum() < len(y):
        fpr, tpr, _ = roc_curve(y, s)
        fig, ax = _subplots(figsize=(4, 4))
        ax.plot(fpr, tpr, label=f"AUROC {m['sample_auroc']:.3f}")
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title="Sample-level ROC")
        ax.legend(loc="lower right")
        fig.tight_layout()
        fig.savefig(out / "roc.png", dpi=120)
        files.append("roc.png")
    fc = m["froc_curve"]
    fig, ax = _subplots(figsize=(5, 4))
    ax.step(fc["fps_per_image"], fc["sensitivity"], where="post")
    for r, v in m["froc"].items():
        ax.plot(float(r), v, "o", ms=3, color="C1")
    ax.set_xscale("symlog", linthresh=0.125)
    ax.set(
        xlabel="average false positives per image",
        ylabel="sensitivity",
        ylim=(0, 1.02),
        title=f"FROC (sensitivity at 10 FP/image {m['froc_at_10fp']:.3f})",
    )
    fig.tight_layout()
    fig.savefig(out / "froc.png", dpi=120)
    files.append("froc.png")
    fig, ax = _subplots(figsize=(5, 3.5))
    bins = np.linspace(min(s.min(), 0), max(s.max(), 1e-6), 30)
    ax.hist(s[y == 0], bins=bins, alpha=0.6, label=f"normal (n={int((y == 0).sum())})")
    ax.hist(s[y == 1], bins=bins, alpha=0.6, label=f"lesion (n={int(y.sum())})")
    ax.set(xlabel="sample score", ylabel="images", title="Sample scores")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "score_histograms.png", dpi=120)
    files.append("score_histograms.png")
    for k, (it, amap) in enumerate(zip(ev.items, ev.maps)):
        scan = it.scan.array
        z = None
        if scan.ndim == 3:
            z = int(np.clip(round(it.boxes[0].centre[0]), 0, scan.shape[0] - 1)) if it.boxes else scan.shape[0] // 2
            scan, amap = scan[z], amap[z]
        cands = extract_candidates(
            amap, max_candidates=10, scale=ev.metrics.get("settings", {}).get("detect_scale", 0.0)
        )
        fig, ax = _subplots(figsize=(5, 5))
        lo, hi = np.percentile(scan, [1, 99])
        ax.imshow(scan, cmap="gray", vmin=lo, vmax=hi)
        ax.imshow(np.ma.masked_less(amap, 0.05), cmap="hot", alpha=0.5, vmin=0, vmax=1)
        for b in it.boxes:
            if z is not None and not (b.lo[0] <= z <= b.hi[0]):
                continue
            (y0, x0), (y1, x1) = b.lo[-2:], b.hi[-2:]
            ax.add_patch(
                Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, fill=False, ec="deepskyblue", lw=1.5)
            )
        ax.plot(cands.points[:, -1], cands.points[:, -2], "+", color="lime", ms=8)
        ax.set_title(
            f"{it.name}{'' if z is None else f' slice {z}'}: map, boxes (blue), candidates (green)", fontsize=8
        )
        ax.axis("off")
        fig.tight_layout()
        name = f"example_{k:02d}.png"
        fig.savefig(out / name, dpi=100)
        files.append(name)
    return files


_COLUMNS = (
    ("pixel_auroc", "pixel AUROC"),
    ("pixel_auroc_lung", "pixel AUROC in lungs"),
    ("froc_at_10fp", "FROC@10FP (box)"),
    ("froc_centre_at_10fp", "FROC@10FP (centre)"),
    ("sample_auroc", "sample AUROC"),
    ("sample_ap", "sample AP"),
)


def floors_table(metrics: dict, name: str = "model") -> list[str]:
    """Markdown rows: the model's headline figures, then each non-learned floor's, with 95% CIs."""
    m = metrics.get("per_slice", metrics)
    cols = [(k, lab) for k, lab in _COLUMNS if k in m or any(k in f for f in metrics.get("floors", {}).values())]
    lines = ["| map | " + " | ".join(lab for _, lab in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    if "pixel_auroc" in m:
        prior = metrics.get("prior", {}).get("kind", "none")
        tag = f" (x {prior} prior)" if prior != "none" else ""
        lines.append(f"| **{name}{tag}** | " + " | ".join(fmt_ci(m, k) for k, _ in cols) + " |")
    if "raw" in metrics:
        lines.append(f"| {name}, raw map (no prior) | " + " | ".join(fmt_ci(metrics["raw"], k) for k, _ in cols) + " |")
    for fname, f in metrics.get("floors", {}).items():
        lines.append(f"| floor: {fname} | " + " | ".join(fmt_ci(f, k) for k, _ in cols) + " |")
    return lines


def write_report(ev, out: str | Path, title: str = "napari-ppii evaluation", extra: dict | None = None) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    metrics = dict(ev.metrics)
    if extra:
        metrics.update(extra)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    files = _plots(ev, out)
    m = metrics.get("per_slice", metrics)
    lines = [f"# {title}", ""]
    if extra:
        # lists (an ensemble's checkpoints and steps) one item after another; nested records stay in metrics.json
        lines += [
            f"- {k}: {', '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in extra.items()
            if not isinstance(v, dict)
        ] + [""]
    lines += floors_table(metrics)
    lines += [
        "",
        "FROC sensitivity at average false positives per image:",
        "",
        "| FP/image | " + " | ".join(m["froc"]) + " |",
        "|---" * (len(m["froc"]) + 1) + "|",
        "| sensitivity | " + " | ".join(f"{v:.3f}" for v in m["froc"].values()) + " |",
        "",
    ]
    if "per_lesion_3d" in metrics:
        v = metrics["per_lesion_3d"]
        lines += [
            "Per 3D lesion (3D candidates, FPs per volume): "
            + ", ".join(f"{r}: {s:.3f}" for r, s in v["froc"].items()),
            "",
        ]
    lines += [
        f"Images: {m['n_images']} ({m['n_positive']} with lesions, {m['n_lesions']} lesions).",
        "",
        "Definitions:",
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in metrics["settings"].items()]
    lines += [""] + [f"![{f}]({f})" for f in files]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return out / "report.md"
