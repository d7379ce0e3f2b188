# SPDX-License-Identifier: BSD-3-Clause
"""Ground-truth (and synthetic) lesion boxes: one :class:`Box` type for 2D and 3D.

Convention
----------
* Coordinates are **array indices in array axis order**: ``(row, col)`` = ``(y, x)`` for 2D images and
  ``(slice, row, col)`` = ``(z, y, x)`` for volumes, with pixel centres at integer positions and the
  origin at the first pixel (top-left; first slice after sorting by position).
* Both ends are **inclusive**: a pixel ``p`` is inside when ``lo[d] <= p[d] <= hi[d]`` for every axis.
  A point finding (LIDC nodule < 3 mm) is the box ``lo == hi``.  Coordinates may be fractional (JSRT's
  boxes are squares of a nodule's diameter around its centre).
* CSV files give ``x0, y0, x1, y1`` (and ``z0, z1`` or a single ``z`` for volumes) as inclusive pixel
  coordinates, x = column, y = row, exactly as ``../shared/data/jsrt/annotations.csv`` and
  LIDC-IDRI-0001_boxes2d.csv do; they are reordered into array axis order on reading.
"""

from __future__ import annotations

import csv
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..errors import InputError


@dataclass(frozen=True)
class Box:
    """An axis-aligned box, inclusive at both ends, in array index coordinates (see module doc)."""

    lo: tuple[float, ...]
    hi: tuple[float, ...]
    image: str | None = None
    label: str = "lesion"
    properties: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        lo = tuple(float(v) for v in self.lo)
        hi = tuple(float(v) for v in self.hi)
        if len(lo) != len(hi) or len(lo) not in (2, 3):
            raise InputError(f"a box needs 2 or 3 coordinates at both ends, got lo={lo} hi={hi}")
        if any(not (math.isfinite(a) and math.isfinite(b)) for a, b in zip(lo, hi)):
            raise InputError(f"box coordinates must be finite, got lo={lo} hi={hi}")
        if any(a > b for a, b in zip(lo, hi)):
            raise InputError(f"box lower corner must not exceed the upper corner, got lo={lo} hi={hi}")
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)

    @property
    def ndim(self) -> int:
        return len(self.lo)

    @property
    def centre(self) -> tuple[float, ...]:
        return tuple((a + b) / 2 for a, b in zip(self.lo, self.hi))

    @property
    def size(self) -> tuple[float, ...]:
        """Extent in pixels (inclusive ends: ``hi - lo + 1``)."""
        return tuple(b - a + 1 for a, b in zip(self.lo, self.hi))

    def contains(self, point: Sequence[float]) -> bool:
        return all(a <= p <= b for a, p, b in zip(self.lo, point, self.hi))

    def index_slices(self, shape: Sequence[int] | None = None) -> tuple[slice, ...]:
        """Slices of the pixels inside the box (clipped to ``shape`` when given)."""
        out = []
        for d, (a, b) in enumerate(zip(self.lo, self.hi)):
            start, stop = math.ceil(a), math.floor(b) + 1
            if shape is not None:
                start, stop = max(start, 0), min(stop, shape[d])
            out.append(slice(start, max(start, stop)))
        return tuple(out)

    def mask(self, shape: Sequence[int]) -> np.ndarray:
        m = np.zeros(tuple(shape), dtype=bool)
        m[self.index_slices(shape)] = True
        return m

    def to_2d(self) -> "Box":
        """Drop the slice axis of a 3D box."""
        if self.ndim == 2:
            return self
        return Box(self.lo[1:], self.hi[1:], self.image, self.label, dict(self.properties))

    def scaled(self, factors: Sequence[float]) -> "Box":
        """The box on a grid resized by ``factors`` per axis (pixel centres map ``i -> (i + 0.5) f - 0.5``)."""
        lo = tuple((a + 0.5) * f - 0.5 for a, f in zip(self.lo, factors))
        hi = tuple(max(lo_i, (b + 0.5) * f - 0.5) for b, f, lo_i in zip(self.hi, factors, lo))
        return Box(lo, hi, self.image, self.label, dict(self.properties))

    def to_dict(self) -> dict[str, Any]:
        return {
            "lo": list(self.lo),
            "hi": list(self.hi),
            "image": self.image,
            "label": self.label,
            "properties": _jsonable(self.properties),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Box":
        return cls(
            tuple(d["lo"]), tuple(d["hi"]), d.get("image"), d.get("label", "lesion"), dict(d.get("properties") or {})
        )

    @classmethod
    def from_half_open(cls, start: Sequence[int], stop: Sequence[int], **kw) -> "Box":
        """From Python slice bounds ``[start, stop)``."""
        return cls(tuple(start), tuple(s - 1 for s in stop), **kw)


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, (np.floating, np.integer)):
            v = v.item()
        out[k] = v
    return out


