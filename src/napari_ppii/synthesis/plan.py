# SPDX-License-Identifier: BSD-3-Clause
"""Plans: every random choice of one image's anomalies as plain numbers, drawn from a seeded
``numpy.random.Generator`` before anything is rendered.

An :class:`AnomalySpec` is what the ``ppii synthesize`` JSON stores, so a run is reproducible exactly,
and the draws never depend on the engine that renders them (:mod:`.render`, :mod:`.backend`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from .settings import SynthesisConfig
from ..errors import InputError
from ..io.boxes import Box
from .backend import is_torch


#: Smallest extent (pixels) of any spatial axis that synthesis accepts.
MIN_EXTENT = 16


@dataclass
class AnomalySpec:
    """One anomaly of one image: where it goes, where it comes from, and how it is blended.

    Boxes are Python slice bounds (``start`` inclusive, ``start + size`` exclusive) in array order.
    ``centres``/``radii`` hold one circle (ball in 3D) per rater, in pixels relative to the box start.
    """

    target_index: int
    source_index: int
    target_start: tuple[int, ...]
    source_start: tuple[int, ...]
    size: tuple[int, ...]
    gradient_scale: float = 1.0
    alpha: float | None = None
    centres: list[list[float]] = field(default_factory=list)
    radii: list[float] = field(default_factory=list)
    source_size: tuple[int, ...] | None = None  # rescaled source: taken at this size, resized to ``size``

    @property
    def target_slices(self) -> tuple[slice, ...]:
        return tuple(slice(a, a + s) for a, s in zip(self.target_start, self.size))

    @property
    def source_slices(self) -> tuple[slice, ...]:
        return tuple(slice(a, a + s) for a, s in zip(self.source_start, self.source_size or self.size))

    def box(self) -> Box:
        props = {"gradient_scale": self.gradient_scale, "n_raters": len(self.radii)}
        if self.alpha is not None:
            props["alpha"] = self.alpha
        return Box.from_half_open(
            self.target_start,
            [a + s for a, s in zip(self.target_start, self.size)],
            label="synthetic",
            properties=props,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AnomalySpec":
        d = dict(d)
        for k in ("target_start", "source_start", "size"):
            d[k] = tuple(int(v) for v in d[k])
        if d.get("source_size") is not None:
            d["source_size"] = tuple(int(v) for v in d["source_size"])
        return cls(**d)


# --------------------------------------------------------------------------------------------------
# Validation and sampling
# --------------------------------------------------------------------------------------------------
def validate_images(images: Any, config: SynthesisConfig) -> tuple[int, ...]:
    """Check a batch ``(B, *spatial)`` for synthesis; return the spatial shape."""
    shape = tuple(images.shape)
    if len(shape) not in (3, 4):
        raise InputError(f"synthesis takes a batch of 2D images or 3D volumes, got an array of shape {shape}")
    if shape[0] < 1:
        raise InputError("synthesis got an empty batch")
    spatial = shape[1:]
    if is_torch(images):
        import torch

        if not images.is_floating_point():
            images = images.float()
        finite = bool(torch.isfinite(images).all())
    else:
        arr = np.asarray(images)
        if arr.dtype.kind not in "uif":
            raise InputError(f"synthesis needs numeric images, got dtype {arr.dtype}")
        finite = bool(np.isfinite(arr).all()) if arr.dtype.kind == "f" else True
    if not finite:
        raise InputError("image contains NaN or Inf values; synthesis needs finite intensities")
    small = [n for n in spatial if n < max(MIN_EXTENT, config.min_patch_side)]
    if small:
        raise InputError(
            f"image of shape {spatial} is too small for synthesis: every axis needs at least "
            f"{max(MIN_EXTENT, config.min_patch_side)} pixels"
        )
    return spatial


def _is_smooth(n: int) -> bool:
    for p in (2, 3, 5):
        while n % p == 0:
            n //= p
    return n == 1


def round_side(s: int, n: int, cfg: SynthesisConfig) -> int:
    """Smallest side >= ``s`` that is a multiple of ``size_step`` and (``fast_sizes``) whose DST-I
    length ``2 (side - 1)`` is 5-smooth; at most the extent ``n``."""
    s = max(int(s), cfg.min_patch_side)
    s = int(np.ceil(s / cfg.size_step) * cfg.size_step)
    if cfg.fast_sizes:
        t = s
        while t <= n and not _is_smooth(t - 1):
            t += cfg.size_step
        s = t if t <= n else s
    return min(s, n)


def sample_fraction(cfg: SynthesisConfig, rng: np.random.Generator) -> float:
    """One patch side fraction: uniform in ``patch_size``, or NSA-style ``offset + Gamma(2, scale)``
    clipped to ``patch_size`` (``patch_gamma``; default ``(low, (high - low) / 6)``)."""
    lo, hi = cfg.patch_size
    if cfg.patch_distribution == "gamma":
        off, scale = cfg.patch_gamma or (lo, (hi - lo) / 6.0)
        return float(min(hi, max(lo, off + rng.gamma(2.0, scale))))
    return float(rng.uniform(lo, hi))


def sample_size(spatial: Sequence[int], cfg: SynthesisConfig, rng: np.random.Generator) -> tuple[int, ...]:
    """Patch side per axis: a fraction (:func:`sample_fraction`) of the extent (one fraction of the
    shortest axis for square patches), at least ``min_patch_side``, rounded up by :func:`round_side`."""
    if cfg.square:
        sides = [sample_fraction(cfg, rng) * min(spatial)] * len(spatial)
    else:
        sides = [sample_fraction(cfg, rng) * n for n in spatial]
    return tuple(round_side(int(round(s)), n, cfg) for s, n in zip(sides, spatial))


def sample_source_size(
    spatial: Sequence[int], size: Sequence[int], cfg: SynthesisConfig, rng: np.random.Generator
) -> tuple[int, ...] | None:
    """The rescaled source patch's size (``size / r``, ``r ~ U[source_rescale]``), or None for none."""
    lo, hi = cfg.source_rescale
    if lo == hi == 1.0:
        return None
    r = float(rng.uniform(lo, hi))
    src = tuple(int(min(n, max(3, round(s / r)))) for s, n in zip(size, spatial))
    return None if src == tuple(size) else src


