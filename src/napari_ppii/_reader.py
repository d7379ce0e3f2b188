# SPDX-License-Identifier: BSD-3-Clause
"""napari readers (npe2): scans open as image layers that keep their geometry; box files (CSV, LIDC
XML) open as a Shapes layer of rectangles.  Failures reach napari as :class:`InputError` messages."""

from __future__ import annotations

import csv
from pathlib import Path

from ._layers import boxes_shapes_data, scan_layer_data
from .io.readers import SCAN_SUFFIXES, is_dicom_file, scan_suffix


def _one(path):
    if isinstance(path, (list, tuple)):
        return Path(path[0]) if len(path) == 1 else None
    return Path(path)


def get_reader(path):
    """The plugin's one reader: box files (a box CSV, an LIDC XML) open as boxes, scans (image files,
    DICOM folders) as images.  One contribution, so ``viewer.open(path)`` needs no plugin named."""
    p = _one(path)
    if p is None:
        return None
    boxes = get_boxes_reader(path)
    if boxes is not None:
        return boxes
    if p.is_dir() or scan_suffix(p) in SCAN_SUFFIXES or (p.is_file() and not p.suffix and is_dicom_file(p)):
        return read_scan_layers
    return None


def read_scan_layers(path):
    """The scan as an image layer; a reader's warnings (e.g. irregular slice spacing) become napari
    notifications, worded for the user (no source path or line of the package)."""
    import warnings

    from .io import read_scan

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        layer = scan_layer_data(read_scan(_one(path)))
    _notify([str(w.message) for w in caught if issubclass(w.category, UserWarning)])
    return [layer]


def _notify(messages) -> None:
    if not messages:
        return
    try:
        from napari.utils.notifications import show_warning
    except ImportError:  # used without napari: plain warnings
        import warnings

        for m in messages:
            warnings.warn(m, stacklevel=3)
        return
    for m in messages:
        show_warning(m)


def _is_box_csv(p: Path) -> bool:
    try:
        with p.open(newline="", encoding="utf-8-sig") as fh:
            header = next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError):
        return False
    return {"x0", "y0", "x1", "y1"} <= set(header)


def get_boxes_reader(path):
    p = _one(path)
    if p is None or not p.is_file():
        return None
    if p.suffix.lower() == ".csv" and _is_box_csv(p):
        return read_box_layers
    if p.suffix.lower() == ".xml":
        return read_box_layers
    return None


def _lidc_geometry(xml: Path):
    """Slice positions, spacing and origin of the series an LIDC XML describes, when that series lies
    in the XML's folder (or below it); otherwise None."""
    import xml.etree.ElementTree as ET

    from .io.readers import list_series, series_geometry

    try:
        uid_el = next((el for el in ET.parse(xml).getroot().iter() if el.tag.endswith("SeriesInstanceUid")), None)
    except ET.ParseError:
        return None
    uid = (uid_el.text or "").strip() if uid_el is not None else None
    try:
        series = list_series(xml.parent)
    except Exception:
        return None
    match = [s for s in series if s.uid == uid] or series[:1]
    return series_geometry(xml.parent, match[0].uid) if match else None


def read_box_layers(path):
    from .io import read_boxes

    p = _one(path)
    if p.suffix.lower() == ".xml":
        geo = _lidc_geometry(p)
        boxes = read_boxes(p, geo.positions if geo is not None else None)
        kw = {"scale": geo.spacing, "translate": geo.origin} if geo is not None else {}
        return [boxes_shapes_data(boxes, 3, name=f"{p.stem} boxes", **kw)]
    boxes = read_boxes(p)
    nd = max((b.ndim for b in boxes), default=2)
    return [boxes_shapes_data(boxes, nd, name=f"{p.stem} boxes")]
