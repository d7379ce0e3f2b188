"""Pre-processing: HU windows, normalisation to [0, 1], histogram equalisation, resizing.

The paper normalises intensities and then applies histogram equalisation (after MIMIC-CXR-JPG) to every
dataset; CT is first windowed (lung window by default).  Functions take and return plain arrays, or a
:class:`~napari_ppii.io.Scan` (geometry updated) for :func:`prepare` and :func:`resize_scan`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .config import PreprocessConfig
from .errors import InputError
from .io.scan import Scan

#: Named HU windows as (centre, width).  ``header`` uses the scan's own WindowCenter/WindowWidth.
WINDOWS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "soft_tissue": (40.0, 400.0),
    "bone": (400.0, 1800.0),
}


def window_limits(name: str, scan: Scan | None = None) -> tuple[float, float]:
    """``(low, high)`` HU of a named window preset, or of the scan header's window for ``"header"``."""
    if name == "header":
        meta = scan.metadata if scan is not None else {}
        if "window_center" not in meta or "window_width" not in meta:
            raise InputError("the scan header has no WindowCenter/WindowWidth; choose a named window",
                             scan.path if scan is not None else None)
        c, w = meta["window_center"], meta["window_width"]
    elif name in WINDOWS:
        c, w = WINDOWS[name]
    else:
        raise InputError(f"unknown window {name!r} (choose from {', '.join([*WINDOWS, 'header'])})")
    if w <= 0:
        raise InputError(f"window width must be positive, got {w}")
    return c - w / 2.0, c + w / 2.0


def apply_window(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map ``[low, high]`` linearly to ``[0, 1]``, clipping outside."""
    return np.clip((np.asarray(values, dtype=np.float32) - low) / (high - low), 0.0, 1.0).astype(np.float32)


def normalise(values: np.ndarray, method: str = "percentile", percentiles: tuple[float, float] = (0.5, 99.5)) -> np.ndarray:
    """Rescale to ``[0, 1]`` by min/max or robust percentiles (clipped).  A constant image maps to 0."""
    x = np.asarray(values, dtype=np.float32)
    if method == "minmax":
        lo, hi = float(x.min()), float(x.max())
    elif method == "percentile":
        lo, hi = (float(v) for v in np.percentile(x, percentiles))
        if hi <= lo:
            lo, hi = float(x.min()), float(x.max())
    else:
        raise InputError(f"unknown normalisation {method!r} (minmax or percentile)")
    if hi <= lo:
        return np.zeros_like(x)
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def equalise(values: np.ndarray, nbins: int = 256, mask: np.ndarray | None = None) -> np.ndarray:
    """Histogram equalisation (``skimage.exposure.equalize_hist``) of an image in [0, 1].

    A constant image is returned unchanged (equalisation of a single level is undefined).
    """
    from skimage.exposure import equalize_hist

    x = np.asarray(values, dtype=np.float32)
    if float(x.max()) == float(x.min()):
        return x.copy()
    return equalize_hist(x, nbins=nbins, mask=mask).astype(np.float32)


def resize(values: np.ndarray, shape: Sequence[int], order: int = 1) -> np.ndarray:
    """Resize with anti-aliasing when shrinking (``skimage.transform.resize``)."""
    from skimage.transform import resize as sk_resize

    x = np.asarray(values, dtype=np.float32)
    shape = tuple(int(s) for s in shape)
    if shape == x.shape:
        return x.copy()
    anti = any(n < o for n, o in zip(shape, x.shape)) and order > 0
    return sk_resize(x, shape, order=order, anti_aliasing=anti, preserve_range=True, mode="edge").astype(np.float32)


def resize_scan(scan: Scan, shape: Sequence[int], order: int = 1) -> Scan:
    """Resize a scan; spacing grows by old/new so the physical extent stays; origin shifts to the new
    first voxel centre (same physical field of view)."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != scan.ndim:
        raise InputError(f"cannot resize a {scan.ndim}D scan to {shape}", scan.path)
    factors = [o / n for o, n in zip(scan.shape, shape)]
    spacing = tuple(s * f for s, f in zip(scan.spacing, factors))
    # voxel centres: old first centre at origin; FOV edge at origin - s/2; new first centre at edge + s'/2
    shift = np.array([(sp_new - sp_old) / 2.0 for sp_new, sp_old in zip(spacing, scan.spacing)])
    origin = tuple(np.asarray(scan.origin) + scan.direction.T @ shift)
    meta = dict(scan.metadata)
    meta["original_shape"] = list(scan.shape)
    meta["original_spacing"] = list(scan.spacing)
    meta["original_origin"] = list(scan.origin)
    return Scan(resize(scan.array, shape, order=order), spacing, origin, scan.direction, scan.modality, scan.path, meta)


#: Smallest in-plane extent of a scan the pipeline accepts (before any resize).
MIN_INPUT_SIDE = 16


def is_ct(scan: Scan) -> bool:
    return scan.modality.upper() == "CT"


def prepare(scan: Scan, config: PreprocessConfig | None = None) -> Scan:
    """Scan -> network input in [0, 1]: window (CT) or normalise, equalise, resize in-plane.

    For volumes, ``size`` resizes each slice (the slice axis keeps its length).
    """
    cfg = config or PreprocessConfig()
    inplane = scan.shape[-2:]
    if min(inplane) < MIN_INPUT_SIDE:
        raise InputError(f"image of size {tuple(scan.shape)} is too small: at least {MIN_INPUT_SIDE} pixels per "
                         "in-plane axis are needed (upsampling a few pixels would invent the scan)", scan.path)
    if is_ct(scan) and cfg.window is not None:
        lo, hi = window_limits(cfg.window, scan)
        x = apply_window(scan.array, lo, hi)
    else:
        x = normalise(scan.array, cfg.normalise)
    if cfg.equalise:
        x = equalise(x)
    out = scan.with_array(x)
    out.metadata["preprocess"] = cfg.model_dump(mode="json")
    if cfg.size is not None:
        target = (cfg.size, cfg.size) if scan.ndim == 2 else (scan.shape[0], cfg.size, cfg.size)
        out = resize_scan(out, target)
    return out
