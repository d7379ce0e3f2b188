# SPDX-License-Identifier: BSD-3-Clause
"""Readers: radiographs (PNG/JPEG/TIFF, single-frame DICOM), CT (DICOM series, NIfTI, MHD/MHA, NRRD).

Every failure -- missing, corrupt or truncated file, empty folder, non-image file, unsupported pixel
format, NaN/Inf -- raises :class:`~napari_ppii.errors.InputError` naming the file.  The entry point is
:func:`read_scan`, which picks the reader from the path.
"""

from __future__ import annotations

import struct
import warnings
import zlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError
from .scan import Scan

RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
#: Largest scan a reader accepts (voxels): 2**30 is a 1024^3 volume (4 GiB as float32).  A header that
#: declares more (a corrupt or hostile file) is refused before any pixel memory is allocated.
MAX_VOXELS = 2**30
ITK_SUFFIXES = (".nii", ".nii.gz", ".mhd", ".mha", ".nrrd", ".nhdr")
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
#: every file suffix a scan reader takes (DICOM files without a suffix are recognised by their header)
SCAN_SUFFIXES = RASTER_SUFFIXES + ITK_SUFFIXES + DICOM_SUFFIXES


def scan_suffix(path: str | Path) -> str:
    """The lower-case suffix that decides the reader (``.nii.gz`` counts as one)."""
    name = Path(path).name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return Path(name).suffix


def scan_files(folder: str | Path, *, recursive: bool = True, suffixes: Sequence[str] = SCAN_SUFFIXES) -> list[Path]:
    """The scan files of a folder with one of ``suffixes`` (sorted; hidden files skipped): the one rule
    the training data, the realism statistics, ``ppii predict`` and the viewer's reader use."""
    folder = Path(folder)
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.is_file() and not p.name.startswith(".") and scan_suffix(p) in suffixes)


def check_finite(array: np.ndarray, path: Path | None) -> None:
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        n = int(array.size - np.isfinite(array).sum())
        raise InputError(f"contains {n} NaN/Inf value(s); the scan cannot be used as it is", path)


def check_size(shape: Sequence[int], path: Path | None) -> None:
    """Refuse a declared size beyond :data:`MAX_VOXELS` (or with a non-positive extent) before reading pixels."""
    dims = [int(n) for n in shape]
    if any(n <= 0 for n in dims):
        raise InputError(f"declares an empty image of size {tuple(dims)}", path)
    total = int(np.prod(dims, dtype=object))
    if total > MAX_VOXELS:
        raise InputError(
            f"declares {total:,} voxels {tuple(dims)}, more than the {MAX_VOXELS:,} this reader "
            "accepts (a corrupt header, or a scan to crop or downsample first)",
            path,
        )


# --------------------------------------------------------------------------------------------------
# PNG / JPEG / TIFF
# --------------------------------------------------------------------------------------------------
def _to_grey(arr: np.ndarray, path: Path) -> np.ndarray:
    """Accept grey, grey+alpha, and RGB(A) whose colour channels are equal; refuse true colour."""
    if arr.ndim == 2:
        return arr
    if arr.ndim == 3 and arr.shape[-1] in (2, 3, 4):
        ch = arr.shape[-1]
        colour = arr[..., :3] if ch >= 3 else arr[..., :1]
        if ch == 2:
            return arr[..., 0]
        if np.array_equal(colour[..., 0], colour[..., 1]) and np.array_equal(colour[..., 0], colour[..., 2]):
            return colour[..., 0]
        raise InputError("is a colour image; radiographs must be greyscale (R = G = B)", path)
    raise InputError(f"unsupported image layout {arr.shape} (expected a single 2D greyscale image)", path)


