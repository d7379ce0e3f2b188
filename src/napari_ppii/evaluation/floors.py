# SPDX-License-Identifier: BSD-3-Clause
"""Non-learned floors: maps that know nothing of lesions, scored beside every model.

A learned anomaly map is only useful where it beats maps that learn nothing.  On chest radiographs both
pixel AUROC and FROC reward spatial priors (nodules lie in the lungs), so the evaluation scores, with
the same metric code and CIs as the model:

* ``random`` -- uniform noise (pixel AUROC 0.5 by construction; the FROC of guessing);
* ``lung_field`` -- the lung mask (:mod:`napari_ppii.anatomy`) smoothed into a soft spatial prior;
* ``darkness`` -- the crude lung-field map: one minus the smoothed, equalised image (dark = lung);
* ``atlas`` -- the inverted mean of the training normals (one map for every image), when training data
  is given;
* ``blob`` -- bright blobs (a multi-scale difference of Gaussians at nodule sizes on the equalised
  image) times the lung-field prior: a classical nodule-candidate detector without any learning.

All maps are computed on each test scan's own grid and scaled to [0, 1].  Volumes: slice by slice (the
lung mask from the HU volume).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ..preprocess import equalise, normalise

FLOORS = ("random", "lung_field", "darkness", "atlas", "blob")


def _unit(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float32)
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def display_image(image2d: np.ndarray) -> np.ndarray:
    """A radiograph / slice normalised (percentiles) and equalised to [0, 1]."""
    return equalise(normalise(np.asarray(image2d, dtype=np.float32)))


def darkness_map(x: np.ndarray) -> np.ndarray:
    """One minus the smoothed, equalised image (``x`` already in [0, 1] and equalised)."""
    return _unit(1.0 - ndi.gaussian_filter(x, 0.02 * max(x.shape)))


def blob_map(x: np.ndarray, prior: np.ndarray, diameters=(0.02, 0.04, 0.07)) -> np.ndarray:
    """Bright blobs: max over scales of the normalised difference of Gaussians ``G(s) - G(1.6 s)`` with
    ``s = d / (2 sqrt 2)`` for nodule diameters ``d`` (fractions of the side), times ``prior``."""
    side = max(x.shape)
    resp = np.zeros_like(x, dtype=np.float32)
    for d in diameters:
        s = d * side / (2 * np.sqrt(2))
        dog = ndi.gaussian_filter(x, s) - ndi.gaussian_filter(x, 1.6 * s)
        resp = np.maximum(resp, dog.astype(np.float32))
    return _unit(np.clip(resp, 0, None) * prior)


def floor_map_2d(
    kind: str, image2d: np.ndarray, lung: np.ndarray, atlas: np.ndarray | None = None, seed=0, display=None
) -> np.ndarray:
    """One floor for one 2D image (native grid) with its lung mask, computed alone (the evaluation computes
    the floors of a CT volume slice by slice when it scores them, never holding them all).  ``random`` draws from
    ``numpy.random.default_rng(seed)``; ``display``: the image already in [0, 1] (CT: windowed), or a
    callable giving it."""
    from ..anatomy import lung_prior
    from ..preprocess import resize

    def x():
        d = display() if callable(display) else display
        return display_image(image2d) if d is None else equalise(d)

    if kind == "random":
        return np.random.default_rng(seed).random(np.shape(image2d)[:2], dtype=np.float32)
    if kind == "lung_field":
        return _unit(lung_prior(lung))
    if kind == "darkness":
        return darkness_map(x())
    if kind == "blob":
        return blob_map(x(), lung_prior(lung))
    if kind == "atlas":
        if atlas is None:
            raise ValueError("the atlas floor needs the training atlas")
        return _unit(1.0 - resize(atlas, np.shape(image2d)[:2]))
    raise ValueError(f"unknown floor {kind!r} (one of {', '.join(FLOORS)})")


class LazyMaps:
    """A sequence whose ``i``-th map is ``make(i)``, computed when it is taken (and not kept)."""

    def __init__(self, make, n: int):
        self.make, self.n = make, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> np.ndarray:
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self.make(i)


def training_atlas(images: np.ndarray) -> np.ndarray:
    """The mean of the (pre-processed) training normals ``(N, S, S)``."""
    return np.asarray(images, dtype=np.float32).mean(0)
