# SPDX-License-Identifier: BSD-3-Clause
"""Metrics of the paper (section 3): pixel AUROC, sample AUROC and AP, FROC; bootstrap CIs.

Definitions (stated in every report):

* **Pixel AUROC** -- every pixel of every test image; a pixel is anomalous when it lies inside a
  ground-truth box (inclusive, :class:`~napari_ppii.io.Box`), or optionally inside the disc (ellipse)
  inscribed in the box.  Computed from per-image score histograms over ``bins`` bins whose edges are
  quantiles of the pooled scores (so maps that are near zero almost everywhere keep their ordering;
  ties within a bin count one half): equal to scikit-learn's AUROC within about ``1/bins``, and the
  bootstrap resamples images cheaply.
* **Sample score** -- one number per image from its map: ``max``, ``mean``, or ``topk`` = the mean of
  the top ``k`` percent of pixels (default: top 1 %, a max that one hot pixel cannot decide).  Sample
  AUROC and AP (scikit-learn) with images holding a lesion as positives.
* **FROC** -- candidates are the local maxima of each map (``skimage.feature.peak_local_max``,
  ``min_distance`` pixels apart, at most ``max_candidates`` per image), scored by their peak value;
  with a detection scale (``EvalOptions.detect_scale``), of the map smoothed by a Gaussian of that
  fraction of the image side (in-plane), so a lesion-sized blob outscores a thin line of the same peak.
  Hit rule: a candidate *hits* a lesion when its peak lies inside the lesion's box (``box``; or, the
  strict rule ``centre``, within the lesion's radius of its centre, as LUNA16); each lesion counts
  once (its best candidate); further candidates inside an already-hit lesion are neither hits nor false
  positives; a candidate in no box is a false positive.  Sweeping the threshold over candidate scores
  gives sensitivity against the average number of false positives per image; the sensitivity at a
  rate is the best one reached with at most that many FPs per image.  Volumes: per slice (each slice
  an image) and per 3D lesion (3D local maxima, 3D boxes, FPs per volume).
* **Confidence intervals** -- percentile bootstrap over images (``n_boot`` resamples, seeded).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..io.boxes import Box

FROC_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 10.0)

#: The default detection scale (:func:`detection_map`) of ``ppii evaluate`` and the docks, chosen by the rule
#: fixed before the sweep (``benchmarks/prior_sweep.py --detect-scales``: the shipped models on the NIH
#: Nodule/Mass boxes and LIDC-IDRI-0002; top-1 rate tied at every scale, mean FROC@10FP highest at 0.01),
#: never on the JSRT test rows or the bundled demo scans.  benchmarks/README.md, "Detection scale".
DEFAULT_DETECT_SCALE = 0.01


# --------------------------------------------------------------------------------------------------
# ground truth masks and sample scores
# --------------------------------------------------------------------------------------------------
def lesion_mask(boxes: Sequence[Box], shape: Sequence[int], region: str = "box") -> np.ndarray:
    """Pixels inside any box (``region='box'``) or the ellipse inscribed in it (``'disc'``)."""
    m = np.zeros(tuple(shape), bool)
    for b in boxes:
        if region == "box":
            m |= b.mask(shape)
        elif region == "disc":
            grids = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
            r = [max((h - lo) / 2 + 0.5, 0.5) for lo, h in zip(b.lo, b.hi)]
            c = b.centre
            m |= sum(((g - ci) / ri) ** 2 for g, ci, ri in zip(grids, c, r)) <= 1.0
        else:
            raise ValueError(f"region must be 'box' or 'disc', got {region!r}")
    return m


def sample_score(amap: np.ndarray, kind: str = "topk", k: float = 1.0) -> float:
    """One anomaly score per image: ``max``, ``mean``, or ``topk`` (mean of the top ``k`` percent)."""
    a = np.asarray(amap).reshape(-1)  # as stored (float32): the same values as a float64 copy, none made
    if kind == "max":
        return float(a.max())
    if kind == "mean":
        return float(a.mean(dtype=np.float64))
    if kind == "topk":
        n = max(1, int(round(a.size * k / 100.0)))
        return float(np.partition(a, a.size - n)[a.size - n :].astype(np.float64).mean())
    raise ValueError(f"sample score kind must be max, mean or topk, got {kind!r}")


# --------------------------------------------------------------------------------------------------
# pixel AUROC from histograms
# --------------------------------------------------------------------------------------------------
def quantile_edges(maps: Sequence[np.ndarray], bins: int = 4096, sample: int = 400_000, seed: int = 0) -> np.ndarray:
    """Bin edges at quantiles of the pooled map values (a seeded subsample)."""
    sampler = EdgeSampler(len(maps), sample, seed)
    for m in maps:
        sampler.add(m)
    return sampler.edges(bins)


class EdgeSampler:
    """:func:`quantile_edges` one map at a time (the same draws, in the same order), for maps that are
    computed on demand and never held all at once."""

    def __init__(self, n_maps: int, sample: int = 400_000, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.per = max(1, sample // max(1, n_maps))
        self.vals: list[np.ndarray] = []

    def add(self, m: np.ndarray) -> None:
        # the draw of rng.choice(values, k) taken as indices: the same values, no float64 copy of the map
        flat = np.asarray(m).reshape(-1)
        idx = self.rng.choice(flat.size, min(self.per, flat.size), replace=False)
        self.vals.append(flat[idx].astype(np.float64))

    def edges(self, bins: int) -> np.ndarray:
        return np.unique(np.quantile(np.concatenate(self.vals), np.linspace(0.0, 1.0, bins + 1)))


def pixel_histograms(
    amap: np.ndarray, mask: np.ndarray, edges: np.ndarray | int = 1000
) -> tuple[np.ndarray, np.ndarray]:
    """Counts of anomalous and normal pixels per score bin.  ``edges``: increasing bin edges (values
    outside go to the end bins), or a number of equal bins on [0, 1]."""
    flat = np.asarray(amap).reshape(-1)
    mflat = np.asarray(mask, bool).reshape(-1)
    nb = int(edges) if np.isscalar(edges) else max(1, len(edges) - 1)
    pos = np.zeros(nb, np.int64)
    neg = np.zeros(nb, np.int64)
    step = 1 << 22  # chunks of 4M values: a CT volume's map is binned without float64 / int64 copies of it
    for s in range(0, flat.size, step):
        a = flat[s : s + step].astype(np.float64)
        if np.isscalar(edges):
            idx = np.clip((a * nb).astype(np.int64), 0, nb - 1)
        else:
            idx = np.clip(np.searchsorted(edges, a, side="right") - 1, 0, nb - 1)
        m = mflat[s : s + step]
        pos += np.bincount(idx[m], minlength=nb)
        neg += np.bincount(idx[~m], minlength=nb)
    return pos, neg


def auroc_from_histograms(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(score_pos > score_neg) + 0.5 P(tie), ties = same bin."""
    n_pos, n_neg = pos.sum(), neg.sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    neg_below = np.cumsum(neg) - neg
    return float((pos * (neg_below + 0.5 * neg)).sum() / (n_pos * n_neg))