def read_raster(path: str | Path) -> Scan:
    """PNG, JPEG or TIFF radiograph (8- or 16-bit, or float TIFF)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", path)
    suffix = scan_suffix(path)
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                check_size(tif.series[0].shape, path)
                arr = tif.asarray()
        else:
            import imageio.v3 as iio

            arr = iio.imread(path)
    except Exception as exc:  # imageio/PIL/tifffile raise many types for bad files
        raise InputError(
            f"cannot be read as {suffix[1:].upper()} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'corrupt or truncated'})",
            path,
        ) from None
    arr = np.asarray(arr)
    arr = np.squeeze(arr) if arr.ndim > 2 and 1 in arr.shape[:-1] else arr
    arr = _to_grey(arr, path)
    if arr.dtype.kind not in "uif" or arr.dtype == np.bool_:
        raise InputError(f"unsupported pixel type {arr.dtype}", path)
    bits = arr.dtype.itemsize * 8 if arr.dtype.kind in "ui" else None
    out = arr.astype(np.float32)
    check_finite(out, path)
    return Scan(
        out,
        (1.0, 1.0),
        (0.0, 0.0),
        np.eye(2),
        modality="OT",
        path=path,
        metadata={"format": suffix[1:], "dtype": str(arr.dtype), "bits": bits},
    )


# --------------------------------------------------------------------------------------------------
# DICOM
# --------------------------------------------------------------------------------------------------
def _dcmread(path: Path, stop_before_pixels: bool = False):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
    except InvalidDicomError:
        raise InputError("is not a DICOM file (no DICM preamble/header)", path) from None
    except Exception as exc:
        raise InputError(f"corrupt or truncated DICOM ({type(exc).__name__}: {exc})", path) from None


def _number(ds, key: str, default, path: Path, kind=int):
    """A numeric header value (``kind`` int or float), ``default`` when absent or empty; a value that does
    not parse (e.g. IS '1A') is a clean error naming the element."""
    v = getattr(ds, key, None)
    if v is None or (isinstance(v, (str, bytes)) and not v.strip()):
        return default
    try:
        return kind(float(v)) if kind is int else kind(v)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"DICOM element {key} has the invalid value {str(v)[:40]!r}", path) from None


def _stored_to_values(ds, path: Path) -> np.ndarray:
    """Pixel data -> float32 values: BitsStored masking, modality LUT (rescale), MONOCHROME1 inverted."""
    if "PixelData" not in ds:
        raise InputError("DICOM file has no pixel data", path)
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise InputError(f"unsupported photometric interpretation {photometric} (greyscale only)", path)
    if _number(ds, "SamplesPerPixel", 1, path) != 1:
        raise InputError("unsupported: more than one sample per pixel", path)
    check_size(
        (_number(ds, "NumberOfFrames", 1, path) or 1, _number(ds, "Rows", 0, path), _number(ds, "Columns", 0, path)),
        path,
    )
    if len(ds.PixelData or b"") == 0:
        raise InputError("DICOM pixel data is empty (zero length)", path)
    try:
        raw = ds.pixel_array
    except Exception as exc:
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "unknown")
        raise InputError(
            f"cannot decode pixel data (transfer syntax {getattr(ts, 'name', ts)}): {str(exc).splitlines()[0]}", path
        ) from None
    bits_alloc = _number(ds, "BitsAllocated", raw.dtype.itemsize * 8, path)
    bits = _number(ds, "BitsStored", bits_alloc, path)
    if not 1 <= bits <= bits_alloc <= 64:
        raise InputError(f"DICOM BitsStored {bits} / BitsAllocated {bits_alloc} are inconsistent", path)
    signed = _number(ds, "PixelRepresentation", 0, path) == 1
    raw = raw.astype(np.int64)
    if bits < bits_alloc:
        raw = raw & ((1 << bits) - 1)  # drop overlay / garbage bits above BitsStored
        if signed:
            raw = np.where(raw >= (1 << (bits - 1)), raw - (1 << bits), raw)
    slope = _number(ds, "RescaleSlope", 1.0, path, float) or 1.0
    intercept = _number(ds, "RescaleIntercept", 0.0, path, float)
    values = raw.astype(np.float64) * slope + intercept
    if photometric == "MONOCHROME1":
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        vmin, vmax = sorted((lo * slope + intercept, hi * slope + intercept))
        values = (vmin + vmax) - values
    return values.astype(np.float32)


def _window_meta(ds) -> dict:
    meta = {}
    for key, name in (("WindowCenter", "window_center"), ("WindowWidth", "window_width")):
        v = getattr(ds, key, None)
        if v is None:
            continue
        try:
            meta[name] = float(v[0] if hasattr(v, "__len__") and not isinstance(v, str) else v)
        except (TypeError, ValueError, IndexError):
            pass
    return meta


def _float_tuple(v, n, default):
    try:
        out = tuple(float(x) for x in v)
        return out if len(out) == n else default
    except (TypeError, ValueError):
        return default


def read_dicom_file(path: str | Path) -> Scan:
    """A single-frame DICOM image (CR/DX radiograph, or one CT slice)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", path)
    ds = _dcmread(path)
    frames = _number(ds, "NumberOfFrames", 1, path) or 1
    if frames > 1:
        raise InputError(
            f"multi-frame DICOM ({frames} frames) is not supported; export single frames or a series", path
        )
    values = _stored_to_values(ds, path)
    if values.ndim != 2:
        raise InputError(f"unsupported DICOM pixel layout {values.shape}", path)
    check_finite(values, path)
    spacing = _float_tuple(getattr(ds, "PixelSpacing", None) or getattr(ds, "ImagerPixelSpacing", None), 2, (1.0, 1.0))
    ipp = _float_tuple(getattr(ds, "ImagePositionPatient", None), 3, None)
    origin = (ipp[1], ipp[0]) if ipp else (0.0, 0.0)
    meta = {
        "format": "dicom",
        "photometric": str(getattr(ds, "PhotometricInterpretation", "")),
        "bits_stored": _number(ds, "BitsStored", 0, path),
        "rescale_slope": _number(ds, "RescaleSlope", 1.0, path, float) or 1.0,
        "rescale_intercept": _number(ds, "RescaleIntercept", 0.0, path, float),
        "sop_instance_uid": str(getattr(ds, "SOPInstanceUID", "")),
        "study_instance_uid": str(getattr(ds, "StudyInstanceUID", "")),
        **_window_meta(ds),
    }
    return Scan(
        values,
        spacing,
        origin,
        np.eye(2),
        modality=str(getattr(ds, "Modality", "OT") or "OT"),
        path=path,
        metadata=meta,
    )


