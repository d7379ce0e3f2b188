# SPDX-License-Identifier: BSD-3-Clause
"""Layers <-> core values, in one place: Scan -> image layer data, boxes -> shapes layer data, and an
image layer -> Scan.  The scan's geometry travels with the layer (``scale`` = spacing, ``translate`` =
origin, and ``metadata['ppii_scan']``), so whatever is computed from it -- synthetic anomalies,
predictions, boxes -- is added with the same scale and translate and lines up.

Imports no Qt; napari is imported only where a layer object is inspected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import InputError
from .io.boxes import Box
from .io.scan import Scan

SCAN_KEY = "ppii_scan"
#: the name prefix of the layers the plugin's docks make (preview, training output, prediction)
LAYER_PREFIX = "P-PII"


#: metadata key marking a layer a dock made to show its results (maps, evaluation views)
OUTPUT_KEY = "ppii_output"


def is_own_layer(layer) -> bool:
    """A layer made by one of the plugin's docks (preview, batch, anomaly maps, evaluation views), not
    one of the user's scans: never offered as a scan to train on, predict or preview."""
    return layer.name.startswith(LAYER_PREFIX) or bool(getattr(layer, "metadata", {}).get(OUTPUT_KEY))


def geometry_kwargs(scan: Scan) -> dict[str, Any]:
    return {"scale": tuple(scan.spacing), "translate": tuple(scan.origin)}


def scan_metadata(scan: Scan) -> dict[str, Any]:
    meta = {k: v for k, v in scan.metadata.items() if k not in ("slice_positions", "files")}
    return {
        SCAN_KEY: {
            "spacing": tuple(scan.spacing),
            "origin": tuple(scan.origin),
            "direction": np.asarray(scan.direction).tolist(),
            "modality": scan.modality,
            "path": str(scan.path) if scan.path else None,
            "slice_positions": scan.metadata.get("slice_positions"),
            "metadata": meta,
        }
    }


def default_contrast(scan: Scan) -> tuple[float, float] | None:
    """CT opens in the lung window; other scans in napari's own range."""
    from .preprocess import is_ct, window_limits

    return window_limits("lung") if is_ct(scan) else None


def scan_layer_data(scan: Scan, name: str | None = None) -> tuple:
    """``(data, kwargs, 'image')`` for a :class:`Scan`."""
    kwargs: dict[str, Any] = {
        "name": name or (scan.path.name if scan.path else "scan"),
        "metadata": scan_metadata(scan),
        "colormap": "gray",
        **geometry_kwargs(scan),
    }
    cl = default_contrast(scan)
    if cl is not None:
        kwargs["contrast_limits"] = cl
    return (scan.array, kwargs, "image")


def boxes_shapes_data(
    boxes: Sequence[Box],
    ndim: int,
    *,
    name: str = "boxes",
    scale=None,
    translate=None,
    edge_color: str = "#00bfff",
    image: str | None = None,
) -> tuple:
    """Rectangles enclosing each box's pixels (edges at ``lo - 0.5`` and ``hi + 0.5``).

    A 3D box becomes one rectangle per slice it spans; a 2D box in a volume goes on every slice is not
    guessed: 2D boxes need a 2D layer.  Every box keeps its properties (label, size and the file's own
    columns such as subtlety), one row per rectangle.
    """
    boxes = [b for b in boxes if image is None or b.image in (None, image) or Path(str(b.image)).name == image]
    rects: list[np.ndarray] = []
    rows: list[dict[str, Any]] = []
    for i, b in enumerate(boxes):
        if b.ndim == 2 and ndim == 3:
            raise InputError("2D boxes cannot be placed in a volume: give them a z (or z0/z1) column")
        y0, x0 = b.lo[-2] - 0.5, b.lo[-1] - 0.5
        y1, x1 = b.hi[-2] + 0.5, b.hi[-1] + 0.5
        corners = np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]])
        props = {
            "label": b.label,
            "box": i,
            "size_px": float(max(b.size[-2:])),
            **{k: v for k, v in b.properties.items() if isinstance(v, (int, float, str))},
        }
        if ndim == 3:
            zs = range(int(np.ceil(b.lo[0])), int(np.floor(b.hi[0])) + 1)
            for z in zs:
                rects.append(np.column_stack([np.full(4, float(z)), corners]))
                rows.append(props)
        else:
            rects.append(corners)
            rows.append(props)
    keys: list[str] = []
    for r in rows:
        for k in r:
            if k not in keys:
                keys.append(k)
    features = {k: [r.get(k, "") for r in rows] for k in keys}
    kwargs: dict[str, Any] = {
        "name": name,
        "shape_type": "rectangle",
        "edge_color": edge_color,
        "face_color": "transparent",
        "edge_width": 2,
        "features": features,
        "ndim": ndim,
    }
    if scale is not None:
        kwargs["scale"] = tuple(scale)
    if translate is not None:
        kwargs["translate"] = tuple(translate)
    return (rects, kwargs, "shapes")