def sample_start(
    spatial: Sequence[int],
    size: Sequence[int],
    cfg: SynthesisConfig,
    rng: np.random.Generator,
    mask: np.ndarray | None = None,
    margin: bool = False,
) -> tuple[int, ...] | None:
    """Box start whose centre is uniform in the central ``core_fraction`` of each axis (box kept inside).

    With a ``mask``: the centre is a mask pixel drawn uniformly, and the box must have at least
    ``placement_min_inside`` of its pixels on the mask; None when the draw fails that test.  ``margin``:
    the centre is a mask pixel within a quarter of the box's largest side of the mask's edge, and the box needs
    only ``placement_margin_min_inside`` on the mask (an anomaly straddling the pleura)."""
    if mask is not None:
        flat = _edge_index(mask, max(size) / 4.0) if margin else _mask_index(mask)
        if flat.size == 0:
            return None
        c = np.unravel_index(int(flat[rng.integers(0, flat.size)]), mask.shape)
        start = tuple(min(max(int(round(ci - s / 2.0)), 0), n - s) for ci, s, n in zip(c, size, spatial))
        inside = float(mask[tuple(slice(a, a + s) for a, s in zip(start, size))].mean())
        need = cfg.placement_margin_min_inside if margin else cfg.placement_min_inside
        return start if inside >= need else None
    start = []
    for n, s in zip(spatial, size):
        margin = (1.0 - cfg.core_fraction) / 2.0 * n
        c = rng.uniform(margin, n - margin)
        a = int(round(c - s / 2.0))
        start.append(min(max(a, 0), n - s))
    return tuple(start)


_MASK_INDEX: dict[int, tuple[np.ndarray, np.ndarray]] = {}
_EDGE_DIST: dict[int, tuple[np.ndarray, np.ndarray, dict]] = {}
_EDGE_BY_CONTENT: dict[tuple, tuple[np.ndarray, np.ndarray, dict]] = {}
_CONTENT_CACHE_MAX_PIXELS = 1 << 20  # one 1024x1024 image: 256 of them keep at most about 300 MB


def _mask_key(mask: np.ndarray) -> tuple[tuple, np.ndarray]:
    """A content key of a mask (shape and a hash of its packed bits) and the packed bits, to confirm a hit."""
    bits = np.packbits(np.asarray(mask, bool))
    return (tuple(np.shape(mask)), hash(bits.tobytes())), bits