@dataclass(frozen=True)
class SeriesInfo:
    """One DICOM series found in a folder."""

    uid: str
    n_slices: int
    modality: str
    description: str
    files: tuple[Path, ...]


def _candidate_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and p.name.upper() != "DICOMDIR" and not p.name.startswith(".")
    )


def list_series(folder: str | Path) -> list[SeriesInfo]:
    """The image series in a folder (recursively), largest first.  Non-DICOM files are skipped."""
    import pydicom

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("folder not found", folder)
    files = _candidate_files(folder)
    if not files:
        raise InputError("folder is empty", folder)
    groups: dict[str, list] = defaultdict(list)
    for f in files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
        except Exception:
            continue  # not DICOM (or unreadable header): skipped, reported below if nothing is left
        if "ImagePositionPatient" not in ds and "PixelSpacing" not in ds and "Rows" not in ds:
            continue  # DICOM but not an image (SR, presentation state, ...)
        groups[str(getattr(ds, "SeriesInstanceUID", "unknown"))].append((f, ds))
    if not groups:
        raise InputError(f"no DICOM image files among {len(files)} file(s)", folder)
    infos = []
    for uid, items in groups.items():
        ds0 = items[0][1]
        infos.append(
            SeriesInfo(
                uid,
                len(items),
                str(getattr(ds0, "Modality", "OT")),
                str(getattr(ds0, "SeriesDescription", "")),
                tuple(f for f, _ in items),
            )
        )
    return sorted(infos, key=lambda s: (-s.n_slices, s.uid))


@dataclass
class FolderContents:
    """What a folder holds, by the one input rule of ``ppii info``, ``ppii predict`` and the viewer:
    each DICOM image series is one scan, each image / volume file (PNG, JPEG, TIFF, NIfTI, MHD, NRRD) is
    one scan; every other file is listed as not read, with the reason."""

    series: list[SeriesInfo]
    files: list[Path]
    skipped: list[tuple[Path, str]]

    @property
    def n_scans(self) -> int:
        return len(self.series) + len(self.files)


def folder_contents(folder: str | Path) -> FolderContents:
    """The scans of a folder (DICOM series found recursively, image / volume files at its top level) and
    the files that are not read."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("folder not found", folder)
    files = scan_files(folder, recursive=False, suffixes=RASTER_SUFFIXES + ITK_SUFFIXES)
    try:
        series = list_series(folder)
    except InputError:
        series = []
    in_series = {f for s in series for f in s.files}
    skipped = [
        (
            p,
            "a box file (open it with the scan, or give it as --boxes)"
            if scan_suffix(p) in (".csv", ".xml")
            else "not a scan the readers take",
        )
        for p in sorted(folder.iterdir())
        if p.is_file()
        and not p.name.startswith(".")
        and p not in in_series
        and p not in files
        and p.name.upper() != "DICOMDIR"
    ]
    return FolderContents(series, files, skipped)


@dataclass(frozen=True)
class SeriesGeometry:
    """A series' slice order and geometry, from headers alone (no pixel data read)."""

    info: SeriesInfo
    files: tuple[Path, ...]  # in slice order
    positions: np.ndarray  # mm along the slice normal, ascending
    spacing: tuple[float, float, float]  # (z, y, x)
    origin: tuple[float, float, float]  # (z, y, x) of the first voxel
    direction: np.ndarray  # rows: z, y, x axes in (z, y, x) physical order
    first_header: object


