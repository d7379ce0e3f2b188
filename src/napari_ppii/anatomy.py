# SPDX-License-Identifier: BSD-3-Clause
"""Anatomy masks, classical and offline: lung fields of chest radiographs and of chest CT.

No learned weights, nothing to download.  Both work on plain arrays and on :class:`~napari_ppii.io.Scan`
values and return boolean masks of the input's shape.

* **Radiographs** (:func:`lung_mask_cxr`): at a 256-pixel working size the image is normalised,
  equalised and smoothed; each lung is the dark region on its side of the midline found at the
  highest darkness threshold (a quantile of the central image, lowered step by step) at which it is
  a closed, lung-sized region: opened (cuts the trachea and thin bridges), not touching the image
  border (air beside the body, collimator and anonymisation patches), not crossing the midline
  (mediastinum).  Then closed, holes filled, and slightly dilated so that nodules at the lung margin
  are kept.
* **CT** (:func:`lung_mask_ct`): air (< -400 HU by default) not connected to the volume's border
  (removes the air around the body and the table), the largest connected components (lungs and
  airways), holes filled per slice (vessels and nodules inside the lung are kept), closed.

:func:`lung_mask` picks by modality (a :class:`Scan`) or by dimensionality (2D = radiograph, 3D = CT in
HU).  :func:`lung_prior` turns a mask into a soft spatial map (the "lung-field" floor of the
evaluation).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .errors import InputError

#: Working size of the radiograph segmentation (pixels of the longer side).
CXR_WORK = 256


def _label(mask: np.ndarray):
    """``ndi.label`` into the smallest integer type that holds the labels (a CT volume's labels as uint16
    take half the memory of int32)."""
    try:
        return ndi.label(mask, output=np.uint16)
    except RuntimeError:  # more than 65535 components
        return ndi.label(mask)


def _keep_labels(lab: np.ndarray, ids) -> np.ndarray:
    """``np.isin(lab, ids)`` through a lookup table: no sorted copies of a large label volume."""
    table = np.zeros(int(lab.max()) + 1, bool)
    table[np.asarray(ids, dtype=np.int64)] = True
    table[0] = False
    return table[lab]


def _largest_components(mask: np.ndarray, keep: int, min_fraction: float = 0.0) -> np.ndarray:
    lab, n = _label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(lab.ravel())[1:]
    order = np.argsort(-sizes)[:keep]
    thr = min_fraction * mask.size
    return _keep_labels(lab, [i + 1 for i in order if sizes[i] >= thr])


def _clear_border(mask: np.ndarray) -> np.ndarray:
    lab, n = ndi.label(mask)
    if n == 0:
        return mask
    border = np.zeros(mask.shape, bool)
    for ax in range(mask.ndim):
        idx = [slice(None)] * mask.ndim
        idx[ax] = 0
        border[tuple(idx)] = True
        idx[ax] = -1
        border[tuple(idx)] = True
    touching = np.unique(lab[border & mask])
    return mask & ~np.isin(lab, touching)


def _disk(r: int) -> np.ndarray:
    y, x = np.ogrid[-r : r + 1, -r : r + 1]
    return x * x + y * y <= r * r


class _MaskCache:
    """The last few radiograph masks, keyed by the image's content (a SHA-256 digest of its bytes, shape and
    dtype) and the settings: the preview, ``Synthesizer.sample``/``batch`` and ``ppii synthesize`` ask for
    the mask of the same image again and again; hashing 512x512 float64 takes ~1 ms (SHA-NI), the mask 60-170 ms.
    Thread-safe (the preview computes in a worker thread); returns copies, so callers cannot alter it."""

    def __init__(self, size: int = 64):
        import threading
        from collections import OrderedDict

        self.size = size
        self._d: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    @staticmethod
    def key(a: np.ndarray, *settings) -> tuple:
        import hashlib

        a = np.ascontiguousarray(a)
        return (hashlib.sha256(a.view(np.uint8).reshape(-1)).digest(), a.shape, a.dtype.str) + settings

    def get(self, key):
        with self._lock:
            m = self._d.get(key)
            if m is None:
                self.misses += 1
                return None
            self._d.move_to_end(key)
            self.hits += 1
            return m.copy()

    def put(self, key, mask: np.ndarray) -> None:
        with self._lock:
            self._d[key] = mask.copy()
            self._d.move_to_end(key)
            while len(self._d) > self.size:
                self._d.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._d.clear()
            self.hits = self.misses = 0


#: The radiograph masks already computed (see :class:`_MaskCache`); ``MASK_CACHE.clear()`` empties it.
MASK_CACHE = _MaskCache()


def lung_mask_cxr(image: np.ndarray, *, dilate: float = 0.025, symmetric: bool = True) -> np.ndarray:
    """Lung fields of a 2D chest radiograph (PA or AP, lungs dark) as a boolean mask of its shape.

    ``dilate``: final dilation, as a fraction of the image side (keeps nodules on the pleural margin).
    ``symmetric`` (default): each lung field is joined with the other one mirrored about the midline, so
    the parts of a lung that are not dark -- behind the heart, below the diaphragm dome, opaque with
    disease -- are covered (``False``: the dark lung fields alone).
    Raises :class:`InputError` for an image that is not 2D, not finite, or constant.  The masks of the
    last 64 images are kept (keyed by content, :data:`MASK_CACHE`): asking again for the same image's mask
    costs a hash, not a segmentation.
    """
    arr = np.asarray(image)
    key = MASK_CACHE.key(arr, float(dilate), bool(symmetric)) if arr.dtype.kind in "fiub" else None
    cached = None if key is None else MASK_CACHE.get(key)
    if cached is not None:
        return cached
    out = _lung_mask_cxr(arr, dilate, symmetric)
    if key is not None:
        MASK_CACHE.put(key, out)
    return out


def _lung_mask_cxr(image: np.ndarray, dilate: float, symmetric: bool = True) -> np.ndarray:
    from skimage.exposure import equalize_hist
    from skimage.transform import resize

    a = np.asarray(image, dtype=np.float32)
    if a.ndim == 3 and a.shape[-1] in (3, 4):
        a = a[..., :3].mean(-1)
    if a.ndim != 2:
        raise InputError(f"a radiograph lung mask needs a 2D image, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise InputError("image contains NaN or Inf values")
    lo, hi = np.percentile(a, (0.5, 99.5))
    if hi <= lo:
        raise InputError("constant image: no lung fields to find")
    h, w = a.shape
    scale = CXR_WORK / max(h, w)
    ws = (max(16, int(round(h * scale))), max(16, int(round(w * scale))))
    x = resize(np.clip((a - lo) / (hi - lo), 0, 1), ws, anti_aliasing=True)
    x = equalize_hist(x)
    x = ndi.gaussian_filter(x, 2.0)
    H, W = ws
    core = x[int(0.1 * H) : int(0.9 * H), int(0.1 * W) : int(0.9 * W)]
    r = max(1, int(round(0.012 * W)))
    # one lung per side of the midline, each at the highest darkness threshold at which it is still a
    # closed region: lower the threshold until that side holds a component that does not touch the
    # border (air beside the body, anonymisation patches), does not cross the midline (mediastinum),
    # and is lung-sized (1.5-25% of the image)
    keep = np.zeros((H, W), bool)
    found = [False, False]
    for q in np.arange(0.50, 0.12, -0.025):
        dark = _clear_border(ndi.binary_opening(x < np.quantile(core, q), _disk(r)))
        lab, n = ndi.label(dark)
        if n == 0:
            continue
        sizes = np.bincount(lab.ravel())[1:]
        objs = ndi.find_objects(lab)
        for side in (0, 1):
            if found[side]:
                continue
            best, best_size = None, 0
            for i, sl in enumerate(objs):
                c0, c1 = sl[1].start, sl[1].stop
                if c0 < 0.5 * W < c1 or not 0.015 * H * W <= sizes[i] <= 0.25 * H * W:
                    continue
                if (c1 <= 0.5 * W) != (side == 0) or sl[0].start > 0.6 * H:
                    continue
                if sizes[i] > best_size:
                    best, best_size = i, sizes[i]
            if best is not None:
                keep |= lab == best + 1
                found[side] = True
        if all(found):
            break
    keep = ndi.binary_closing(keep, _disk(max(1, 2 * r)), border_value=0)
    keep = ndi.binary_fill_holes(keep)
    if symmetric and keep.any():
        # the lung fields are near mirror images: each side's field is also where the other side's lies,
        # mirrored about the midline (between the two lungs found, else the image centre).  That gives back
        # what darkness alone misses: lung behind the heart, below a raised dome, or made opaque by the
        # disease itself (a mass, an effusion)
        cols = np.flatnonzero(keep.any(0))
        mid = (cols[0] + cols[-1]) / 2.0 if all(found) else (W - 1) / 2.0
        src = np.round(2 * mid - np.arange(W)).astype(int)
        ok = (src >= 0) & (src < W)
        mirrored = np.zeros_like(keep)
        mirrored[:, ok] = keep[:, src[ok]]
        keep |= mirrored
    if dilate > 0:
        keep = ndi.binary_dilation(keep, _disk(max(1, int(round(dilate * W)))))
    out = resize(keep.astype(np.float32), (h, w), order=1, anti_aliasing=False) >= 0.5
    return out


#: Airway lumen (trachea, main bronchi) in a CT slice: an air component of the lung mask at most this share
#: of the slice (a trachea of 25 mm in a 350 mm field: 0.4 %), centred within ``AIRWAY_MIDLINE`` x the
#: width of the body's middle (lung apices lie to the sides), whose median is below ``AIRWAY_HU`` (the lumen
#: is air, about -1000 HU, -946 to -980 measured on LIDC-IDRI-0002; lung parenchyma -850 to -890 there).
AIRWAY_MAX_SHARE = 0.01
AIRWAY_MIDLINE = 0.1
AIRWAY_HU = -930.0


def _airway_lumen(lungs2d: np.ndarray, hu2d: np.ndarray, body2d: np.ndarray) -> np.ndarray:
    """The trachea and main bronchi of one CT slice: 2D components of the lung mask that are small, near
    the body's midline and as dark as air (:data:`AIRWAY_MAX_SHARE`, :data:`AIRWAY_MIDLINE`,
    :data:`AIRWAY_HU`), never the slice's largest.  Joined to the lungs in 3D through the bronchi, the 3D
    components keep them."""
    lab, n = ndi.label(lungs2d)
    cols = np.flatnonzero(body2d.any(0))
    if n < 2 or cols.size == 0:
        return np.zeros_like(lungs2d)
    ids = np.arange(1, n + 1)
    sizes = np.bincount(lab.ravel(), minlength=n + 1)[1:]
    small = (sizes <= AIRWAY_MAX_SHARE * lungs2d.size) & (sizes < sizes.max())
    if not small.any():
        return np.zeros_like(lungs2d)
    mid, width = (cols[0] + cols[-1]) / 2, cols[-1] - cols[0] + 1
    boxes = ndi.find_objects(lab)
    airway = []
    for i in ids[small]:  # each small component within its bounding box (a whole-slice median is slow)
        sl = boxes[i - 1]
        own = lab[sl] == i
        x = np.nonzero(own)[1].mean() + sl[1].start
        if abs(x - mid) <= AIRWAY_MIDLINE * width and np.median(hu2d[sl][own]) < AIRWAY_HU:
            airway.append(i)
    return _keep_labels(lab, airway) if airway else np.zeros_like(lungs2d)


def lung_mask_ct(
    volume: np.ndarray,
    *,
    threshold_hu: float = -400.0,
    min_fraction: float = 0.002,
    envelope: bool = True,
    airways: bool = False,
) -> np.ndarray:
    """Lungs of a chest CT volume in HU (``(Z, Y, X)``, or one ``(Y, X)`` slice) as a boolean mask.

    ``envelope`` (default): each lung closed per slice over its pleural and hilar indentations (the convex
    hull of the lung on each side of the midline, inside the body), so that a nodule on the pleura or at
    the hilum -- which a threshold mask cuts out -- lies inside; ``False``: the threshold mask alone.
    ``airways`` False (default): the lumen of the trachea and main bronchi (:func:`_airway_lumen`) is left
    out, also where the closing or the envelope would take it in; True keeps it."""
    v = np.asarray(volume, dtype=np.float32)
    if v.ndim not in (2, 3):
        raise InputError(f"a CT lung mask needs a volume or a slice, got shape {v.shape}")
    if not np.isfinite(v).all():
        raise InputError("volume contains NaN or Inf values")
    single = v.ndim == 2
    if single:
        v = v[None]
    air = v < threshold_hu
    # air outside the body touches the in-plane border of some slice: clear it per slice (z-ends of
    # the volume cut through the lungs, so the z border must not count)
    body_air = np.zeros_like(air)
    for z in range(air.shape[0]):
        lab, n = ndi.label(air[z])
        if n:
            edge = np.unique(np.r_[lab[0], lab[-1], lab[:, 0], lab[:, -1]])
            body_air[z] = air[z] & ~np.isin(lab, edge)
    del air
    lungs = _largest_components(body_air, 3, min_fraction / max(1, body_air.shape[0]) if single else min_fraction)
    del body_air
    # drop small stray pockets (bowel gas) relative to the largest component
    lab, n = _label(lungs)
    if n > 1:
        sizes = np.bincount(lab.ravel())[1:]
        lungs = _keep_labels(lab, 1 + np.flatnonzero(sizes >= 0.1 * sizes.max()))
    del lab
    r = max(1, int(round(0.01 * v.shape[-1])))
    out = np.zeros_like(lungs)
    lumen = {}
    body = v > threshold_hu if (envelope or not airways) else None
    for z in range(lungs.shape[0]):
        if lungs[z].any():
            if not airways:
                a = _airway_lumen(lungs[z], v[z], body[z] | lungs[z])
                if a.any():
                    lumen[z] = a
                    lungs[z] &= ~a
            s = ndi.binary_closing(lungs[z], _disk(r), border_value=0)
            out[z] = ndi.binary_fill_holes(s)
    if envelope:
        for z in range(out.shape[0]):
            if out[z].any():
                out[z] = _lung_envelope(out[z], body[z])
    for z, a in lumen.items():  # the closing and the envelope may take the lumen in again
        out[z] &= ~a
    return out[0] if single else out


def _lung_envelope(lungs2d: np.ndarray, body2d: np.ndarray, reach: float = 0.04) -> np.ndarray:
    """Each lung of one CT slice closed over its pleural indentations: the convex hull of the lung on
    each side of the midline (between the two lungs' inner edges), kept inside the body's soft tissue
    and lung (never the air outside the body).  Juxtapleural nodules and the hilum fill the
    indentations they make in a threshold mask; the chest wall lies outside the hull of a convex lung.
    What the hull adds is kept only within ``reach`` x the slice width of the lung (a nodule's size), so
    the heart and the mediastinum's middle stay out."""
    from skimage.morphology import convex_hull_image

    cols = np.flatnonzero(lungs2d.any(0))
    lab, n = ndi.label(lungs2d)
    if n == 0:
        return lungs2d
    # the midline: the widest gap of lung-free columns between the outermost lung columns, else the middle
    occupied = lungs2d.any(0)
    lo, hi = int(cols[0]), int(cols[-1])
    gap = np.flatnonzero(~occupied[lo : hi + 1]) + lo
    if gap.size:
        runs = np.split(gap, np.flatnonzero(np.diff(gap) > 1) + 1)
        best = max(runs, key=len)
        mid = int((best[0] + best[-1]) // 2)
    else:
        mid = (lo + hi) // 2
    out = np.zeros_like(lungs2d)
    for side in (slice(0, mid), slice(mid, lungs2d.shape[1])):
        part = np.zeros_like(lungs2d)
        part[:, side] = lungs2d[:, side]
        if part.sum() >= 16:
            hull = convex_hull_image(part)
            out |= hull
        else:
            out |= part
    inside_body = ndi.binary_fill_holes(body2d | lungs2d)
    # the hull also spans the concavity around the heart and, where the lungs meet in front, the whole
    # mediastinum: keep what it adds only within a nodule's size (4% of the side, ~20 mm) of the lung
    near = ndi.distance_transform_edt(~lungs2d) <= reach * lungs2d.shape[1]
    return (out & inside_body & near) | lungs2d


def lung_mask(data, modality: str | None = None) -> np.ndarray:
    """Lung mask of a :class:`~napari_ppii.io.Scan` or an array.

    A scan's modality decides (CT -> :func:`lung_mask_ct` in HU; otherwise radiograph); for a plain
    array, 3D means CT in HU and 2D a radiograph, unless ``modality`` says otherwise.  A radiograph
    stack ``(N, H, W)`` with ``modality="CR"`` gets one mask per image.
    """
    arr = getattr(data, "array", data)
    mod = (modality or getattr(data, "modality", "") or "").upper()
    arr = np.asarray(arr)
    if mod == "CT" or (not mod and arr.ndim == 3):
        return lung_mask_ct(arr)
    if arr.ndim == 3 and arr.shape[-1] not in (3, 4):
        return np.stack([lung_mask_cxr(a) for a in arr])
    return lung_mask_cxr(arr)


def lung_prior(mask: np.ndarray, sigma: float = 0.03) -> np.ndarray:
    """A soft lung-field map in [0, 1]: the mask smoothed by a Gaussian of ``sigma`` x the image side
    (per 2D image; a 3D mask is smoothed slice by slice)."""
    m = np.asarray(mask, dtype=np.float32)
    if m.ndim == 3:
        return np.stack([lung_prior(s, sigma) for s in m])
    out = ndi.gaussian_filter(m, sigma * max(m.shape))
    mx = float(out.max())
    return out / mx if mx > 0 else out


def mask_coverage(mask: np.ndarray, points) -> float:
    """Fraction of points (array index order) that fall inside a mask."""
    pts = np.asarray(points, dtype=float).reshape(-1, mask.ndim)
    if len(pts) == 0:
        return float("nan")
    idx = np.clip(np.round(pts).astype(int), 0, np.array(mask.shape) - 1)
    return float(np.mean(mask[tuple(idx.T)]))