# --------------------------------------------------------------------------------------------------
# FROC
# --------------------------------------------------------------------------------------------------
@dataclass
class Candidates:
    """Scored candidates of one image: peak positions (array index order) and scores."""

    points: np.ndarray  # (n, ndim)
    scores: np.ndarray  # (n,)


def detection_map(amap: np.ndarray, scale: float = 0.0) -> np.ndarray:
    """The map the candidates are taken from: ``amap`` itself (``scale`` 0), or ``amap`` smoothed by a
    Gaussian of ``scale`` x the image side, in-plane only (a volume: each slice; slices are often far
    thicker than pixels), so that a candidate's score sums the map over a lesion-sized neighbourhood: a
    blob of anomaly outscores a thin line (a vessel, a rib edge) of the same peak value."""
    a = np.asarray(amap)
    if a.dtype.kind != "f":
        a = a.astype(np.float64)
    if scale <= 0:
        return a
    from scipy.ndimage import gaussian_filter

    side = max(a.shape[-2:])
    sig = [0.0] * (a.ndim - 2) + [scale * side] * 2
    return gaussian_filter(a.astype(np.float32, copy=False), sig, mode="nearest")


def extract_candidates(
    amap: np.ndarray, min_distance: int = 8, max_candidates: int = 50, threshold: float = 0.0, scale: float = 0.0
) -> Candidates:
    """Local maxima of a map (2D or 3D), strongest first; with ``scale`` > 0, of the map smoothed at that
    lesion scale (:func:`detection_map`), scored there."""
    from skimage.feature import peak_local_max

    a = detection_map(amap, scale)
    pts = peak_local_max(
        a, min_distance=min_distance, threshold_abs=threshold, num_peaks=max_candidates, exclude_border=False
    )
    if len(pts) == 0:
        pts = np.array([np.unravel_index(int(np.argmax(a)), a.shape)])
    scores = a[tuple(pts.T)].astype(np.float64)
    order = np.argsort(-scores, kind="stable")
    return Candidates(pts[order], scores[order])


