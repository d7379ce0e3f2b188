# SPDX-License-Identifier: BSD-3-Clause
"""Natural Synthetic Anomalies (NSA; Schlueter et al., ECCV 2022), the patch drawing P-PII builds on.

Per image: the first patch always, each of ``nsa_patches - 1`` further patches with probability 1/2.
Each patch: sides drawn per axis from a gamma law (``patch_distribution`` gamma with ``patch_gamma``:
NSA's half-width ``0.03 + Gamma(2, 0.05)`` of the extent is a side of ``0.06 + Gamma(2, 0.1)``),
clipped to ``patch_size``; taken from another image of the batch (``pairwise``; the image itself when it
is alone) at a location of its own (NSA's *shift*), rescaled by ``r = clip(N(1, 0.5), *source_rescale)``
keeping its aspect ratio, and blended into the target box by a Poisson solve over the box with the
source gradients (NSA's normal clone) or the larger of source and target gradient (``mixed_gradients``,
NSA's mixed clone).  The object constraint is the placement mask (``placement`` lungs / mask): target
boxes keep ``placement_min_inside`` of their pixels on it, and with ``source_in_mask`` the source boxes
too.  No gradient up-scaling, no raters: the variance is zero.

Label (NSA's ``logistic-intensity``): ``d = |target - blended|``; ``m`` = ``d > label_tolerance``
median-filtered over a 5-pixel square (cube in 3D); ``i`` = ``m * d`` median-filtered over a disc (ball)
of radius ``label_median_radius``; label = ``m / (1 + exp(-label_k (i - label_x0)))``.  NSA's defaults in
0-255 units, ``(k, x0) = (1/6, 20)`` and tolerance 1, are ``label_k = 42.5``, ``label_x0 = 20/255`` and
``label_tolerance = 1/255`` on [0, 1] intensities (:meth:`SynthesisConfig.paper` ``("nsa")``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from .settings import ChangeLabel, LogisticLabel

from .backend import ops
from .base import Synthesizer
from .plan import AnomalySpec, round_side, sample_fraction
from .render import poisson_blend, render_blends
from . import poisson

#: Side of the square (cube) median filter that cleans NSA's binary change mask (OpenCV medianBlur 5).
MASK_MEDIAN = 5


class NSAParams(LogisticLabel, ChangeLabel):
    """NSA's own parameters (``paper``: NSA's public code's defaults: gamma_params (2, 0.05, 0.03) on the
    half-width, width bounds 0.05-0.2, resize 0.7-1.3, up to 3 patches, normal clone, logistic-intensity
    label (1/6, 20) on 0-255, tolerance 1; here sides and intensities are fractions of the extent and of
    [0, 1])."""

    # in the lungs the same nodule-sized sides as P-PII (NSA's own: ``paper`` / configs/paper_nsa.yaml)
    shared_defaults: ClassVar[dict[str, Any]] = {"patch_size": (0.04, 0.16), "square": False}
    paper: ClassVar[dict[str, Any]] = {
        "patch_size": (0.1, 0.4),
        "square": False,
        "patch_distribution": "gamma",
        "patch_gamma": (0.06, 0.1),
        "source_rescale": (0.7, 1.3),
        "nsa_patches": 3,
        "mixed_gradients": False,
        "placement": "anywhere",
        "source_in_mask": True,
        "clip": "hard",
        "label_k": 255 / 6,
        "label_x0": 20 / 255,
        "label_tolerance": 1 / 255,
        "label_median_radius": 5,
    }

    mixed_gradients: bool = Field(
        True,
        description="keep the larger of source and target gradient (NSA's mixed clone); False: the source "
        "gradients (NSA's normal clone, its default)",
    )
    nsa_patches: int = Field(
        3,
        ge=1,
        le=50,
        description="at most this many patches per image, the first always, "
        "each further one with probability 1/2 (NSA: 3 or 4 by object class)",
    )
    label_median_radius: int = Field(
        5,
        ge=0,
        le=15,
        description="label: radius (pixels) of the disc (ball) median "
        "filter of the change before the logistic (NSA: 5)",
    )


class NSA(Synthesizer):
    method = "nsa"
    params_model = NSAParams

    def plan_image(self, index, spatial, n_images, rng, masks=None):
        cfg = self.config
        tmask = None if masks is None else masks[index]
        specs: list[AnomalySpec] = []
        for p in range(cfg.nsa_patches):
            if p > 0 and rng.integers(0, 2) == 0:
                continue  # NSA: the first patch always, each further one on a coin flip
            src = self._source_index(index, n_images, rng)
            s_size = tuple(round_side(int(round(sample_fraction(cfg, rng) * n)), n, cfg) for n in spatial)
            r = float(np.clip(rng.normal(1.0, 0.5), *cfg.source_rescale))
            size = tuple(round_side(int(round(s * r)), n, cfg) for s, n in zip(s_size, spatial))
            placed = self._place_target(spatial, size, rng, tmask, specs)
            if placed is None:
                continue  # no free room on the mask: fewer patches (recorded in the plan)
            smask = masks[src] if masks is not None and cfg.source_in_mask else None
            s_start = self._place_source(spatial, s_size, rng, smask, src, index, placed, size)
            specs.append(
                AnomalySpec(index, src, placed, s_start, size, 1.0, None, [], [], None if s_size == size else s_size)
            )
        return specs

    def render(self, images, plan, n_out, masks=None):
        cfg = self.config

        def clone(tgt, src, specs):  # NSA's normal clone (source gradients), or its mixed clone
            nd = tgt.ndim - 1
            gt, gs = poisson.forward_gradients(tgt, nd), poisson.forward_gradients(src, nd)
            return poisson_blend(tgt, [poisson.mixed(b, a) for a, b in zip(gt, gs)] if cfg.mixed_gradients else gs)

        out, var = render_blends(images, plan, n_out, cfg, masks, clone)
        label = nsa_labels(images, out, plan, n_out, cfg)
        if masks is not None and cfg.mask_blend and cfg.placement != "anywhere":
            label = label * masks  # as the change: no label off the mask, even where a median reaches past it
        return out, label, var


# --------------------------------------------------------------------------------------------------
# NSA's label: the same arithmetic on NumPy and torch (odd footprints: the median is one element)
# --------------------------------------------------------------------------------------------------
def square_offsets(side: int, nd: int) -> np.ndarray:
    r = side // 2
    grids = np.meshgrid(*[np.arange(-r, r + 1)] * nd, indexing="ij")
    return np.stack([g.ravel() for g in grids], 1)


def ball_offsets(radius: int, nd: int) -> np.ndarray:
    """Offsets of a digital disc (ball) of ``radius``: ``|o|^2 <= radius^2`` (skimage's ``disk``/``ball``)."""
    sq = square_offsets(2 * radius + 1, nd)
    return sq[(sq**2).sum(1) <= radius * radius]


def median_filter(x, offsets: np.ndarray, max_elements: int = 4_000_000):
    """Median of ``x`` (2D/3D, NumPy or torch) over the footprint ``offsets`` (odd count), edges
    replicated.  Processed in slabs of the first axis, so memory stays near ``max_elements`` values."""
    r = int(np.abs(offsets).max()) if offsets.size else 0
    nd = x.ndim
    shape = tuple(x.shape)
    idx = [np.clip(np.arange(-r, n + r), 0, n - 1) for n in shape]
    xo = ops(x)
    xp = x
    for ax, ix in enumerate(idx):
        xp = xo.take(xp, ix, ax)
    plane = int(np.prod(shape[1:])) if nd > 1 else 1
    step = max(1, max_elements // max(1, plane * len(offsets)))
    parts = []
    for a in range(0, shape[0], step):
        b = min(shape[0], a + step)
        views = []
        for o in offsets:
            sl = (slice(r + o[0] + a, r + o[0] + b),) + tuple(
                slice(r + oi, r + oi + n) for oi, n in zip(o[1:], shape[1:])
            )
            views.append(xp[sl])
        parts.append(xo.median(xo.stack(views), 0))
    return xo.concat(parts, 0)


def nsa_label_of(diff, cfg):
    """NSA's logistic-intensity label of an absolute change ``diff`` (one 2D/3D array)."""
    nd = diff.ndim
    changed = diff > cfg.label_tolerance
    xp = ops(diff)
    changed = xp.cast(changed, diff)
    m = median_filter(changed, square_offsets(MASK_MEDIAN, nd))
    inten = median_filter(m * diff, ball_offsets(cfg.label_median_radius, nd))
    z = -cfg.label_k * (inten - cfg.label_x0)
    return m / (1.0 + xp.exp(z))


def nsa_labels(images, out, plan, n_out, cfg):
    """:func:`nsa_label_of` of each target image, computed on windows around its patches (the label is
    zero further than 2 pixels from a changed pixel; each window carries the filters' full reach)."""
    label = ops(out).zeros_like(out)
    reach = MASK_MEDIAN // 2
    pad = reach + cfg.label_median_radius + reach  # the window must see every input of the label inside
    spatial = tuple(images.shape[1:])
    for s in plan:
        if s.target_index >= n_out:
            continue
        inner = [(max(0, a - reach), min(n, a + sz + reach)) for a, sz, n in zip(s.target_start, s.size, spatial)]
        outer = [(max(0, lo - pad), min(n, hi + pad)) for (lo, hi), n in zip(inner, spatial)]
        win = tuple(slice(lo, hi) for lo, hi in outer)
        diff = ops(out).exact(out[s.target_index][win]) - ops(out).exact(images[s.target_index][win])
        diff = ops(diff).abs(diff)
        lab = nsa_label_of(diff, cfg)
        keep = tuple(slice(ilo - olo, ihi - olo) for (ilo, ihi), (olo, _) in zip(inner, outer))
        dst = tuple(slice(lo, hi) for lo, hi in inner)
        cur = label[s.target_index][dst]
        new = lab[keep]
        label[s.target_index][dst] = ops(new).maximum(new, cur)
    return label
