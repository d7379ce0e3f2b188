# SPDX-License-Identifier: BSD-3-Clause
"""Scoring a model on real test scans: load the test set, predict, compute every metric with CIs.

Test data:

* an annotations CSV like ``../shared/data/jsrt/annotations.csv`` -- rows with ``split == test`` (all
  rows when there is no split column); one row per box (or per image for normals, empty box); image
  paths relative to the CSV; ``labels`` keeps only boxes of those findings (e.g. Nodule, Mass);
* a CT series folder or volume file with a boxes file (LIDC XML or CSV).  LIDC readers' boxes of
  nodules >= 3 mm are merged into one lesion per overlapping group (the union box), so a nodule four
  radiologists marked is one lesion, not four.
"""

from __future__ import annotations

import csv
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from ..errors import InputError
from ..io import Box, read_boxes, read_scan
from ..io.boxes import boxes_outside
from ..io.scan import Scan

if TYPE_CHECKING:
    from ..prior import PriorSettings

from .metrics import (
    DEFAULT_DETECT_SCALE,
    FROC_RATES,
    auroc_from_histograms,
    bootstrap_ci,
    extract_candidates,
    froc,
    lesion_mask,
    match_candidates,
    pixel_histograms,
    EdgeSampler,
    sample_score,
)


@dataclass
class TestItem:
    name: str
    path: Path
    boxes: list[Box]
    scan: Scan | None = None  # loaded lazily

    @property
    def positive(self) -> bool:
        return len(self.boxes) > 0


@dataclass
class EvalOptions:
    score: str = "topk"
    topk_percent: float = 1.0
    region: str = "box"
    min_distance: int = 8
    max_candidates: int = 50
    detect_scale: float = DEFAULT_DETECT_SCALE  # candidates from the map smoothed at this fraction of the side (0: raw)
    n_boot: int = 1000
    seed: int = 0
    bins: int = 4096
    samples: int | None = None
    restrict: str | None = None  # old spelling of prior=lungs with floor 0 ("lungs")
    prior: "PriorSettings | None" = None  # the map weighted by a soft organ prior (napari_ppii.prior); None: raw

    def __post_init__(self):
        from ..prior import PriorSettings

        if self.prior is None and self.restrict == "lungs":
            self.prior = PriorSettings("lungs", 0.03, 0.0)
        if self.prior is None:
            self.prior = PriorSettings("none")


