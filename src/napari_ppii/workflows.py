# SPDX-License-Identifier: BSD-3-Clause
"""The workflows that the command line and the docks share, Qt-free.

``cli.py`` parses arguments and prints; the docks deal with layers, controls and workers; both call
these functions for what a user asks of the core:

* :func:`placement_mask` -- where synthetic anomalies may go on one scan (configuration, a given mask
  such as a file or a Labels layer's data, or the computed lung fields);
* :func:`synthesize_scan` -- one synthetic-anomaly sample of a pre-processed scan with its masks;
* :func:`open_test_set` -- test scans and their lesion boxes (an annotations CSV, or a CT + boxes);
* :func:`atlas_floor` -- the training-atlas floor of a checkpoint, or why it is left out;
* :func:`export_sample` -- a synthetic sample written with everything needed to reproduce it;
* :func:`~napari_ppii.evaluation.summary.fmt_ci` and :func:`~napari_ppii.io.scan_files` (re-exported:
  a figure with its CI, the scan files of a folder).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import __version__
from .config import PPIIConfig
from .errors import InputError
from .evaluation.summary import fmt_ci
from .io import write_array, write_boxes_csv
from .io.readers import scan_files

__all__ = [
    "SynthesisOutcome",
    "atlas_floor",
    "fmt_ci",
    "open_test_set",
    "placement_mask",
    "scan_files",
    "synthesize_scan",
]


def placement_mask(
    placement: str,
    raw,
    shape: Sequence[int] | None = None,
    *,
    given=None,
    slice_index: int | None = None,
    lungs: Callable[[], np.ndarray] | None = None,
    missing: str = "synthesis.placement=mask needs a placement mask",
) -> np.ndarray | None:
    """The placement mask of one target scan as ``placement`` (``synthesis.placement``) says.

    ``raw`` is the scan as read (a :class:`~napari_ppii.io.Scan` or its array; CT in HU), the grid any
    ``given`` mask is in (a mask file's pixels, a Labels layer's data).  ``anywhere``: None.  ``mask``:
    ``given > 0`` (``missing`` is the error without one).  ``lungs``: ``given`` where there is one (a
    painted mask overrides the computed lungs), else the lung fields computed from ``raw`` (``lungs()``
    when the caller caches them).  With ``slice_index`` a volume's mask is cut to that slice; then it is
    resized to ``shape`` (the pre-processed grid) when that differs.  Returns a bool array."""
    if placement == "anywhere":
        return None
    raw_shape = tuple(np.shape(getattr(raw, "array", raw)))
    if given is not None:
        m = np.asarray(given)
        if m.shape != raw_shape:
            raise InputError(f"the placement mask {m.shape} does not match the scan {raw_shape}")
        if m.dtype.kind == "f" and not np.isfinite(m).all():
            raise InputError("the placement mask contains NaN or Inf values")
    elif placement == "lungs":
        if lungs is not None:
            m = lungs()
        else:
            from .anatomy import lung_mask

            m = lung_mask(raw)
    elif placement == "mask":
        raise InputError(missing)
    else:
        raise InputError(f"unknown placement {placement!r} (anywhere, lungs or mask)")
    if slice_index is not None and m.ndim == 3:
        m = m[int(np.clip(slice_index, 0, m.shape[0] - 1))]
    m = np.asarray(m) > 0
    if shape is not None and m.shape != tuple(shape):
        if m.ndim != len(shape):
            raise InputError(f"the placement mask {m.shape} does not match the target {tuple(shape)}")
        from .preprocess import resize

        m = resize(m.astype(np.float32), shape) >= 0.5
    return m


@dataclass
class SynthesisOutcome:
    """One synthetic sample: the result (image, label, variance, boxes), the synthesiser that drew it
    (its resolved configuration) and the placement mask it used."""

    result: Any  # SynthesisResult
    synthesizer: Any
    mask: np.ndarray | None


def synthesize_scan(
    image: np.ndarray,
    cfg: PPIIConfig,
    *,
    source: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    plan=None,
    rng: np.random.Generator | None = None,
) -> SynthesisOutcome:
    """One sample of ``cfg.synthesis`` on a pre-processed ``image`` (2D, or a volume): ``source`` (the
    same ndim; resized to the image when it differs) gives the patches, else the image itself; ``plan``
    (a list of :class:`~napari_ppii.synthesis.AnomalySpec`) replays a recorded sample exactly; ``rng``
    defaults to ``cfg.seed``."""
    from .synthesis import make_synthesizer
    from .synthesis.plan import validate_images

    image = np.asarray(image)
    validate_images(image[None], cfg.synthesis)  # size and values first: clearer than a mask error
    if source is not None:
        source = np.asarray(source)
        if source.ndim != image.ndim:
            raise InputError(f"source is {source.ndim}D but the target is {image.ndim}D")
        if source.shape != image.shape:
            from .preprocess import resize

            source = resize(source, image.shape)
    if mask is not None and np.shape(mask) != image.shape:
        raise InputError(f"the placement mask {np.shape(mask)} does not match the target {image.shape}")
    synth = make_synthesizer(cfg.synthesis)
    rng = np.random.default_rng(cfg.seed) if rng is None else rng
    result = synth.sample(image, source, rng=rng, plan=plan, mask=mask)
    return SynthesisOutcome(result, synth, mask)


def open_test_set(
    data: str | Path,
    boxes: str | Path | None = None,
    *,
    labels: Sequence[str] | str | None = None,
    split: str = "test",
    limit: int | None = None,
) -> list:
    """Test items (scan paths and lesion boxes): an annotations CSV's ``split`` rows (``labels``: only
    those box labels count as lesions; a comma-separated string is split), or a CT series / volume with
    its ``boxes`` (LIDC XML or box CSV)."""
    from .evaluation import load_csv_test_set, load_volume_test_set

    if not str(data or "").strip():
        raise InputError("choose test data (an annotations CSV or a CT series)")
    if isinstance(labels, str):
        labels = [s.strip() for s in labels.split(",") if s.strip()]
    data = Path(data)
    if data.suffix.lower() == ".csv":
        return load_csv_test_set(data, labels=labels or None, split=split, limit=limit)
    return load_volume_test_set(data, boxes or None)


def atlas_floor(
    cfg: PPIIConfig,
    train_data: str | Path | None = None,
    *,
    checkpoint: str | Path | None = None,
    recorded: str | None = None,
) -> tuple[Any, str | None]:
    """``(atlas, None)``: the mean of the checkpoint's normal training images (the training-atlas floor),
    or ``(None, reason)`` when it is left out.  ``train_data`` overrides the configuration's
    ``data.train``; otherwise the absolute path the checkpoint ``recorded`` (``inputs.train_data``) is
    tried first, then the configured path as given and beside the checkpoint's run folder."""
    given = train_data or cfg.data.train
    if not given:
        return None, "the checkpoint records no training data (data.train)"
    path = Path(given)
    tried = ([Path(recorded)] if recorded and not train_data else []) + [path]
    if not path.is_absolute() and checkpoint is not None:
        run = Path(checkpoint).resolve().parent
        tried += [run / path, run.parent / path, run.parent.parent / path]
    found = next((p for p in tried if p.exists()), None)
    if found is None:
        return None, (
            f"its training data {given} was not found (looked in {', '.join(str(p) for p in tried)}); "
            "give it with --train-data"
        )
    from .evaluation.floors import training_atlas
    from .training.data import load_normal_images

    try:
        return training_atlas(load_normal_images(cfg.with_values({"data.train": str(found)}))), None
    except InputError as exc:
        return None, f"its training data {found} could not be read ({exc})"