@dataclass
class ImageHits:
    """Per image: for each candidate, the lesion it hits (-1: a false positive; -2: a repeat hit,
    ignored); and the number of lesions."""

    scores: np.ndarray
    lesion: np.ndarray
    n_lesions: int


def match_candidates(cands: Candidates, boxes: Sequence[Box], rule: str = "box") -> ImageHits:
    """Apply a hit rule, best candidate first, each lesion once.

    ``box``: the peak lies inside the lesion's box.  ``centre``: the strict rule of the nodule-detection
    literature (LUNA16): the peak lies within the lesion's radius (half its smallest box side) of its
    centre."""
    lesion = np.full(len(cands.scores), -1, dtype=np.int64)
    hit = set()
    for i, p in enumerate(cands.points):  # strongest first
        inside = [j for j, b in enumerate(boxes) if _hits(b, p, rule)]
        if not inside:
            continue
        fresh = [j for j in inside if j not in hit]
        if fresh:
            lesion[i] = fresh[0]
            hit.add(fresh[0])
        else:
            lesion[i] = -2
    return ImageHits(cands.scores, lesion, len(boxes))


def _hits(b: Box, p, rule: str) -> bool:
    if rule == "box":
        return b.contains(p)
    if rule == "centre":
        r = (min(b.size) - 1) / 2.0 + 0.5
        return float(np.sqrt(sum((pi - ci) ** 2 for pi, ci in zip(p, b.centre)))) <= r
    raise ValueError(f"hit rule must be 'box' or 'centre', got {rule!r}")


@dataclass
class FROCResult:
    fps_per_image: np.ndarray
    sensitivity: np.ndarray
    thresholds: np.ndarray
    at: dict[float, float] = field(default_factory=dict)


def froc(hits: Sequence[ImageHits], rates: Sequence[float] = FROC_RATES) -> FROCResult:
    """The FROC curve over all images and the sensitivity at each FP rate."""
    n_images = len(hits)
    n_lesions = sum(h.n_lesions for h in hits)
    scores, kinds, lesion_ids = [], [], []
    for i, h in enumerate(hits):
        for s, les in zip(h.scores, h.lesion):
            if les == -2:
                continue
            scores.append(s)
            kinds.append(les >= 0)
            lesion_ids.append((i, int(les)))
    if not scores or n_lesions == 0:
        return FROCResult(
            np.zeros(1), np.zeros(1), np.zeros(1), {r: float("nan") if n_lesions == 0 else 0.0 for r in rates}
        )
    scores = np.asarray(scores)
    kinds = np.asarray(kinds)
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(kinds[order])
    fp = np.cumsum(~kinds[order])
    # a threshold keeps every candidate with score >= it: evaluate at the last of equal scores
    s_sorted = scores[order]
    last = np.r_[s_sorted[1:] != s_sorted[:-1], True]
    sens = np.r_[0.0, tp[last] / n_lesions]
    fppi = np.r_[0.0, fp[last] / n_images]
    thr = np.r_[np.inf, s_sorted[last]]
    at = {}
    for r in rates:
        ok = fppi <= r + 1e-12
        at[float(r)] = float(sens[ok].max()) if ok.any() else 0.0
    return FROCResult(fppi, sens, thr, at)


# --------------------------------------------------------------------------------------------------
# bootstrap
# --------------------------------------------------------------------------------------------------
def bootstrap_ci(stat, n: int, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile CI of ``stat(indices)`` over ``n_boot`` resamples of ``n`` images with replacement."""
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n_boot):
        v = stat(rng.integers(0, n, n))
        if np.isfinite(v):
            vals.append(v)
    if not vals:
        return float("nan"), float("nan")
    lo, hi = np.percentile(vals, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)
