# SPDX-License-Identifier: BSD-3-Clause
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
from .io.scan import Scan, is_ct  # noqa: F401 (is_ct: preprocess.is_ct for its callers)

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
            raise InputError(
                "the scan header has no WindowCenter/WindowWidth; choose a named window",
                scan.path if scan is not None else None,
            )
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


def normalise(
    values: np.ndarray, method: str = "percentile", percentiles: tuple[float, float] = (0.5, 99.5)
) -> np.ndarray:
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
    """Histogram equalisation of an image in [0, 1] (``skimage.exposure.equalize_hist``; without a mask
    computed by :class:`Equaliser`, which gives the same values and can be fed in chunks).

    A constant image is returned unchanged (equalisation of a single level is undefined).
    """
    x = np.asarray(values, dtype=np.float32)
    if float(x.max()) == float(x.min()):
        return x.copy()
    if mask is not None:
        from skimage.exposure import equalize_hist

        return equalize_hist(x, nbins=nbins, mask=mask).astype(np.float32)
    return Equaliser(nbins).fit([x]).apply(x)


class Equaliser:
    """skimage's ``equalize_hist`` split in two: :meth:`fit` accumulates the histogram over chunks of one
    image (same bin edges: the whole image's range), :meth:`apply` maps any chunk through the cumulative
    distribution.  Chunk by chunk it gives exactly the values of the whole-image call."""

    def __init__(self, nbins: int = 256):
        self.nbins = nbins
        self.centers = self.cdf = None

    def fit(self, chunks) -> "Equaliser":
        chunks = list(chunks)
        return self.fit_stream(lambda i: chunks[i], len(chunks))

    def fit_stream(self, chunk_fn, n_chunks: int) -> "Equaliser":
        """:meth:`fit` over ``chunk_fn(i)`` for ``i < n_chunks``, holding one chunk at a time."""
        lo, hi = np.inf, -np.inf
        for i in range(n_chunks):
            c = chunk_fn(i)
            lo, hi = min(lo, float(c.min())), max(hi, float(c.max()))
        if not hi > lo:
            return self  # one level: equalisation is undefined, values pass unchanged
        hist = edges = None
        for i in range(n_chunks):
            h, edges = np.histogram(
                np.asarray(chunk_fn(i), dtype=np.float32), bins=self.nbins, range=(np.float32(lo), np.float32(hi))
            )
            hist = h if hist is None else hist + h
        cdf = hist.cumsum()
        self.cdf = (cdf / float(cdf[-1])).astype(np.float32)
        self.centers = (edges[:-1] + edges[1:]) / 2.0
        return self

    def apply(self, x: np.ndarray) -> np.ndarray:
        if self.cdf is None:
            return np.array(x, dtype=np.float32)
        return np.interp(np.asarray(x, dtype=np.float32), self.centers, self.cdf).astype(np.float32)


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


def check_input_size(scan: Scan) -> None:
    if min(scan.shape[-2:]) < MIN_INPUT_SIDE:
        raise InputError(
            f"image of size {tuple(scan.shape)} is too small: at least {MIN_INPUT_SIDE} pixels per "
            "in-plane axis are needed (upsampling a few pixels would invent the scan)",
            scan.path,
        )


def prepare(scan: Scan, config: PreprocessConfig | None = None) -> Scan:
    """Scan -> network input in [0, 1]: window (CT) or normalise, equalise, resize in-plane.

    For volumes, ``size`` resizes each slice (the slice axis keeps its length).
    """
    cfg = config or PreprocessConfig()
    check_input_size(scan)
    mapping = InputMapping(scan, cfg)
    if scan.ndim == 3:  # slab by slab: the float64 temporaries of one slab, never of the whole volume
        x = np.empty(scan.shape, np.float32)
        for z in range(0, scan.shape[0], 32):
            x[z : z + 32] = mapping.apply(scan.array[z : z + 32])
    else:
        x = mapping.apply(scan.array)
    out = scan.with_array(x)
    out.metadata["preprocess"] = cfg.model_dump(mode="json")
    if cfg.size is not None:
        target = (cfg.size, cfg.size) if scan.ndim == 2 else (scan.shape[0], cfg.size, cfg.size)
        out = resize_scan(out, target)
    return out


class InputMapping:
    """A scan's values -> model-input values in [0, 1], pointwise: the CT window or the normalisation
    limits, then the whole scan's histogram equalisation.  Fitted once per scan (in slabs of slices, so a
    large volume is never copied whole), applied to any slab: the values are those of :func:`prepare`."""

    def __init__(self, scan: Scan, config: PreprocessConfig, slab: int = 32):
        cfg = config
        arr = np.asarray(scan.array)
        if is_ct(scan) and cfg.window is not None:
            self.low, self.high = window_limits(cfg.window, scan)
        elif cfg.normalise == "minmax":
            self.low, self.high = float(arr.min()), float(arr.max())
        else:
            self.low, self.high = (float(v) for v in np.percentile(arr.astype(np.float32, copy=False), (0.5, 99.5)))
            if self.high <= self.low:
                self.low, self.high = float(arr.min()), float(arr.max())
        self.eq = None
        if cfg.equalise:
            step = slab if arr.ndim == 3 else max(1, arr.shape[0])
            n = -(-arr.shape[0] // step)
            self.eq = Equaliser().fit_stream(lambda i: self.linear(arr[i * step : (i + 1) * step]), n)

    def linear(self, values: np.ndarray) -> np.ndarray:
        if self.high <= self.low:
            return np.zeros(np.shape(values), np.float32)
        return apply_window(values, self.low, self.high)

    def apply(self, values: np.ndarray) -> np.ndarray:
        x = self.linear(values)
        return self.eq.apply(x) if self.eq is not None else x


def model_input(scan: Scan, cfg, slices: slice | None = None, mapping: InputMapping | None = None) -> np.ndarray:
    """Scan -> ``(N, S, S)`` float32 in [0, 1]: pre-process at native resolution (window/normalise,
    equalise over the whole scan), then resize each image / slice to ``cfg.data.image_size``.

    ``slices`` (volumes): only those slices, with the whole volume's mapping (``mapping``, fitted once and
    passed again for the next slab): a volume can be fed to a model slab by slab."""
    check_input_size(scan)
    mapping = mapping or InputMapping(scan, cfg.preprocess)
    src = scan.array if scan.ndim == 3 else scan.array[None]
    arr = mapping.apply(src[slices] if slices is not None else src)
    s = cfg.data.image_size
    return np.stack([resize(a, (s, s)) for a in arr]).astype(np.float32)
