# SPDX-License-Identifier: BSD-3-Clause
"""The synthesis preview's computation, Qt-free: a request (target, source, configuration, slice, mask,
reference lesions) -> the synthetic sample and its realism figures.

:class:`PreviewEngine` keeps what is costly to recompute -- a layer's :class:`~napari_ppii.io.Scan`
(its finite check), the pre-processed scan, the computed lung mask -- keyed on a *token* the caller
gives for each version of its data (the viewer: one token per layer and data version, bumped on the
layer's data event).  :meth:`PreviewEngine.forget` drops a token's entries.  One slice of a volume is
previewed from the cached pre-processed volume: no change copies the volume.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .config import PPIIConfig, PreprocessConfig
from .errors import InputError


@dataclass
class PreviewRequest:
    generation: int
    target: Any  # Scan
    source: Any  # Scan or None
    config: PPIIConfig
    slice_index: int | None  # volume: preview this slice; None: the whole image / volume
    cache_key: tuple  # (target token, source token or None): tokens name a version of a layer's data
    mask: Any = None  # placement mask in the target layer's grid (the Labels layer), or None
    reference_boxes: Any = None  # real lesion boxes (target data coordinates) to compare realism with


@dataclass
class PreviewResult:
    generation: int
    target: Any  # pre-processed Scan the sample was drawn on (2D slice or the volume)
    result: Any  # SynthesisResult
    config: PPIIConfig
    slice_index: int | None
    seconds: float
    mask: Any = None  # the placement mask of the whole target (computed lungs, or the one given)
    realism: Any = None  # {"synthetic": summary, "reference": summary or None}


class PreviewEngine:
    """Preview computations with caches keyed on data tokens (at most ``max_items`` each)."""

    def __init__(self, max_items: int = 8):
        self.max_items = max_items
        self._cache: dict[tuple, Any] = {}

    def cached(self, kind: str, token, key, make: Callable[[], Any]):
        k = (kind, token, key)
        if k not in self._cache:
            if sum(1 for c in self._cache if c[0] == kind) >= self.max_items:
                for c in [c for c in self._cache if c[0] == kind]:
                    del self._cache[c]
            self._cache[k] = make()
        return self._cache[k]

    def forget(self, token) -> None:
        """Drop everything computed from ``token``'s data (its layer's data changed or it was removed)."""
        for c in [c for c in self._cache if c[1] == token]:
            del self._cache[c]

    def prepared(self, scan, pre: PreprocessConfig, token):
        from .preprocess import prepare

        return self.cached(
            "prepared", token, pre.model_dump_json(), lambda: prepare(scan, pre.model_copy(update={"size": None}))
        )

    def lungs(self, scan, token) -> np.ndarray:
        """The lung mask of a scan (radiograph, or CT in HU)."""
        from .anatomy import lung_mask

        return self.cached("lungs", token, None, lambda: lung_mask(scan))

    def compute(self, req: PreviewRequest) -> PreviewResult:
        return compute_preview(req, self)


def compute_preview(req: PreviewRequest, engine: PreviewEngine | None = None) -> PreviewResult:
    """Pre-process (cached by ``engine``), take the slice, synthesise.  Raises InputError on bad input."""
    from .workflows import placement_mask, synthesize_scan

    engine = engine or PreviewEngine()
    t0 = time.perf_counter()
    cfg = req.config
    t_tok, s_tok = req.cache_key
    target = engine.prepared(req.target, cfg.preprocess, t_tok)
    source = None if req.source is None else engine.prepared(req.source, cfg.preprocess, s_tok)
    if source is not None and source.ndim != target.ndim:
        raise InputError(f"source is {source.ndim}D but the target is {target.ndim}D")
    if req.slice_index is not None and target.ndim == 3:
        z = int(np.clip(req.slice_index, 0, target.shape[0] - 1))
        t_img = target.array[z]
        s_img = None if source is None else source.array[min(z, source.shape[0] - 1)]
        from .io.scan import Scan

        target = Scan(t_img, target.spacing[1:], target.origin[1:], np.eye(2), target.modality, target.path)
    else:
        t_img = target.array
        s_img = None if source is None else source.array
    place = cfg.synthesis.placement
    # the whole target's mask is kept for display (the Labels layer's data as it is, or the cached lungs);
    # only the previewed slice is thresholded
    full_mask = (
        None
        if place == "anywhere"
        else (req.mask if req.mask is not None else engine.lungs(req.target, t_tok) if place == "lungs" else None)
    )
    mask = placement_mask(
        place,
        req.target,
        t_img.shape,
        given=full_mask,
        slice_index=req.slice_index,
        missing="placement 'mask' needs a placement mask: paint the 'P-PII placement mask' Labels "
        "layer (or choose placement lungs / anywhere)",
    )
    result = synthesize_scan(t_img, cfg, source=s_img, mask=mask).result
    realism = None
    if t_img.ndim == 2:
        realism = _realism(t_img, result, mask, req)
    return PreviewResult(
        req.generation, target, result, cfg, req.slice_index, time.perf_counter() - t0, full_mask, realism
    )


def _realism(img, result, mask, req) -> dict:
    """Realism statistics of the sample's anomalies and, with reference boxes, of the real lesions."""
    from .realism import box_stats, result_stats, summarise

    out = {"synthetic": summarise(result_stats(result, mask)), "reference": None}
    boxes = req.reference_boxes
    if boxes:
        if req.slice_index is not None:
            boxes = [b.to_2d() for b in boxes if b.ndim == 3 and b.lo[0] <= req.slice_index <= b.hi[0]] + [
                b for b in boxes if b.ndim == 2
            ]
        out["reference"] = summarise(box_stats(img, boxes, mask))
    return out


def realism_text(realism: dict | None) -> str:
    """One line: median contrast, gradient energy ratio, diameter and fraction in the lungs."""
    if not realism:
        return ""

    def part(summ):
        if not summ or not summ.get("n"):
            return "none"
        inl = summ.get("in_lungs")
        lung = "" if inl is None or not np.isfinite(inl) else f", {100 * inl:.0f}% in lungs"
        return (
            f"contrast {summ['abs_contrast']['median']:.3f}, gradient x{summ['gradient_ratio']['median']:.2f}, "
            f"size {summ['diameter_frac']['median']:.3f}{lung} (n={summ['n']})"
        )

    text = f"Synthetic: {part(realism['synthetic'])}"
    if realism.get("reference") is not None:
        text += f"\nReference lesions: {part(realism['reference'])}"
    return text
