# SPDX-License-Identifier: BSD-3-Clause
"""Anatomy-aware anomaly maps at inference: the map weighted by a soft organ prior.

A chest lesion lies in the lungs, so a reader of chest scans looks there; multiplying an anomaly map by
a soft lung-field prior is ordinary practice in anomaly localisation (brain masks in MRI).  The prior
is *soft*: the mask smoothed by a Gaussian (``sigma`` x the image side, per image / slice) and lifted to
a ``floor`` outside it, so a lesion on the pleura or just outside the mask still scores, only damped:

    prior = floor + (1 - floor) * smooth(mask) / max(smooth(mask)),    weighted map = map * prior

Inside the mask, away from its edge, the prior is 1 and the map is unchanged.

Kinds (``PriorSettings.kind``): ``none`` (the raw map), ``lungs`` (lung fields computed from the scan:
:func:`napari_ppii.anatomy.lung_mask` -- CT from the HU volume, radiographs from the image) and
``mask`` (a mask the user gives: a file, or a painted napari Labels layer, of the scan's shape).

The defaults (:data:`DEFAULT_PRIOR`: lungs, sigma 0.03, floor 0.1) were chosen on the NIH Nodule/Mass boxes
except the two bundled radiographs (``benchmarks/prior_sweep.py``; benchmarks/README.md, "Prior at
inference"), never on the JSRT test rows or the bundled demo slab; CT scans have their own (sigma_ct,
floor_ct), chosen on LIDC-IDRI-0002 for the shipped CT model (eighth session).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .errors import InputError

PRIOR_KINDS = ("none", "lungs", "mask")


@dataclass(frozen=True)
class PriorSettings:
    kind: str = "lungs"
    sigma: float = 0.03  # Gaussian of sigma x the image side
    floor: float = 0.1  # the prior's value far outside the mask
    # CT scans' own values (None: the same as above); :meth:`for_scan` picks a scan's
    sigma_ct: float | None = None
    floor_ct: float | None = None

    def __post_init__(self):
        if self.kind not in PRIOR_KINDS:
            raise InputError(f"prior must be one of {', '.join(PRIOR_KINDS)}, got {self.kind!r}")
        for floor in (self.floor, self.floor_ct):
            if floor is not None and not 0.0 <= floor <= 1.0:
                raise InputError(f"prior floor must lie in [0, 1], got {floor}")
        for sigma in (self.sigma, self.sigma_ct):
            if sigma is not None and not 0.0 <= sigma <= 0.5:
                raise InputError(f"prior sigma must lie in [0, 0.5] (a fraction of the image side), got {sigma}")

    def for_modality(self, ct: bool) -> "PriorSettings":
        """The settings a CT scan (``ct``) or a radiograph gets, without CT values of their own."""
        if ct:
            sigma = self.sigma if self.sigma_ct is None else self.sigma_ct
            floor = self.floor if self.floor_ct is None else self.floor_ct
            return PriorSettings(self.kind, sigma, floor)
        return PriorSettings(self.kind, self.sigma, self.floor)

    @property
    def ct(self) -> "PriorSettings":
        """The settings a CT scan gets."""
        return self.for_modality(True)

    def for_scan(self, scan) -> "PriorSettings":
        """The settings ``scan`` gets (:attr:`ct` for a CT scan)."""
        from .io.scan import is_ct

        return self.for_modality(is_ct(scan))

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}  # CT values only where set

    def describe(self) -> str:
        if self.kind == "none":
            return "none (raw map)"
        what = "computed lung fields" if self.kind == "lungs" else "the given mask"
        text = f"map x soft prior of {what} (Gaussian {self.sigma:g} x side, floor {self.floor:g}"
        if self.ct != self.for_modality(False):
            text += f"; CT: {self.ct.sigma:g}, {self.ct.floor:g}"
        return text + ")"


#: The default prior of ``ppii predict`` / ``ppii evaluate`` and the widgets: radiographs' values chosen on
#: NIH boxes, CT's own on LIDC-IDRI-0002 (benchmarks/README.md, "A CT prior default of its own, again").
DEFAULT_PRIOR = PriorSettings(sigma_ct=0.015, floor_ct=0.1)


def soft_prior(mask: np.ndarray, sigma: float = DEFAULT_PRIOR.sigma, floor: float = DEFAULT_PRIOR.floor) -> np.ndarray:
    """The soft prior of a 2D mask, or of a 3D mask slice by slice, in ``[floor, 1]`` (float32).  An empty
    mask (slice) gives 1 everywhere: no anatomy found means nothing to damp."""
    from .anatomy import lung_prior

    m = np.asarray(mask)
    if m.ndim == 3:  # slice by slice into one float32 volume (no list of slices, no stacked copy)
        out = np.empty(m.shape, np.float32)
        for z in range(m.shape[0]):
            out[z] = soft_prior(m[z], sigma, floor)
        return out
    if m.ndim != 2:
        raise InputError(f"a prior mask must be 2D or 3D, got shape {m.shape}")
    if not (m > 0).any():
        return np.ones(m.shape, np.float32)
    return (floor + (1.0 - floor) * lung_prior(m > 0, sigma)).astype(np.float32)


def prior_mask(scan, settings: PriorSettings, mask: np.ndarray | None = None) -> np.ndarray | None:
    """The mask behind the prior for ``scan`` (a :class:`~napari_ppii.io.Scan` or an array), or None for
    ``none``.  ``mask`` (kind ``mask``) must have the scan's spatial shape."""
    if settings.kind == "none":
        return None
    arr = np.asarray(getattr(scan, "array", scan))
    spatial = arr.shape if arr.ndim <= 2 or getattr(scan, "ndim", arr.ndim) == 3 else arr.shape[:2]
    if settings.kind == "mask":
        if mask is None:
            raise InputError("prior 'mask' needs a mask (a mask file, or a Labels layer in the viewer)")
        m = np.asarray(mask)
        if m.shape != tuple(spatial):
            raise InputError(f"prior mask of shape {m.shape} does not match the scan's {tuple(spatial)}")
        if not np.isfinite(m).all():
            raise InputError("prior mask contains NaN or Inf values")
        return m > 0
    from .anatomy import lung_mask

    return lung_mask(scan)


