# SPDX-License-Identifier: BSD-3-Clause
"""Realism statistics: do the synthetic anomalies look like real lesions?

The same quantities are measured for synthetic anomalies and for real annotated lesions, on the model's
input images (after the training pre-processing), so the two can be set side by side:

* ``contrast`` -- mean intensity inside the lesion disc minus the mean of the surrounding ring
  (``ring`` x the radius out to twice that), signed (a real nodule is brighter: positive);
* ``abs_contrast`` -- its magnitude;
* ``gradient_ratio`` -- mean squared gradient magnitude inside the disc over that of the ring (1 = as
  textured as the surroundings; a smooth, soft blob is near 1, up-scaled texture far above);
* ``diameter_px`` -- the disc's diameter in pixels of the measured image, and ``diameter_frac`` as a
  fraction of the image side;
* ``in_lungs`` -- whether the centre lies in the lung fields (:mod:`napari_ppii.anatomy`);
* ``edge_distance_frac`` -- where the centre sits relative to the lung mask's boundary: its distance to the
  boundary as a fraction of the image side, positive inside, negative outside (capped at the measuring
  window, twice the ring's outer radius), so lesions on the pleura sit near 0;
* ``outside_frac`` -- the share of the lesion disc outside the lung mask (a juxtapleural nodule straddles
  the pleura: a share well above 0).

A real lesion's disc is the one inscribed in its box.  A synthetic P-PII anomaly's disc is its raters'
mean circle (mean centre and radius); for PII/FPI the disc inscribed in the patch box.  Reference
lesions for tuning come from NIH or LIDC, never from the JSRT test rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .errors import InputError

QUANTITIES = (
    "contrast",
    "abs_contrast",
    "gradient_ratio",
    "diameter_frac",
    "in_lungs",
    "edge_distance_frac",
    "outside_frac",
)


@dataclass
class LesionStats:
    contrast: float
    abs_contrast: float
    gradient_ratio: float
    diameter_px: float
    diameter_frac: float
    in_lungs: float  # 1.0 / 0.0, NaN when no lung mask
    edge_distance_frac: float = float("nan")  # signed distance of the centre to the mask boundary / side
    outside_frac: float = float("nan")  # share of the disc outside the mask

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _disc_ring(shape, centre, radius, ring: float = 1.5):
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    d = np.sqrt((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2)
    return d <= radius, (d >= ring * radius) & (d <= 2.0 * ring * radius)


def lesion_stats(
    image: np.ndarray, centre: Sequence[float], radius: float, lung_mask: np.ndarray | None = None, ring: float = 1.5
) -> LesionStats | None:
    """The statistics of one lesion (2D image in [0, 1], centre in array order, radius in pixels);
    None when the disc or its ring holds no pixel."""
    img = np.asarray(image)  # converted to float64 window by window (no copy of the whole image per lesion)
    if img.ndim != 2:
        raise InputError(f"realism statistics take 2D images, got shape {img.shape}")
    radius = max(float(radius), 1.0)
    # work on a window one pixel beyond the ring: the central differences there are those of the whole
    # image, at a fraction of the cost (the preview measures every sample)
    h = int(np.ceil(2.0 * ring * radius)) + 2
    y0, x0 = (max(0, int(np.floor(c)) - h) for c in centre)
    win = img[y0 : int(np.ceil(centre[0])) + h + 1, x0 : int(np.ceil(centre[1])) + h + 1].astype(np.float64)
    disc, rim = _disc_ring(win.shape, (centre[0] - y0, centre[1] - x0), radius, ring)
    if disc.sum() < 1 or rim.sum() < 1 or min(win.shape) < 2:
        return None
    img = win
    gy, gx = np.gradient(img)
    g2 = gy**2 + gx**2
    c = float(img[disc].mean() - img[rim].mean())
    ratio = float(g2[disc].mean() / max(g2[rim].mean(), 1e-12))
    inl = edge = outside = float("nan")
    if lung_mask is not None:
        from scipy import ndimage as ndi

        cy, cx = (int(np.clip(round(v), 0, n - 1)) for v, n in zip(centre, lung_mask.shape))
        inl = float(bool(lung_mask[cy, cx]))
        mwin = np.asarray(lung_mask[y0 : y0 + win.shape[0], x0 : x0 + win.shape[1]], bool)
        if mwin.shape == win.shape:
            outside = float(1.0 - mwin[disc].mean())
            ly, lx = (int(np.clip(v, 0, n - 1)) for v, n in zip((cy - y0, cx - x0), mwin.shape))
            cap = float(h)
            if mwin.all() or not mwin.any():
                d = cap
            else:
                d = float(ndi.distance_transform_edt(mwin if mwin[ly, lx] else ~mwin)[ly, lx])
            edge = (min(d, cap) if mwin[ly, lx] else -min(d, cap)) / max(np.shape(image))
    return LesionStats(c, abs(c), ratio, 2 * radius, 2 * radius / max(np.shape(image)), inl, edge, outside)


def synthetic_stats(
    images: np.ndarray, synthesis_config, n_samples: int = 64, seed: int = 0, masks: np.ndarray | None = None
) -> list[LesionStats]:
    """Statistics of the anomalies that ``synthesis_config`` draws into ``n_samples`` samples of
    ``images`` (``(N, S, S)`` in [0, 1], each target with a source from another image)."""
    from .anatomy import lung_mask_cxr
    from .synthesis import make_synthesizer

    imgs = np.asarray(images, dtype=np.float64)
    if imgs.ndim != 3 or len(imgs) == 0:
        raise InputError(f"realism statistics need a (N, H, W) stack of images, got shape {imgs.shape}")
    lungs = masks if masks is not None else np.stack([lung_mask_cxr(a) for a in imgs])
    synth = make_synthesizer(synthesis_config)
    rng = np.random.default_rng(seed)
    out: list[LesionStats] = []
    for _ in range(n_samples):
        i = int(rng.integers(len(imgs)))
        j = int(rng.integers(len(imgs))) if len(imgs) > 1 else i
        if j == i and len(imgs) > 1:
            j = (i + 1) % len(imgs)
        src = None if j == i else imgs[j]
        res = synth.sample(
            imgs[i],
            src,
            rng=rng,
            mask=lungs[i] if synth.config.placement != "anywhere" else None,
            source_mask=None if src is None else lungs[j],
        )
        out.extend(result_stats(res, lungs[i]))
    return out


def result_stats(result, lung_mask: np.ndarray | None = None) -> list[LesionStats]:
    """Statistics of every anomaly of one :class:`~napari_ppii.synthesis.SynthesisResult` (2D)."""
    stats = []
    img = np.asarray(result.image)
    for spec in result.plan:
        if spec.radii:
            c = np.mean(np.asarray(spec.centres), 0) + np.asarray(spec.target_start)
            r = float(np.mean(spec.radii))
        else:
            c = np.asarray(spec.target_start) + (np.asarray(spec.size) - 1) / 2.0
            r = float(min(spec.size)) / 2.0
        s = lesion_stats(img, c, r, lung_mask)
        if s is not None:
            stats.append(s)
    return stats


def box_stats(image: np.ndarray, boxes: Iterable, lung_mask: np.ndarray | None = None) -> list[LesionStats]:
    """Statistics of real lesions given as boxes (:class:`~napari_ppii.io.Box`, on ``image``'s grid)."""
    out = []
    for b in boxes:
        r = (min(b.size) - 1) / 2.0 + 0.5
        s = lesion_stats(image, b.centre, r, lung_mask)
        if s is not None:
            out.append(s)
    return out


def summarise(stats: Sequence[LesionStats]) -> dict:
    """Median, 10th and 90th percentile of each quantity (``in_lungs``: the mean), and the count."""
    out: dict = {"n": len(stats)}
    if not stats:
        return out
    for q in QUANTITIES:
        v = np.array([getattr(s, q) for s in stats], dtype=float)
        v = v[np.isfinite(v)]
        if q == "in_lungs":
            out[q] = float(v.mean()) if v.size else float("nan")
        elif v.size:
            q10, med, q90 = np.quantile(v, [0.1, 0.5, 0.9])
            out[q] = {"median": float(med), "q10": float(q10), "q90": float(q90)}
    pos = np.array([s.contrast > 0 for s in stats])
    out["brighter_fraction"] = float(pos.mean())
    return out


def comparison_table(groups: dict[str, dict]) -> str:
    """A Markdown table of :func:`summarise` outputs side by side."""
    names = list(groups)
    lines = ["| quantity | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for q in (
        "abs_contrast",
        "contrast",
        "gradient_ratio",
        "diameter_frac",
        "in_lungs",
        "edge_distance_frac",
        "outside_frac",
        "brighter_fraction",
    ):
        cells = []
        for n in names:
            v = groups[n].get(q)
            if isinstance(v, dict):
                cells.append(f"{v['median']:.3f} [{v['q10']:.3f}, {v['q90']:.3f}]")
            elif v is None:
                cells.append("-")
            else:
                cells.append(f"{v:.2f}")
        lines.append(f"| {q} | " + " | ".join(cells) + " |")
    lines.append("| n | " + " | ".join(str(groups[n].get("n", 0)) for n in names) + " |")
    return "\n".join(lines)


def load_realism_data(data: str | Path, boxes: str | Path | None, cfg, labels: Sequence[str] | None = None):
    """Images (model input) of a CSV / folder / image, and the real lesions in them.

    Returns ``(normal images, lesion images, lesion boxes per lesion image)``, every image at the model's
    input size.  A CSV's rows with boxes are lesions (only ``labels`` findings, when given); its other
    rows (label normal, or no box) are normals.  A folder: every image is a normal, unless ``boxes``
    (a CSV keyed on image file names) gives boxes for it.
    """
    from .io import read_boxes, read_scan
    from .io.readers import scan_files
    from .preprocess import model_input

    path = Path(data)
    if not path.exists():
        raise InputError("data not found", path)
    wanted = None if not labels else {s.lower() for s in labels}
    by_image: dict[Path, list] = {}
    if path.suffix.lower() == ".csv":
        import csv

        rows = list(csv.DictReader(path.open(newline="", encoding="utf-8-sig")))
        if not rows or "image" not in rows[0]:
            raise InputError("annotations CSV needs an 'image' column", path)
        for r in rows:
            by_image.setdefault(path.parent / r["image"], [])
        for b in read_boxes(path):
            if b.image and (wanted is None or b.label.lower() in wanted):
                by_image.setdefault(path.parent / b.image, []).append(b)
    else:
        files = [path] if path.is_file() else scan_files(path)
        if not files:
            raise InputError("no image files", path)
        given = read_boxes(boxes) if boxes else []
        for f in files:
            by_image[f] = [
                b
                for b in given
                if b.image and Path(b.image).name == f.name and (wanted is None or b.label.lower() in wanted)
            ]
    s = cfg.data.image_size
    normals, les_imgs, les_boxes = [], [], []
    for f, bx in by_image.items():
        scan = read_scan(f)
        if scan.ndim != 2:
            raise InputError("realism statistics take 2D radiographs (a CT series: use its slices)", f)
        x = model_input(scan, cfg)[0]
        h, w = scan.shape
        if bx:
            les_imgs.append(x)
            les_boxes.append([b.to_2d().scaled((s / h, s / w)) for b in bx])
        else:
            normals.append(x)
    return (np.stack(normals) if normals else np.zeros((0, s, s), np.float32)), les_imgs, les_boxes


def realism_report(
    data, out_dir, cfg, boxes=None, labels=None, n_samples: int = 64, seed: int = 0, configs: dict | None = None
) -> dict:
    """Measure synthetic anomalies (one group per configuration in ``configs``, default ``cfg.synthesis``)
    and real lesions of ``data``; write ``realism.md``, ``realism.json`` and histograms to ``out_dir``."""
    from .anatomy import lung_mask_cxr

    normals, les_imgs, les_boxes = load_realism_data(data, boxes, cfg, labels)
    pool = normals if len(normals) else (np.stack(les_imgs) if les_imgs else normals)
    if len(pool) == 0:
        raise InputError("no images to synthesise into", data)
    groups_stats: dict[str, list[LesionStats]] = {}
    for name, scfg in (configs or {f"synthetic ({cfg.synthesis.method})": cfg.synthesis}).items():
        groups_stats[name] = synthetic_stats(pool, scfg, n_samples, seed)
    if les_imgs:
        real = []
        for x, bx in zip(les_imgs, les_boxes):
            real.extend(box_stats(x, bx, lung_mask_cxr(x)))
        groups_stats["real lesions"] = real
    summary = {k: summarise(v) for k, v in groups_stats.items()}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = comparison_table(summary)
    (out / "realism.md").write_text(
        f"# Realism statistics\n\nData: {data}\n\n{table}\n\n"
        "Cells: median [10th, 90th percentile]; in_lungs and brighter_fraction: fractions.\n"
    )
    _histograms(groups_stats, out / "realism_hist.png")
    result = {
        "data": str(data),
        "groups": summary,
        "values": {k: [s.to_dict() for s in v] for k, v in groups_stats.items()},
    }
    (out / "realism.json").write_text(json.dumps(result, indent=1))
    return {"data": str(data), "groups": summary, "table": str(out / "realism.md")}


def _histograms(groups: dict[str, list[LesionStats]], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 3.2))
    for ax, q in zip(fig.subplots(1, 3), ("abs_contrast", "gradient_ratio", "diameter_frac")):
        for name, st in groups.items():
            v = np.array([getattr(s, q) for s in st], dtype=float)
            v = v[np.isfinite(v)]
            if q == "gradient_ratio":
                v = np.log10(np.maximum(v, 1e-3))
            if v.size:
                ax.hist(v, bins=30, alpha=0.5, density=True, label=name)
        ax.set_title("log10 gradient ratio" if q == "gradient_ratio" else q)
    fig.axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