# --------------------------------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------------------------------
_COORDS = ("x0", "y0", "x1", "y1")


def _num(value: str, *, path: Path, line: int, col: str) -> float | None:
    value = (value or "").strip()
    if value == "":
        return None
    try:
        v = float(value)
    except ValueError:
        raise InputError(f"line {line}: column {col!r} is not a number: {value!r}", path) from None
    if not math.isfinite(v):
        raise InputError(f"line {line}: column {col!r} is not finite: {value!r}", path)
    return v


def _convert(v: str) -> Any:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return v
    return int(f) if f.is_integer() and "." not in v else f


#: columns read as a box's slice index (one slice thick), in this order of preference
Z_COLUMNS = ("z", "z_index", "slice", "slice_index")


def read_boxes_csv(path: str | Path) -> list[Box]:
    """Boxes from a CSV with columns ``x0, y0, x1, y1`` (+ ``z0, z1``, or one of :data:`Z_COLUMNS` such as
    ``z`` or ``z_index``, for 3D).

    The image a row belongs to comes from ``image`` (or ``study_id``/``dicom_file``); the finding from
    ``label`` / ``kind``; every other column is kept in ``properties``.  Rows with an empty box (normal
    images in JSRT's table) give no box.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("box file not found", path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            fields = reader.fieldnames or []
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"not a readable CSV ({exc})", path) from None
    missing = [c for c in _COORDS if c not in fields]
    if missing:
        raise InputError(f"box CSV lacks column(s) {', '.join(missing)} (has: {', '.join(fields) or 'none'})", path)
    has_z01 = "z0" in fields and "z1" in fields
    zcol = next((c for c in Z_COLUMNS if c in fields), None)
    has_z = zcol is not None
    boxes = []
    for i, row in enumerate(rows, start=2):
        vals = {c: _num(row.get(c, ""), path=path, line=i, col=c) for c in _COORDS}
        if all(v is None for v in vals.values()):
            continue
        if any(v is None for v in vals.values()):
            raise InputError(f"line {i}: incomplete box {vals}", path)
        lo, hi = [vals["y0"], vals["x0"]], [vals["y1"], vals["x1"]]
        if has_z01 and (row.get("z0") or "").strip():
            lo.insert(0, _num(row["z0"], path=path, line=i, col="z0"))
            hi.insert(0, _num(row["z1"], path=path, line=i, col="z1"))
        elif has_z and (row.get(zcol) or "").strip():
            z = _num(row[zcol], path=path, line=i, col=zcol)
            lo.insert(0, z)
            hi.insert(0, z)
        image = row.get("image") or row.get("study_id") or row.get("dicom_file") or None
        label = row.get("label") or row.get("kind") or "lesion"
        skip = set(_COORDS) | {"z0", "z1", "label", zcol}
        props = {k: _convert(v) for k, v in row.items() if k not in skip and k is not None and v not in (None, "")}
        try:
            boxes.append(Box(tuple(lo), tuple(hi), image=image, label=label, properties=props))
        except InputError as exc:
            raise InputError(f"line {i}: {exc.reason}", path) from None
    return boxes


def write_boxes_csv(boxes: Iterable[Box], path: str | Path) -> None:
    boxes = list(boxes)
    three_d = any(b.ndim == 3 for b in boxes)
    prop_keys: list[str] = []
    for b in boxes:
        for k in b.properties:
            if k not in prop_keys and k not in ("image",):
                prop_keys.append(k)
    cols = ["image", "label", "x0", "y0", "x1", "y1"] + (["z0", "z1"] if three_d else []) + prop_keys
    with Path(path).open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for b in boxes:
            row = {
                "image": b.image or "",
                "label": b.label,
                "x0": b.lo[-1],
                "y0": b.lo[-2],
                "x1": b.hi[-1],
                "y1": b.hi[-2],
            }
            if b.ndim == 3:
                row.update(z0=b.lo[0], z1=b.hi[0])
            row.update({k: b.properties.get(k, "") for k in prop_keys})
            w.writerow(row)


# --------------------------------------------------------------------------------------------------
# LIDC-IDRI radiologist XML
# --------------------------------------------------------------------------------------------------
def _strip_ns(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(el, name):
    return [c for c in el if _strip_ns(c.tag) == name]


def _child_text(el, name, default=None):
    for c in el:
        if _strip_ns(c.tag) == name:
            return (c.text or "").strip()
    return default


def read_lidc_xml(
    path: str | Path, z_positions: Sequence[float] | None = None, *, include_non_nodules: bool = True
) -> list[Box]:
    """Boxes of the findings in an LIDC-IDRI reading XML, one per reader and finding.

    Each ``unblindedReadNodule`` becomes a 3D box around its ROI edge points (``nodule>=3mm`` when it
    has characteristics, i.e. a contoured nodule; ``nodule<3mm`` for a single point) and each
    ``nonNodule`` a point box.  With ``z_positions`` (the series' slice positions along the slice normal
    in mm, in array order: see :attr:`Scan.slice_positions`), ``imageZposition`` is mapped to the
    nearest slice index; without, the z coordinate stays in mm and ``properties['z_units'] == 'mm'``.
    Properties: reader index and id, nodule id, the characteristics (subtlety, malignancy, ...).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("LIDC XML file not found", path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise InputError(f"not well-formed XML ({exc})", path) from None
    if _strip_ns(root.tag) != "LidcReadMessage":
        raise InputError(f"not an LIDC read message (root element {_strip_ns(root.tag)!r})", path)
    zpos = None if z_positions is None else np.asarray(z_positions, dtype=float)

    def z_index(zmm: float) -> float:
        if zpos is None:
            return zmm
        i = int(np.argmin(np.abs(zpos - zmm)))
        return float(i)

    boxes: list[Box] = []
    for r_idx, session in enumerate(_children(root, "readingSession")):
        reader_id = _child_text(session, "servicingRadiologistID", "")
        for nod in _children(session, "unblindedReadNodule"):
            nid = _child_text(nod, "noduleID", "")
            chars = {}
            for ch in _children(nod, "characteristics"):
                for c in ch:
                    try:
                        chars[_strip_ns(c.tag)] = int((c.text or "").strip())
                    except ValueError:
                        pass
            pts = []
            for roi in _children(nod, "roi"):
                if (_child_text(roi, "inclusion", "TRUE") or "TRUE").upper() != "TRUE":
                    continue
                z = float(_child_text(roi, "imageZposition", "nan"))
                for em in _children(roi, "edgeMap"):
                    pts.append((z_index(z), float(_child_text(em, "yCoord")), float(_child_text(em, "xCoord"))))
            if not pts:
                continue
            arr = np.asarray(pts)
            kind = "nodule>=3mm" if chars else "nodule<3mm"
            props = {"reader_index": r_idx, "reader_id": reader_id, "nodule_id": nid, **chars}
            if zpos is None:
                props["z_units"] = "mm"
            boxes.append(Box(tuple(arr.min(0)), tuple(arr.max(0)), image=None, label=kind, properties=props))
        if include_non_nodules:
            for nn in _children(session, "nonNodule"):
                z = float(_child_text(nn, "imageZposition", "nan"))
                loc = _children(nn, "locus")
                if not loc:
                    continue
                y, x = float(_child_text(loc[0], "yCoord")), float(_child_text(loc[0], "xCoord"))
                props = {"reader_index": r_idx, "reader_id": reader_id, "nodule_id": _child_text(nn, "nonNoduleID", "")}
                if zpos is None:
                    props["z_units"] = "mm"
                boxes.append(Box((z_index(z), y, x), (z_index(z), y, x), label="non-nodule", properties=props))
    if not boxes:
        raise InputError("no reading session with a marked finding", path)
    return boxes


def read_boxes(path: str | Path, z_positions: Sequence[float] | None = None) -> list[Box]:
    """Read boxes from a CSV (2D/3D) or an LIDC XML file, chosen by extension."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return read_boxes_csv(path)
    if suffix == ".xml":
        return read_lidc_xml(path, z_positions)
    raise InputError(f"unsupported box file type {suffix!r} (expected .csv or LIDC .xml)", path)


def boxes_outside(boxes: Iterable[Box], shape: Sequence[int]) -> list[Box]:
    """The boxes that lie wholly outside an array of ``shape`` (pixel centres ``0 .. n - 1`` per axis; a
    2D box against a volume is checked in-plane).  Such a box cannot be a lesion of that scan: boxes of
    another scan, or in another unit."""
    out = []
    for b in boxes:
        axes = list(shape)[-b.ndim :]
        if any(hi < -0.5 or lo > n - 0.5 for lo, hi, n in zip(b.lo, b.hi, axes)):
            out.append(b)
    return out