def _edge_distance(mask: np.ndarray) -> np.ndarray:
    """In-plane distance (pixels, capped at 255, uint8) of each mask pixel to the nearest pixel off the mask;
    a volume slice by slice (the pleura is in-plane; a 3D transform of a CT mask would take gigabytes)."""
    from scipy import ndimage as ndi

    m = np.asarray(mask, bool)
    out = np.zeros(m.shape, np.uint8)
    planes = [(slice(None),)] if m.ndim == 2 else [(z,) for z in range(m.shape[0])]
    for idx in planes:
        plane = m[idx]
        if plane.any():
            d = ndi.distance_transform_edt(np.pad(plane, 1))[1:-1, 1:-1]
            out[idx] = np.minimum(np.ceil(d), 255).astype(np.uint8)
    return out


def _edge_index(mask: np.ndarray, reach: float) -> np.ndarray:
    """Flat indices of the mask's pixels within ``reach`` pixels (in-plane) of its edge (the distances are
    cached for the mask array while it is alive)."""
    hit = _EDGE_DIST.get(id(mask))
    if hit is None or hit[0] is not mask:
        # the trainer hands a fresh copy of the same few masks every batch: look images' masks up by content
        # too (not volumes: a CT mask's distances are kept only while that array lives)
        if np.size(mask) <= _CONTENT_CACHE_MAX_PIXELS:
            key = _mask_key(mask)
            hit = _EDGE_BY_CONTENT.get(key[0])
            if hit is None or not np.array_equal(hit[0], key[1]):
                if len(_EDGE_BY_CONTENT) > 256:
                    _EDGE_BY_CONTENT.clear()
                hit = _EDGE_BY_CONTENT[key[0]] = (key[1], _edge_distance(mask), {})
        else:
            hit = (None, _edge_distance(mask), {})
        if len(_EDGE_DIST) > 16:
            _EDGE_DIST.clear()
        hit = _EDGE_DIST[id(mask)] = (mask, hit[1], hit[2])
    bands = hit[2]  # per reach: the placement retries of one anomaly ask for the same band
    r = int(np.floor(reach))
    if r not in bands:
        bands[r] = np.flatnonzero((hit[1] > 0) & (hit[1] <= r))
    return bands[r]


def _mask_index(mask: np.ndarray) -> np.ndarray:
    """Flat indices of a mask's pixels (cached for the mask array while it is alive)."""
    hit = _MASK_INDEX.get(id(mask))
    if hit is not None and hit[0] is mask:
        return hit[1]
    idx = np.flatnonzero(mask)
    if len(_MASK_INDEX) > 64:
        _MASK_INDEX.clear()
    _MASK_INDEX[id(mask)] = (mask, idx)
    return idx


def sample_gradient_scale(cfg: SynthesisConfig, rng: np.random.Generator) -> float:
    lo, hi = cfg.gradient_scale
    if cfg.gradient_scale_distribution == "log_uniform":
        return float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) if hi > lo else float(lo)
    return float(rng.uniform(lo, hi))


def boxes_overlap(a_start, b_start, size_a, size_b) -> bool:
    return all(a < b + sb and b < a + sa for a, b, sa, sb in zip(a_start, b_start, size_a, size_b))


def sample_raters(
    size: Sequence[int], k: int, cfg: SynthesisConfig, rng: np.random.Generator
) -> tuple[list[list[float]], list[float]]:
    """K circles inside a patch: radius ~ N(rater_radius * shortest side, rater_radius_std), centre ~
    N(patch centre, rater_centre_std * side), both bounded so the circle stays inside the patch."""
    size = np.asarray(size, dtype=float)
    smin = float(size.min())
    r_max = max((smin - 1.0) / 2.0, 1.0)
    radii = np.clip(rng.normal(cfg.rater_radius * smin, cfg.rater_radius_std, size=k), 1.0, r_max)
    centres = rng.normal((size - 1.0) / 2.0, cfg.rater_centre_std * size, size=(k, size.size))
    centres = np.clip(centres, radii[:, None], size - 1.0 - radii[:, None])
    return centres.tolist(), radii.tolist()