def series_geometry(folder: str | Path, series_uid: str | None = None) -> SeriesGeometry:
    """Order a series by ``ImagePositionPatient`` projected on the slice normal (the cross product of
    the ``ImageOrientationPatient`` row and column cosines) -- never by file name or InstanceNumber."""
    folder = Path(folder)
    series = list_series(folder)
    if series_uid is None:
        chosen = series[0]
    else:
        match = [s for s in series if s.uid == series_uid]
        if not match:
            raise InputError(
                f"no series {series_uid!r}; found: " + ", ".join(f"{s.uid} ({s.n_slices} slices)" for s in series),
                folder,
            )
        chosen = match[0]
    headers = [(f, _dcmread(f, stop_before_pixels=True)) for f in chosen.files]
    iop = _float_tuple(getattr(headers[0][1], "ImageOrientationPatient", None), 6, (1.0, 0.0, 0.0, 0.0, 1.0, 0.0))
    row_cos, col_cos = np.array(iop[:3]), np.array(iop[3:])
    normal = np.cross(row_cos, col_cos)
    keyed = []
    for f, ds in headers:
        ipp = _float_tuple(getattr(ds, "ImagePositionPatient", None), 3, None)
        if ipp is None:
            raise InputError("slice lacks ImagePositionPatient; cannot order the series", f)
        keyed.append((float(np.dot(normal, ipp)), f, ipp, ds))
    keyed.sort(key=lambda t: t[0])
    positions = np.array([k[0] for k in keyed])
    if len(positions) > 1:
        gaps = np.diff(positions)
        if np.any(gaps <= 1e-6):
            dup = [k[1].name for k, g in zip(keyed[1:], gaps) if g <= 1e-6]
            raise InputError(
                f"series has slices at the same position ({', '.join(dup[:3])}); several series or duplicates mixed",
                folder,
            )
        dz = float(np.median(gaps))
        if np.max(np.abs(gaps - dz)) > 0.01 * dz + 1e-3:
            warnings.warn(
                f"{folder}: irregular slice spacing ({gaps.min():.3f}-{gaps.max():.3f} mm); "
                f"using the median {dz:.3f} mm",
                stacklevel=2,
            )
    else:
        dz = float(getattr(headers[0][1], "SliceThickness", 1.0) or 1.0)
    ds0 = keyed[0][3]
    ps = _float_tuple(getattr(ds0, "PixelSpacing", None), 2, (1.0, 1.0))  # (row spacing, column spacing)
    first = keyed[0][2]
    direction = np.stack([normal[::-1], col_cos[::-1], row_cos[::-1]])  # array order rows: z, y, x
    return SeriesGeometry(
        chosen,
        tuple(k[1] for k in keyed),
        positions,
        (dz, ps[0], ps[1]),
        (first[2], first[1], first[0]),
        direction,
        ds0,
    )


def read_dicom_series(folder: str | Path, series_uid: str | None = None) -> Scan:
    """A CT (or MR) volume from a DICOM series folder, ordered by :func:`series_geometry`.

    Values are HU (or the modality's units) via RescaleSlope/Intercept.  A folder holding several series
    loads ``series_uid``, or by default the series with the most slices.
    """
    folder = Path(folder)
    geo = series_geometry(folder, series_uid)
    vol = None  # float32, filled slice by slice: no list of float64 slices, no stacked copy
    for k, f in enumerate(geo.files):
        v = _stored_to_values(_dcmread(f), f)
        if vol is None:
            check_size((len(geo.files),) + tuple(v.shape), folder)
            vol = np.empty((len(geo.files),) + tuple(v.shape), np.float32)
        elif v.shape != vol.shape[1:]:
            raise InputError(f"slice size {v.shape} differs from the series' {vol.shape[1:]}", f)
        vol[k] = v
    check_finite(vol, folder)
    ds0 = geo.first_header
    meta = {
        "format": "dicom-series",
        "series_instance_uid": geo.info.uid,
        "study_instance_uid": str(getattr(ds0, "StudyInstanceUID", "")),
        "series_description": geo.info.description,
        "slice_positions": geo.positions.tolist(),
        "files": [f.name for f in geo.files],
        "rescale_slope": _number(ds0, "RescaleSlope", 1.0, folder, float) or 1.0,
        "rescale_intercept": _number(ds0, "RescaleIntercept", 0.0, folder, float),
        **_window_meta(ds0),
    }
    return Scan(vol, geo.spacing, geo.origin, geo.direction, modality=geo.info.modality, path=folder, metadata=meta)