def export_sample(
    out: str | Path,
    target,
    result,
    cfg: PPIIConfig,
    *,
    fmt: str | None = None,
    resolved: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Write ``result`` (a :class:`~napari_ppii.synthesis.SynthesisResult`, synthesised on the pre-processed
    :class:`~napari_ppii.io.Scan` ``target``) to ``out``: image, label, variance, the target, boxes and a
    ``params.json`` of everything needed to reproduce it (``ppii synthesize``, the preview's Export).
    Returns the record."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fmt = fmt or ("nifti" if target.ndim == 3 else "tiff")
    written = {}
    for name, arr in (
        ("target", target.array),
        ("image", result.image),
        ("label", result.label),
        ("variance", result.variance),
    ):
        written[name] = write_array(arr, out / name, like=target, fmt=fmt).name
    write_boxes_csv(result.boxes, out / "boxes.csv")
    record = {
        "ppii_version": __version__,
        **extra,
        "format": fmt,
        "seed": cfg.seed,
        "config": cfg.to_dict(),
        "resolved_synthesis": resolved,
        "shape": list(target.shape),
        "spacing": list(target.spacing),
        "origin": list(target.origin),
        "files": written,
        **result.to_json(),
    }
    (out / "params.json").write_text(json.dumps(record, indent=2))
    return record
