# SPDX-License-Identifier: BSD-3-Clause
"""napari sample data: real scans shipped in ``resources/`` with their ground-truth boxes.

Installed from a wheel, the data is the package ``napari_ppii.resources`` (read with
:mod:`importlib.resources`); in a source checkout it is the top-level ``resources/`` folder.
"""

from __future__ import annotations

from pathlib import Path

from ._layers import boxes_shapes_data, geometry_kwargs, scan_layer_data


def _resources_root() -> Path:
    from importlib.resources import files

    try:
        root = files("napari_ppii.resources")
        if root.joinpath("nih-cxr").is_dir():
            return Path(str(root))
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parents[2] / "resources"


RESOURCES = _resources_root()


def _res(*parts) -> Path:
    p = RESOURCES.joinpath(*parts)
    if not p.exists():
        from .errors import InputError

        raise InputError("bundled sample data not found (install from the source tree)", p)
    return p


def lidc_ct():
    """LIDC-IDRI-0001: a 24-slice CT slab around its nodule (CC BY 3.0), with the 4 readers' boxes."""
    from .io import read_boxes, read_scan

    scan = read_scan(_res("lidc-idri-0001", "LIDC-IDRI-0001_slab.nii.gz"))
    boxes = read_boxes(_res("lidc-idri-0001", "LIDC-IDRI-0001_slab_boxes.csv"))
    return [
        scan_layer_data(scan, "LIDC-IDRI-0001 CT"),
        boxes_shapes_data(boxes, 3, name="LIDC-IDRI-0001 boxes", **geometry_kwargs(scan)),
    ]


def lidc_ct_full_view():
    """The same 24 LIDC-IDRI-0001 slices over the whole field of view, 256x256 (1.4 mm pixels: the grid
    the pretrained CT demo model was trained on), with the 4 readers' boxes."""
    from .io import read_boxes, read_scan

    scan = read_scan(_res("lidc-idri-0001", "LIDC-IDRI-0001_slab_fov256.nii.gz"))
    boxes = read_boxes(_res("lidc-idri-0001", "LIDC-IDRI-0001_slab_fov256_boxes.csv"))
    return [
        scan_layer_data(scan, "LIDC-IDRI-0001 CT full view"),
        boxes_shapes_data(boxes, 3, name="LIDC-IDRI-0001 full view boxes", **geometry_kwargs(scan)),
    ]


def _nih(stem: str, with_boxes: bool = True):
    from .io import read_boxes, read_scan

    scan = read_scan(_res("nih-cxr", f"{stem}.png"))
    layers = [scan_layer_data(scan, f"NIH {stem}")]
    if with_boxes:
        boxes = [b for b in read_boxes(_res("nih-cxr", "annotations.csv")) if b.image == f"{stem}.png"]
        layers.append(boxes_shapes_data(boxes, 2, name=f"NIH {stem} boxes", **geometry_kwargs(scan)))
    return layers


def nih_nodule():
    """NIH ChestX-ray14 00013751_003 (512x512) with its nodule box."""
    return _nih("00013751_003")


def nih_normals():
    """Four NIH ChestX-ray14 'No Finding' radiographs (512x512): material for a first training run."""
    out = []
    for stem in ("00000002_000", "00000005_000", "00000005_003", "00001529_003"):
        out += _nih(stem, with_boxes=False)
    return out