# --------------------------------------------------------------------------------------------------
# NIfTI / MHD / MHA / NRRD
# --------------------------------------------------------------------------------------------------
def read_itk(path: str | Path) -> Scan:
    """NIfTI, MetaImage (MHD/MHA) or NRRD via SimpleITK, geometry kept.  A single-slice volume is 2D."""
    import SimpleITK as sitk

    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", path)
    try:
        info = sitk.ImageFileReader()
        info.SetFileName(str(path))
        info.ReadImageInformation()
        check_size(info.GetSize() + ((info.GetNumberOfComponents(),) if info.GetNumberOfComponents() > 1 else ()), path)
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        detail = next(
            (ln for ln in lines if "ERROR" in ln.upper() or "exception" in ln.lower()), lines[-1] if lines else ""
        )
        raise InputError(
            f"cannot be read as a {scan_suffix(path)} image (corrupt, truncated or not an image: {detail[:200]})", path
        ) from None
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"has {img.GetNumberOfComponentsPerPixel()} components per pixel; expected a scalar image", path
        )
    if img.GetDimension() == 4 and img.GetSize()[3] == 1:
        img = img[:, :, :, 0]
    if img.GetDimension() not in (2, 3):
        raise InputError(f"is {img.GetDimension()}D; expected a 2D image or a 3D volume", path)
    if scan_suffix(path) in (".nii", ".nii.gz"):
        _check_nifti_finite(path)
    arr = sitk.GetArrayFromImage(img)
    spacing, origin, direction = Scan.geometry_from_sitk(img)
    if arr.ndim == 3 and arr.shape[0] == 1:  # single slice: treat as a 2D image
        arr, spacing, origin, direction = arr[0], spacing[1:], origin[1:], direction[1:, 1:]
    out = arr.astype(np.float32)
    check_finite(out, path)
    meta = {"format": scan_suffix(path).lstrip("."), "dtype": str(arr.dtype)}
    for key in img.GetMetaDataKeys():
        if key in ("descrip", "intent_name", "Modality"):
            meta[key] = img.GetMetaData(key)
    modality = "CT" if arr.ndim == 3 and arr.min() < -500 else "OT"
    return Scan(out, spacing, origin, direction, modality=modality, path=path, metadata=meta)


def _check_nifti_finite(path: Path) -> None:
    """ITK's NIfTI reader silently turns NaN/Inf voxels into 0; check the stored data with nibabel."""
    import nibabel as nib

    try:
        data = np.asanyarray(nib.load(str(path)).dataobj)
    except Exception:
        return  # SimpleITK read it; nibabel's opinion of the header is not needed for this check
    if data.dtype.kind == "f":
        check_finite(data, path)


# --------------------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------------------
def is_dicom_file(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
        return len(head) == 132 and head[128:132] == b"DICM"
    except OSError:
        return False


def read_scan(path: str | Path, series_uid: str | None = None) -> Scan:
    """Read any supported scan: a DICOM series folder, a DICOM file, NIfTI/MHD/MHA/NRRD, PNG/JPEG/TIFF.

    Every failure is an :class:`InputError` naming the file.  Header values are parsed lazily by the
    libraries, so a corrupt value can surface as a ``ValueError``/``TypeError``/... anywhere inside a
    reader: those become an ``InputError`` here too, as does a declared size too large to allocate."""
    path = Path(path)
    try:
        return _read_scan(path, series_uid)
    except InputError:
        raise
    except MemoryError:
        raise InputError("too large to load into memory", path) from None
    except (
        ValueError,
        TypeError,
        KeyError,
        AttributeError,
        IndexError,
        OverflowError,
        EOFError,
        OSError,
        RuntimeError,
        struct.error,
        zlib.error,
    ) as exc:
        first = str(exc).splitlines()[0][:200] if str(exc) else "no detail"
        raise InputError(f"corrupt or unsupported file ({type(exc).__name__}: {first})", path) from None


def _read_scan(path: Path, series_uid: str | None) -> Scan:
    if not path.exists():
        raise InputError("no such file or folder", path)
    if path.is_dir():
        return read_dicom_series(path, series_uid)
    suffix = scan_suffix(path)
    if path.stat().st_size == 0:
        raise InputError("file is empty", path)
    if suffix in RASTER_SUFFIXES:
        return read_raster(path)
    if suffix in ITK_SUFFIXES:
        return read_itk(path)
    if suffix in DICOM_SUFFIXES or is_dicom_file(path):
        return read_dicom_file(path)
    raise InputError(
        f"unsupported file type {suffix or '(no extension)'}; expected a DICOM file or series folder, "
        "NIfTI, MHD/MHA, NRRD, PNG, JPEG or TIFF",
        path,
    )
