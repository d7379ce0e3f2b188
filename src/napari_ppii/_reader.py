"""napari reader: scans open as image layers that keep the scan's geometry (spacing -> scale,
origin -> translate).  CT opens in the lung window.  Qt-free; napari calls it."""

from __future__ import annotations

from pathlib import Path


def get_reader(path):
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(path)
    from .io.readers import DICOM_SUFFIXES, ITK_SUFFIXES, RASTER_SUFFIXES, _suffix

    if p.is_dir() or _suffix(p) in RASTER_SUFFIXES + ITK_SUFFIXES + DICOM_SUFFIXES:
        return read_layers
    return None


def scan_layer_data(scan, name: str | None = None):
    """``(data, kwargs, 'image')`` for a :class:`~napari_ppii.io.Scan`."""
    from .preprocess import WINDOWS, is_ct

    kwargs = {
        "name": name or (scan.path.name if scan.path else "scan"),
        "scale": scan.spacing,
        "translate": scan.origin,
        "metadata": {"ppii_scan": {"spacing": scan.spacing, "origin": scan.origin, "modality": scan.modality,
                                   "path": str(scan.path) if scan.path else None}},
        "colormap": "gray",
    }
    if is_ct(scan):
        c, w = WINDOWS["lung"]
        kwargs["contrast_limits"] = (c - w / 2, c + w / 2)
    return (scan.array, kwargs, "image")


def read_layers(path):
    from .io import read_scan

    if isinstance(path, list):
        path = path[0]
    return [scan_layer_data(read_scan(path))]