def apply_prior(amap: np.ndarray, mask: np.ndarray | None, settings: PriorSettings) -> np.ndarray:
    """``amap`` weighted by the soft prior of ``mask`` (same shape); unchanged for ``none`` / no mask."""
    if settings.kind == "none" or mask is None:
        return amap
    if mask.shape != amap.shape:
        raise InputError(f"prior mask of shape {mask.shape} does not match the map's {amap.shape}")
    weighted = np.array(amap, dtype=np.float32, copy=True)
    weigh_in_place(weighted, mask, settings)
    return weighted


def weigh_in_place(amap: np.ndarray, mask, settings: PriorSettings) -> None:
    """``amap`` (float32, 2D or a volume) multiplied by the soft prior of ``mask`` in place, image by image
    or slice by slice (``mask``: an array of the map's shape, or a list of its slices' masks): the values
    of :func:`apply_prior`, without a second map."""
    if settings.kind == "none" or mask is None:
        return
    if amap.ndim == 2:
        m = np.asarray(mask[0] if isinstance(mask, list) else mask).reshape(amap.shape)
        amap *= soft_prior(m, settings.sigma, settings.floor)
        return
    for z in range(amap.shape[0]):
        amap[z] *= soft_prior(np.asarray(mask[z]), settings.sigma, settings.floor)


def weigh_map(amap: np.ndarray, scan, settings: PriorSettings, mask: np.ndarray | None = None) -> np.ndarray:
    """``amap`` (a map of ``scan``, its spatial shape) weighted by the prior ``settings`` ask for: the lungs
    computed from ``scan``, or ``mask``; ``amap`` itself for ``none``."""
    if settings.kind == "none":
        return amap
    return apply_prior(amap, prior_mask(scan, settings, mask).reshape(amap.shape), settings.for_scan(scan))