def load_csv_test_set(
    path: str | Path, labels: Sequence[str] | None = None, split: str = "test", limit: int | None = None
) -> list[TestItem]:
    path = Path(path)
    if not path.is_file():
        raise InputError("test annotations not found", path)
    with path.open(newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "image" not in rows[0]:
        raise InputError("test CSV needs an 'image' column", path)
    has_split = "split" in rows[0]
    wanted = None if not labels else {s.lower() for s in labels}
    items: OrderedDict[str, TestItem] = OrderedDict()
    all_boxes = read_boxes(path)
    by_image: dict[str, list[Box]] = {}
    for b in all_boxes:
        if wanted is None or b.label.lower() in wanted:
            by_image.setdefault(b.image, []).append(b)
    for r in rows:
        if has_split and split != "all" and (r.get("split") or "").strip().lower() != split:
            continue
        img = r["image"]
        if img not in items:
            items[img] = TestItem(Path(img).stem, path.parent / img, by_image.get(img, []))
    out = list(items.values())
    if not out:
        raise InputError(f"no test rows (split={split})", path)
    return out[:limit] if limit else out


def merge_overlapping(boxes: Sequence[Box], label: str = "lesion") -> list[Box]:
    """One box per group of overlapping boxes (their union; ``n_readers``: how many readers drew it)."""
    groups: list[list[Box]] = []
    for b in boxes:
        joined = [
            g for g in groups if any(all(x.lo[d] <= b.hi[d] and b.lo[d] <= x.hi[d] for d in range(b.ndim)) for x in g)
        ]
        merged = [b] + [x for g in joined for x in g]
        groups = [g for g in groups if g not in joined] + [merged]
    out = []
    for g in groups:
        lo = tuple(min(b.lo[d] for b in g) for d in range(g[0].ndim))
        hi = tuple(max(b.hi[d] for b in g) for d in range(g[0].ndim))
        out.append(
            Box(
                lo,
                hi,
                label=label,
                properties={"n_readers": len({b.properties.get("reader_index", i) for i, b in enumerate(g)})},
            )
        )
    return out


def merge_reader_boxes(boxes: Sequence[Box], kinds: tuple[str, ...] = ("nodule>=3mm",)) -> list[Box]:
    """One lesion per group of overlapping reader boxes of these kinds (union box, readers counted)."""
    return merge_overlapping([b for b in boxes if b.label in kinds or b.properties.get("kind") in kinds], "nodule")


def lesion_boxes(boxes: Sequence[Box]) -> list[Box]:
    """The one lesion rule of the evaluation, the docks and the summaries.  LIDC readers' marks (labels
    ``nodule>=3mm``, ``nodule<3mm``, ``non-nodule``): one lesion per group of overlapping >= 3 mm nodule
    boxes -- the < 3 mm point marks and non-nodules are not lesions.  Other boxes: overlapping boxes are
    one lesion (their union)."""
    if any(b.label.startswith("nodule") or b.label == "non-nodule" for b in boxes):
        return merge_reader_boxes(boxes)
    return merge_overlapping(list(boxes))


def load_volume_test_set(path: str | Path, boxes: str | Path | None) -> list[TestItem]:
    scan = read_scan(path)
    if scan.ndim != 3:
        raise InputError("expected a CT volume or DICOM series for volume evaluation", path)
    if boxes is None:
        raise InputError("volume evaluation needs --boxes (LIDC XML or CSV)")
    bx = read_boxes(boxes, scan.slice_positions)
    lesions = lesion_boxes([b for b in bx if b.ndim == 3])
    inside = [b for b in lesions if b.hi[0] >= 0 and b.lo[0] <= scan.shape[0] - 1]
    if lesions and not inside:
        zs = ", ".join(f"{b.lo[0]:g}-{b.hi[0]:g}" for b in lesions[:4])
        raise InputError(
            f"none of the {len(lesions)} lesion(s) in {Path(boxes).name} lies within this scan's "
            f"{scan.shape[0]} slices (their slice ranges: {zs}): do the boxes belong to this scan?",
            path,
        )
    return [TestItem(Path(path).name, Path(path), inside, scan)]


def _stat_block(values: dict, key: str, stat: Callable, n: int, opts: EvalOptions) -> None:
    values[key] = stat(np.arange(n))
    values[f"{key}_ci"] = list(bootstrap_ci(stat, n, opts.n_boot, opts.seed))


def score_maps(
    maps: Sequence[np.ndarray],
    boxes: Sequence[Sequence[Box]],
    opts: EvalOptions,
    three_d: bool = False,
    regions: Sequence[np.ndarray] | None = None,
    full: bool = True,
    names: Sequence[str] | None = None,
) -> dict:
    """All metrics for a list of maps (2D images, or 3D volumes with ``three_d``) and their boxes.

    ``names`` (one per map) add ``first_hit``: for each map with a lesion, the rank of the first
    candidate that lands on one (1 = the strongest detection; 0 = none of the candidates).  ``regions``
    (bool masks like the maps, e.g. the lung fields) add ``pixel_auroc_lung``: the pixel AUROC over pixels
    inside the regions only.  ``full=False`` leaves out the curves and per-image
    scores (the floors' entries)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    n = len(maps)
    # two passes over the maps, each map taken once per pass (``maps`` may compute them on demand, as the
    # floors of a CT volume are: never all held at once): what is small first (bin-edge sample, score,
    # candidates), then the pixel histograms on those edges
    sampler = EdgeSampler(n, seed=opts.seed)
    scores, cands = [], []
    for m in maps:
        sampler.add(m)
        scores.append(sample_score(m, opts.score, opts.topk_percent))
        cands.append(extract_candidates(m, opts.min_distance, opts.max_candidates, scale=opts.detect_scale))
    edges = sampler.edges(opts.bins)
    hists, rh = [], []
    for i, m in enumerate(maps):
        g = lesion_mask(boxes[i], m.shape, opts.region)
        hists.append(pixel_histograms(m, g, edges))
        if regions is not None:
            r = regions[i]
            rh.append(pixel_histograms(m[r], g[r], edges))
    pos = np.stack([h[0] for h in hists])
    neg = np.stack([h[1] for h in hists])
    scores = np.array(scores)
    labels = np.array([len(b) > 0 for b in boxes])
    hits = [match_candidates(c, b) for c, b in zip(cands, boxes)]
    hits_c = [match_candidates(c, b, "centre") for c, b in zip(cands, boxes)]

    out: dict = {"n_images": n, "n_positive": int(labels.sum()), "n_lesions": int(sum(len(b) for b in boxes))}
    _stat_block(out, "pixel_auroc", lambda idx: auroc_from_histograms(pos[idx].sum(0), neg[idx].sum(0)), n, opts)
    if regions is not None:
        rpos = np.stack([h[0] for h in rh])
        rneg = np.stack([h[1] for h in rh])
        _stat_block(
            out, "pixel_auroc_lung", lambda idx: auroc_from_histograms(rpos[idx].sum(0), rneg[idx].sum(0)), n, opts
        )

    def s_auc(idx):
        y = labels[idx]
        return float(roc_auc_score(y, scores[idx])) if 0 < y.sum() < len(y) else float("nan")

    def s_ap(idx):
        y = labels[idx]
        return float(average_precision_score(y, scores[idx])) if 0 < y.sum() else float("nan")

    _stat_block(out, "sample_auroc", s_auc, n, opts)
    _stat_block(out, "sample_ap", s_ap, n, opts)
    for tag, hh in (("", hits), ("_centre", hits_c)):
        curve = froc(hh)
        out[f"froc{tag}"] = {str(k): v for k, v in curve.at.items()}
        if full:
            out[f"froc{tag}_curve"] = {
                "fps_per_image": curve.fps_per_image.tolist(),
                "sensitivity": curve.sensitivity.tolist(),
            }
        rng = np.random.default_rng(opts.seed)
        boots = []
        for _ in range(opts.n_boot):
            idx = rng.integers(0, n, n)
            boots.append(froc([hh[i] for i in idx]).at)
        out[f"froc{tag}_ci"] = {
            str(r): [
                float(np.nanpercentile([b[r] for b in boots], 2.5)) if boots else float("nan"),
                float(np.nanpercentile([b[r] for b in boots], 97.5)) if boots else float("nan"),
            ]
            for r in FROC_RATES
        }
        out[f"froc{tag}_at_10fp"] = out[f"froc{tag}"]["10.0"]
        out[f"froc{tag}_at_10fp_ci"] = out[f"froc{tag}_ci"]["10.0"]
    # the strongest detection of each image with a lesion: does it land on one? (what a reader looks at first)
    ranks = [(nm, first_hit_rank(h)) for nm, h in zip(names or range(n), hits) if h.n_lesions > 0]
    top1 = [r == 1 for _, r in ranks]
    out["top1_hit"] = float(np.mean(top1)) if top1 else float("nan")
    out["top1_hits"] = [int(sum(top1)), len(top1)]
    if full and names is not None:
        out["first_hit"] = {str(nm): r for nm, r in ranks}
    if full:
        out["sample_scores"] = scores.tolist()
        out["sample_labels"] = labels.astype(int).tolist()
    out["unit"] = "volume" if three_d else "image"
    return out


def first_hit_rank(h) -> int:
    """1-based rank of the first candidate on a lesion (strongest first); 0 when none lands on one."""
    on = np.flatnonzero(np.asarray(h.lesion) >= 0)
    return int(on[0]) + 1 if len(on) else 0


#: The headline figures copied next to each other (model and floors).
HEADLINE = (
    "pixel_auroc",
    "pixel_auroc_lung",
    "froc_at_10fp",
    "froc_centre_at_10fp",
    "sample_auroc",
    "sample_ap",
    "top1_hit",
    "top1_hits",
)


@dataclass
class Evaluation:
    metrics: dict
    maps: list[np.ndarray] = field(default_factory=list)
    items: list[TestItem] = field(default_factory=list)
    candidates: list = field(default_factory=list)


def restrict_to_lungs(amap: np.ndarray, lungs: Sequence[np.ndarray]) -> np.ndarray:
    """The map times the soft lung-field prior without a floor (per image / slice); see
    :mod:`napari_ppii.prior` for the prior with a floor that ``--prior`` applies."""
    from ..prior import PriorSettings, apply_prior

    mask = np.stack(list(lungs)) if amap.ndim == 3 else lungs[0]
    return apply_prior(amap, mask, PriorSettings("lungs", 0.03, 0.0))


def _lungs_and_display(scan: Scan):
    """Per 2D image / slice: the lung mask and a [0, 1] display image (CT: lung window)."""
    from ..anatomy import lung_mask_ct, lung_mask_cxr
    from ..preprocess import apply_window, window_limits

    if scan.ndim == 3:  # the displays are made when a floor needs them: a volume's are never all held
        lungs = lung_mask_ct(scan.array)
        lo, hi = window_limits("lung")
        return list(lungs), [(lambda s=s: apply_window(s, lo, hi)) for s in scan.array]
    arr = np.asarray(scan.array, dtype=np.float32)
    if arr.ndim == 3:  # colour
        arr = arr[..., :3].mean(-1)
    return [lung_mask_cxr(arr)], [None]


def evaluate(
    predictor,
    items: Sequence[TestItem],
    opts: EvalOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
    keep_maps: int = 8,
    floors: bool | Sequence[str] = True,
    atlas: np.ndarray | None = None,
    prior_mask: np.ndarray | None = None,
) -> Evaluation:
    """Predict every test item with the training pre-processing and score the maps.

    For volumes, metrics are reported per slice (each slice an image, slice boxes = the 3D boxes'
    cross-sections) under ``per_slice`` and per 3D lesion under ``per_lesion_3d``.  ``floors``: also
    score the non-learned maps of :mod:`napari_ppii.evaluation.floors` (all, or the names given) with the
    same code, under ``metrics["floors"]`` (``atlas``: the training normals' mean, for the atlas floor).
    ``predictor`` None scores the floors only.

    ``opts.prior`` (kind ``lungs`` or ``mask``; ``prior_mask``: the mask for kind ``mask``, of every
    item's shape) scores the prior-weighted maps as the model's figures and the raw maps beside them
    under ``metrics["raw"]``; ``metrics["prior"]`` records the settings.
    """
    from ..prior import prior_mask as _prior_mask, weigh_in_place
    from .floors import FLOORS, LazyMaps, floor_map_2d

    opts = opts or EvalOptions()
    wanted = list(FLOORS) if floors is True else list(floors or [])
    if atlas is None and "atlas" in wanted:
        wanted.remove("atlas")
    floor_inputs: list[tuple] = []  # per image / slice: (image, lung mask, display): floors made when scored
    maps, boxes, kept, regions, names = [], [], [], [], []
    vol_maps, vol_boxes = [], []
    prior = opts.prior
    to_weigh: list[tuple] = []  # (raw map, prior mask per image / slice, the scan's prior): weighted after scoring
    warnings: list[str] = []
    for i, it in enumerate(items):
        scan = it.scan if it.scan is not None else read_scan(it.path)
        outside = boxes_outside(it.boxes, scan.shape)
        if outside:
            b = outside[0]
            raise InputError(
                f"{len(outside)} of its {len(it.boxes)} box(es) lie outside the {scan.shape} scan (e.g. "
                f"{tuple(round(v) for v in b.lo)}-{tuple(round(v) for v in b.hi)}): do the boxes belong "
                "to this image, in its pixels?",
                it.path,
            )
        check = getattr(predictor, "modality_warning", None)  # any object with predict_scan can be scored
        warning = check(scan) if check is not None else None
        if warning and warning not in warnings:
            warnings.append(warning)
        lungs, displays = _lungs_and_display(scan)
        amap = predictor.predict_scan(scan, samples=opts.samples).mean if predictor is not None else None
        if amap is not None and prior.kind != "none":
            # the raw map is scored first; then it is weighted by the prior in place (below): a CT volume's
            # raw and weighted maps are never held side by side
            pm = lungs if prior.kind == "lungs" else _prior_mask(scan, prior, prior_mask)
            to_weigh.append((amap, pm, prior.for_scan(scan)))
        if scan.ndim == 3:
            if amap is not None:
                vol_maps.append(amap)
            vol_boxes.append(it.boxes)
            for z in range(scan.shape[0]):
                if amap is not None:
                    maps.append(amap[z])
                boxes.append([b.to_2d() for b in it.boxes if b.lo[0] <= z <= b.hi[0]])
                names.append(f"{it.name} z={z}")
        else:
            if amap is not None:
                maps.append(amap)
            boxes.append(it.boxes)
            names.append(it.name)
        regions.extend(lungs)
        if wanted:
            planes = list(scan.array) if scan.ndim == 3 else [scan.array]
            floor_inputs += [
                (p if p.ndim == 2 else p[..., :3].mean(-1), lung, disp)
                for p, lung, disp in zip(planes, lungs, displays)
            ]
        if len(kept) < keep_maps and amap is not None:
            it.scan = scan
            kept.append((it, scan, amap))
        if progress is not None:
            progress(i + 1, len(items))
    raw_metrics = None
    if to_weigh:
        raw = score_maps(maps, boxes, opts, regions=regions, full=False)
        raw_metrics = {h: raw[h] for h in HEADLINE if h in raw} | {
            f"{h}_ci": raw[f"{h}_ci"] for h in HEADLINE if f"{h}_ci" in raw
        }
        if vol_maps:
            r3 = score_maps(vol_maps, vol_boxes, opts, three_d=True, full=False)
            raw_metrics["per_lesion_3d"] = {h: r3[h] for h in HEADLINE if h in r3}
        for amap, pm, scan_prior in to_weigh:  # now the model's map: the raw map x the prior, in place
            weigh_in_place(amap, pm, scan_prior)
    metrics: dict = score_maps(maps, boxes, opts, regions=regions, names=names) if maps else {}
    if vol_maps:
        metrics = {
            "per_slice": metrics,
            "per_lesion_3d": score_maps(vol_maps, vol_boxes, opts, three_d=True, names=[it.name for it in items]),
        }
        for k in (
            "pixel_auroc",
            "pixel_auroc_ci",
            "pixel_auroc_lung",
            "pixel_auroc_lung_ci",
            "froc_at_10fp",
            "froc_at_10fp_ci",
            "froc_centre_at_10fp",
            "froc_centre_at_10fp_ci",
            "sample_auroc",
            "sample_auroc_ci",
            "sample_ap",
            "sample_ap_ci",
        ):
            metrics[k] = metrics["per_slice"][k]
    if raw_metrics is not None:
        metrics["raw"] = raw_metrics
    metrics["prior"] = prior.to_dict()
    if warnings:
        metrics["warnings"] = warnings
    if wanted:
        metrics["floors"] = {}
        for k in wanted:
            lazy = LazyMaps(
                lambda i, k=k: floor_map_2d(
                    k, floor_inputs[i][0], floor_inputs[i][1], atlas, seed=(opts.seed, i), display=floor_inputs[i][2]
                ),
                len(floor_inputs),
            )
            fm = score_maps(lazy, boxes, opts, regions=regions, full=False)
            metrics["floors"][k] = {h: fm[h] for h in HEADLINE if h in fm} | {
                f"{h}_ci": fm[f"{h}_ci"] for h in HEADLINE if f"{h}_ci" in fm
            }
    metrics["settings"] = {
        "pixel_region": opts.region,
        "sample_score": opts.score if opts.score != "topk" else f"mean of top {opts.topk_percent}% of pixels",
        "candidates": f"local maxima >= {opts.min_distance} px apart, at most {opts.max_candidates} per image, "
        + (
            f"of the map smoothed by a Gaussian of {opts.detect_scale:g} x the image side (in-plane), scored there"
            if opts.detect_scale > 0
            else "scored by peak"
        ),
        "detect_scale": opts.detect_scale,
        "hit_rule": "peak inside the ground-truth box; each lesion counted once; repeats inside a hit lesion ignored",
        "hit_rule_centre": "froc_centre: peak within the lesion's radius (half its smallest box side) of its centre "
        "(LUNA16)",
        "pixel_auroc_lung": "pixel AUROC over the pixels inside the lung fields (napari_ppii.anatomy) only",
        "floors": "non-learned maps scored with the same code: " + ", ".join(wanted) if wanted else "none",
        "ci": f"95% percentile bootstrap over images, {opts.n_boot} resamples, seed {opts.seed}",
        "samples": opts.samples,
        "prior": prior.describe(),
    }
    ev = Evaluation(metrics)
    for it, scan, amap in kept:
        ev.items.append(it)
        ev.maps.append(amap)
    return ev
