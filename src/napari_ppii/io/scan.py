# SPDX-License-Identifier: BSD-3-Clause
"""The :class:`Scan` value: everything loaded from a file or folder."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError


@dataclass
class Scan:
    """A radiograph (2D) or a volume (3D) with its geometry.

    Geometry is stored in **array axis order** -- ``(y, x)`` or ``(z, y, x)`` -- which is what napari
    layers use (``scale=spacing``, ``translate=origin``).  SimpleITK / DICOM order is the reverse
    ``(x, y, z)``; :meth:`to_sitk` and the readers convert.

    Attributes
    ----------
    array: float32 voxel values: HU for CT, rescaled stored values for radiographs.
    spacing: voxel size per axis in mm (1.0 when the file has none).
    origin: physical position of the first voxel per axis in mm (DICOM/ITK LPS, array order).
    direction: ``ndim x ndim`` direction cosines in array order (row ``i`` = axis ``i``'s direction).
    modality: DICOM modality (``CT``, ``CR``, ``DX``, ...) or ``OT`` when unknown.
    path: where the scan came from.
    metadata: what is needed to write results back and to pre-process (window centre/width,
        photometric interpretation, series UID, rescale, bits stored, slice positions, ...).
    """

    array: np.ndarray
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: np.ndarray
    modality: str = "OT"
    path: Path | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.array = np.asarray(self.array)
        nd = self.array.ndim
        if nd not in (2, 3):
            raise InputError(f"expected a 2D image or a 3D volume, got an array of shape {self.array.shape}", self.path)
        self.spacing = tuple(float(s) for s in self.spacing)
        self.origin = tuple(float(o) for o in self.origin)
        self.direction = np.asarray(self.direction, dtype=float).reshape(nd, nd)
        if len(self.spacing) != nd or len(self.origin) != nd:
            raise InputError(
                f"geometry does not match a {nd}D array (spacing {self.spacing}, origin {self.origin})", self.path
            )
        if any(not np.isfinite(s) or s <= 0 for s in self.spacing):
            raise InputError(f"voxel spacing must be positive and finite, got {self.spacing}", self.path)

    @property
    def ndim(self) -> int:
        return self.array.ndim

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def slice_positions(self) -> np.ndarray | None:
        """Positions (mm) of the slices along the slice normal, in array order (volumes)."""
        pos = self.metadata.get("slice_positions")
        return None if pos is None else np.asarray(pos, dtype=float)

    def with_array(self, array: np.ndarray, **changes) -> "Scan":
        """A copy with another array of the same geometry (or with ``changes`` applied)."""
        return replace(self, array=array, metadata=dict(self.metadata), **changes)

    def to_sitk(self, array: np.ndarray | None = None):
        """A SimpleITK image with this scan's geometry (``array`` defaults to the scan's own)."""
        import SimpleITK as sitk

        arr = self.array if array is None else np.asarray(array)
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing(tuple(reversed(self.spacing)))
        img.SetOrigin(tuple(reversed(self.origin)))
        # array-order direction D (row i = axis i) -> ITK matrix with columns = ITK axes (x, y, z)
        d = self.direction[::-1, ::-1].T
        img.SetDirection(tuple(d.ravel()))
        return img

    @staticmethod
    def geometry_from_sitk(img) -> tuple[tuple[float, ...], tuple[float, ...], np.ndarray]:
        nd = img.GetDimension()
        spacing = tuple(reversed(img.GetSpacing()))
        origin = tuple(reversed(img.GetOrigin()))
        d = np.asarray(img.GetDirection(), dtype=float).reshape(nd, nd)
        direction = d.T[::-1, ::-1]
        return spacing, origin, direction


def is_ct(scan) -> bool:
    """Whether ``scan`` (a :class:`Scan`, or anything with a ``modality``) is a CT scan."""
    return str(getattr(scan, "modality", "") or "").upper() == "CT"