def shapes_to_boxes(shapes_layer, target_layer) -> list[Box]:
    """The rectangles of a Shapes layer as boxes in ``target_layer``'s data coordinates (through world
    coordinates, so differing scale/translate line up); a 3D rectangle is a box one slice thick."""
    out = []
    nd = target_layer.ndim
    feats = getattr(shapes_layer, "features", None)
    labels = list(feats["label"]) if feats is not None and "label" in feats else []
    kinds = list(feats["kind"]) if feats is not None and "kind" in feats else []
    for i, verts in enumerate(shapes_layer.data):
        v = np.asarray(verts, dtype=float)
        if v.shape[1] != nd:
            continue
        world = np.array([shapes_layer.data_to_world(p) for p in v])
        pts = np.array([target_layer.world_to_data(p) for p in world])
        lo, hi = pts.min(0), pts.max(0)
        lo[-2:] += 0.5
        hi[-2:] -= 0.5
        hi = np.maximum(hi, lo)
        label = str(labels[i]) if i < len(labels) and str(labels[i]) not in ("", "nan") else "reference"
        props = {"kind": str(kinds[i])} if i < len(kinds) and str(kinds[i]) not in ("", "nan") else {}
        out.append(Box(tuple(lo), tuple(hi), label=label, properties=props))
    return out


def layer_to_scan(layer) -> Scan:
    """The :class:`Scan` behind an image layer (geometry from the layer; modality from our metadata).

    Refuses what synthesis and prediction cannot use: RGB, multiscale, non-numeric, 4D+ data."""
    meta = (layer.metadata or {}).get(SCAN_KEY, {})
    if getattr(layer, "rgb", False):
        raise InputError(f"layer {layer.name!r} is an RGB image; choose a greyscale scan layer")
    if getattr(layer, "multiscale", False):
        raise InputError(f"layer {layer.name!r} is multiscale; not supported")
    data = np.asarray(layer.data)
    if data.dtype.kind not in "uifb" or data.ndim not in (2, 3):
        raise InputError(
            f"layer {layer.name!r} has data of shape {data.shape} and type {data.dtype}; "
            "a 2D image or a 3D volume is needed"
        )
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        raise InputError(f"layer {layer.name!r} contains NaN or Inf values")
    nd = data.ndim
    scale = tuple(float(s) for s in layer.scale[-nd:])
    translate = tuple(float(t) for t in layer.translate[-nd:])
    direction = np.asarray(meta.get("direction", np.eye(nd)))
    if direction.shape != (nd, nd):
        direction = np.eye(nd)
    md = dict(meta.get("metadata", {}))
    if meta.get("slice_positions") is not None:
        md["slice_positions"] = meta["slice_positions"]
    return Scan(
        data.astype(np.float32, copy=False),
        scale,
        translate,
        direction,
        meta.get("modality", "OT"),
        Path(meta["path"]) if meta.get("path") else None,
        md,
    )


def write_image_data(layer, data, buffers: dict[str, np.ndarray]) -> None:
    """Show ``data`` in ``layer``, fast when it can be done in place.

    When the layer already displays a float32 buffer of the same shape that we made (``buffers[name]``),
    ``data`` is copied into it and the layer re-sliced with ``refresh(extent=False)``: no data event, so
    the viewer skips its dims/extent pass over every layer (about 10 % of a preview update, measured).
    Otherwise the layer gets a fresh float32 copy (the caller's array is never aliased or modified)."""
    buf = buffers.get(layer.name)
    if buf is not None and layer.data is buf and buf.shape == np.shape(data):
        np.copyto(buf, data, casting="unsafe")
        layer.refresh(extent=False, highlight=False)
        return
    buf = np.array(data, dtype=np.float32)
    layer.data = buf
    buffers[layer.name] = buf


def set_image_layer(viewer, name: str, data, geo: dict[str, Any], **kwargs):
    """Update the image layer ``name`` in place (data, then geometry only when it changed), or add it
    when absent or of another dimensionality.  ``kwargs`` apply when the layer is created."""
    if name in viewer.layers and viewer.layers[name].ndim == np.ndim(data):
        layer = viewer.layers[name]
        if tuple(layer.scale) != tuple(geo["scale"]) or tuple(layer.translate) != tuple(geo["translate"]):
            layer.scale, layer.translate = geo["scale"], geo["translate"]
        layer.data = data
        return layer
    if name in viewer.layers:
        viewer.layers.remove(name)
    meta = dict(kwargs.pop("metadata", {}) or {})
    meta.setdefault(OUTPUT_KEY, True)  # a dock's output: not a scan to train on or predict
    return viewer.add_image(data, name=name, metadata=meta, **geo, **kwargs)


def set_boxes_layer(
    viewer,
    name: str,
    boxes: Sequence[Box],
    ndim: int,
    geo: dict[str, Any],
    *,
    edge_color: str = "#00bfff",
    quiet: bool = False,
):
    """Show ``boxes`` as the rectangles of the Shapes layer ``name``: refilled in place when it exists with
    the same dimensionality, else (re)made.  ``quiet`` refills without data events (the viewer's
    extent is not recomputed over every layer: the boxes lie inside the scan).  Returns ``(layer, made)``."""
    data, kw, _ = boxes_shapes_data(boxes, ndim, name=name, edge_color=edge_color, **geo)
    layer = viewer.layers[name] if name in viewer.layers else None
    if layer is not None and layer.ndim == kw["ndim"]:
        if quiet:
            with layer.events.data.blocker(), layer.events.blocker_all():
                layer.data = []
        else:
            layer.data = []
        if data:
            layer.add_rectangles(data, edge_color=edge_color, face_color="transparent", edge_width=2)
        elif quiet:
            layer.refresh()
        return layer, False
    if layer is not None:
        viewer.layers.remove(layer)
    return viewer.add_shapes(data, **{k: v for k, v in kw.items() if k != "features"}), True
