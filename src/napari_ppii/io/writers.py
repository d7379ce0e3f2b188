# SPDX-License-Identifier: BSD-3-Clause
"""Writing arrays back in a scan's geometry: NIfTI (volumes, or 2D), TIFF (float) and PNG (16-bit)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from .scan import Scan

FORMATS = ("nifti", "tiff", "png")


def default_format(ndim: int) -> str:
    return "nifti" if ndim == 3 else "tiff"


def suffix_for(fmt: str) -> str:
    return {"nifti": ".nii.gz", "tiff": ".tif", "png": ".png"}[fmt]


def round_mantissa(array: np.ndarray, bits: int) -> np.ndarray:
    """float32 values rounded to ``bits`` mantissa bits (float16's precision is 10), kept float32: the
    dropped low bits are zeros, which gzip packs far better; relative error <= 2**-(bits + 1)."""
    drop = 23 - int(bits)
    out = np.array(array, dtype=np.float32, order="C", copy=True)  # the one copy; rounded in place, in chunks
    if drop <= 0:
        return out
    half = np.uint32(1 << (drop - 1))
    mask = np.uint32((0xFFFFFFFF >> drop) << drop)
    flat, u = out.reshape(-1), out.reshape(-1).view(np.uint32)
    step = 1 << 22
    for s in range(0, flat.size, step):
        finite = np.isfinite(flat[s : s + step])
        u[s : s + step][finite] = (u[s : s + step][finite] + half) & mask
    return out


def write_array(
    array: np.ndarray,
    path: str | Path,
    like: Scan | None = None,
    fmt: str | None = None,
    mantissa_bits: int | None = None,
) -> Path:
    """Write ``array`` to ``path`` (suffix added when missing).  ``mantissa_bits``: store the values rounded
    to that precision (:func:`round_mantissa`; maps: 10, float16's, where nothing downstream needs more).

    * ``nifti``: float32 with ``like``'s spacing/origin/direction (SimpleITK).
    * ``tiff``: float32, lossless; 2D only.
    * ``png``: 16-bit, ``round(clip(v, 0, 1) * 65535)``; for data in [0, 1] (images and labels); 2D only.
    """
    array = np.asarray(array, dtype=np.float32)
    if mantissa_bits is not None:
        array = round_mantissa(array, mantissa_bits)
    fmt = fmt or default_format(array.ndim)
    if fmt not in FORMATS:
        raise InputError(f"unknown output format {fmt!r} (choose from {', '.join(FORMATS)})")
    path = Path(path)
    if not path.name.endswith(suffix_for(fmt)):
        path = path.with_name(path.name + suffix_for(fmt))
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "nifti":
        import SimpleITK as sitk

        if like is not None and like.shape == array.shape:
            img = like.to_sitk(array)
        else:
            img = sitk.GetImageFromArray(array)
        sitk.WriteImage(img, str(path), useCompression=True)
    elif array.ndim != 2:
        raise InputError(f"{fmt} output holds 2D images only; use nifti for a {array.ndim}D array", path)
    elif fmt == "tiff":
        import tifffile

        kw = {}
        if like is not None and like.shape == array.shape:
            kw["resolution"] = (1.0 / like.spacing[1], 1.0 / like.spacing[0])
        tifffile.imwrite(path, array, **kw)
    else:
        import imageio.v3 as iio

        iio.imwrite(path, np.round(np.clip(array, 0.0, 1.0) * 65535).astype(np.uint16))
    return path
