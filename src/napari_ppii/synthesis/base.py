# SPDX-License-Identifier: BSD-3-Clause
"""The shared interface of the synthesis methods: :class:`Synthesizer` (plan, then render) and its
:class:`SynthesisResult`.

A method first draws a *plan* from a seeded ``numpy.random.Generator`` (:mod:`.plan`) -- every random
choice of one image's anomalies as plain numbers -- then *renders* it (:mod:`.render`).  The same plan
renders to the same result with NumPy (CPU, float64 solve) or with torch on any device (float32/float64)
through one set of array operations (:mod:`.backend`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel

from .settings import NoParams, SynthesisConfig, method_specific_fields
from ..errors import InputError
from ..io.boxes import Box
from .backend import as_output, as_work_array, is_torch, ops, to_numpy
from .plan import AnomalySpec, _mask_index, boxes_overlap, sample_start, validate_images


@dataclass
class SynthesisResult:
    """One synthetic sample.

    image: the training image (P-PII: the mean over the rater blends).
    label: P-PII ``clip(label_scale * |target - image|, 0, 1)``; PII/FPI ``alpha`` where changed.
    variance: per-pixel variance over the raters (population variance; zero for one rater, PII, FPI).
    mask: the placement mask (lungs / given), None when anomalies may go anywhere.
    boxes: the anomalies' target boxes (inclusive :class:`Box`).
    plan: the anomalies as drawn (enough to re-render exactly).
    """

    image: Any
    label: Any
    variance: Any
    boxes: list[Box]
    plan: list[AnomalySpec]
    method: str
    mask: Any = None  # the placement mask used (NumPy bool), or None for placement "anywhere"

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "boxes": [b.to_dict() for b in self.boxes],
            "anomalies": [a.to_dict() for a in self.plan],
        }


def placement_masks(config: SynthesisConfig, images, masks=None) -> np.ndarray | None:
    """The one rule for placement masks (``(N, *spatial)`` bool NumPy, or None for ``anywhere``), for a
    batch, the preview and the trainer alike: ``lungs`` without given masks computes them (radiographs:
    :func:`napari_ppii.anatomy.lung_mask_cxr`); ``mask`` needs them.  A mask's shape must match its image."""
    if config.placement == "anywhere":
        return None
    shape = tuple(images.shape)
    if masks is None:
        if config.placement == "mask":
            raise InputError("placement 'mask' needs a placement mask (data.mask, or a Labels layer in the viewer)")
        if len(shape) != 3:
            raise InputError(
                "placement 'lungs' on volumes needs lung masks computed from the HU scan: "
                "pass masks=napari_ppii.anatomy.lung_mask(scan)"
            )
        from ..anatomy import lung_mask_cxr

        return np.stack([lung_mask_cxr(a) for a in to_numpy(images)])
    m = to_numpy(masks)
    if m.shape == shape[1:] and shape[0] == 1:
        m = m[None]
    if m.shape != shape:
        raise InputError(f"placement mask of shape {m.shape} does not match the images {shape}")
    return m > 0


class Synthesizer:
    """Base class of FPI, PII and P-PII.

    ``plan_image`` draws one image's anomalies; ``render`` turns a batch plan into results.  Call
    :meth:`sample` for one image (optionally with a source image) or :meth:`batch` for a batch; both
    accept NumPy arrays (results as NumPy float32) or torch tensors (results as tensors on their device).
    """

    method = "base"

    def __init__(self, config: SynthesisConfig | None = None):
        cfg = config or SynthesisConfig(method=self.method)
        if cfg.method != self.method:  # another method's configuration: its shared fields, this method's own
            cfg = SynthesisConfig.model_validate(cfg.model_dump() | {"method": self.method, "params": cfg.params})
        self.config = cfg.resolved()

    #: the method's own parameters (a pydantic model: fields, defaults, validation, ``paper`` values); the
    #: configuration holds the chosen method's in ``params``
    params_model: type[BaseModel] = NoParams

    @classmethod
    def applies(cls, field: str, config) -> bool:
        """Does ``field`` change what this method draws under ``config``?  Another method's own parameter
        does not; a method refines this for parameters that matter only in some modes."""
        return field not in method_specific_fields() or field in cls.params_model.model_fields

    # -- to implement ---------------------------------------------------------------------------
    def plan_image(
        self,
        index: int,
        spatial: tuple[int, ...],
        n_images: int,
        rng: np.random.Generator,
        masks: np.ndarray | None = None,
    ) -> list[AnomalySpec]:
        """One image's anomalies; ``masks`` (``(N, *spatial)`` bool, or None) constrain placement."""
        raise NotImplementedError

    def render(self, images, plan: list[AnomalySpec], n_out: int, masks=None):
        """Return ``(image, label, variance)`` batches for targets ``[0, n_out)``."""
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------------------
    def placement_masks(self, images, masks=None) -> np.ndarray | None:
        """The placement masks for a batch: :func:`placement_masks` under this method's configuration."""
        return placement_masks(self.config, images, masks)

    def plan(self, images, rng: np.random.Generator, n_out: int | None = None, masks=None) -> list[AnomalySpec]:
        spatial = validate_images(images, self.config)
        n_out = images.shape[0] if n_out is None else n_out
        return self._plan_images(spatial, images.shape[0], n_out, rng, self.placement_masks(images, masks))

    def _plan_images(self, spatial, n_images: int, n_out: int, rng: np.random.Generator, pm) -> list[AnomalySpec]:
        plan: list[AnomalySpec] = []
        for i in range(n_out):
            plan.extend(self.plan_image(i, spatial, n_images, rng, pm))
        return plan

    def _source_index(self, index: int, n_images: int, rng: np.random.Generator) -> int:
        """Pairwise: another image of the batch drawn at random (itself when it is alone)."""
        if not self.config.pairwise or n_images < 2:
            return index
        j = int(rng.integers(0, n_images - 1))
        return j if j < index else j + 1

    def _target_start(self, spatial, size, rng, mask) -> tuple[int, ...] | None:
        """A target box start (inside the mask when there is one), or None after ``max_tries``.  An empty
        mask (no lung found: not a chest image) places anywhere, as ``placement=anywhere``."""
        if mask is None or _mask_index(mask).size == 0:
            return sample_start(spatial, size, self.config, rng)
        share = self.config.placement_margin_share
        margin = share > 0 and float(rng.random()) < share  # no draw at share 0: earlier plans replay alike
        for _try in range(self.config.max_tries):
            st = sample_start(spatial, size, self.config, rng, mask, margin=margin)
            if st is not None:
                return st
        return None

    def _place_target(self, spatial, size, rng, mask, specs) -> tuple[int, ...] | None:
        """A target box start on the mask that overlaps none of ``specs``' boxes, or None after ``max_tries``."""
        for _try in range(self.config.max_tries):
            start = self._target_start(spatial, size, rng, mask)
            if start is not None and not any(boxes_overlap(start, s.target_start, size, s.size) for s in specs):
                return start
        return None

    def _place_source(self, spatial, s_size, rng, mask, src, index, placed, size) -> tuple[int, ...]:
        """A source box start (on ``mask`` when given); from the target image itself it avoids the target box."""
        s_start = None
        for _try in range(self.config.max_tries):
            s_start = self._target_start(spatial, s_size, rng, mask) or sample_start(spatial, s_size, self.config, rng)
            if src != index or not boxes_overlap(s_start, placed, s_size, size):
                break  # from the same image the source patch must come from elsewhere
        return s_start

    def batch(
        self,
        images,
        rng: np.random.Generator | int | None = None,
        *,
        n_out: int | None = None,
        plan: list[AnomalySpec] | None = None,
        masks=None,
    ) -> list[SynthesisResult]:
        """Synthesise anomalies into each of the first ``n_out`` images of ``images`` (``(N, *spatial)``);
        images after ``n_out`` serve as sources only.  ``masks`` (same shape, or None): placement masks
        for ``placement`` lungs/mask (computed for ``lungs`` when not given)."""
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        work = as_work_array(images)
        n_out = work.shape[0] if n_out is None else n_out
        spatial = validate_images(work, self.config)
        pm = self.placement_masks(work, masks)
        if plan is None:
            plan = self._plan_images(spatial, work.shape[0], n_out, rng, pm)
        # NumPy: the boolean masks as they are (a float copy of a CT volume's mask is not made); torch:
        # on the images' device
        rm = None if pm is None else (ops(work).const(pm[:n_out], work) if is_torch(work) else pm[:n_out])
        img, lab, var = self.render(work, plan, n_out, rm)
        results = []
        for i in range(n_out):
            mine = [s for s in plan if s.target_index == i]
            results.append(
                SynthesisResult(
                    as_output(img[i]),
                    as_output(lab[i]),
                    as_output(var[i]),
                    [s.box() for s in mine],
                    mine,
                    self.method,
                    None if pm is None else pm[i],
                )
            )
        return results

    def sample(
        self,
        target,
        source=None,
        rng: np.random.Generator | int | None = None,
        plan: list[AnomalySpec] | None = None,
        mask=None,
        source_mask=None,
    ) -> SynthesisResult:
        """One synthetic sample of ``target`` (2D or 3D), with the source patch from ``source`` when
        given (pairwise) or from ``target`` itself.  ``mask``: the target's placement mask (and
        ``source_mask`` the source's, for ``source_in_mask``)."""
        if source is not None and tuple(source.shape) != tuple(target.shape):
            raise InputError(f"source shape {tuple(source.shape)} differs from target shape {tuple(target.shape)}")
        stack = [target] if source is None else [target, source]
        images = ops(target).stack(stack)
        masks = None
        if mask is not None:
            m = to_numpy(mask)
            if m.shape != tuple(target.shape):
                raise InputError(f"placement mask of shape {m.shape} does not match the image {tuple(target.shape)}")
            ms = [m > 0]
            if source is not None:
                sm = np.ones_like(ms[0]) if source_mask is None else np.asarray(source_mask) > 0
                if sm.shape != ms[0].shape:
                    raise InputError(f"source mask of shape {sm.shape} does not match the source {tuple(source.shape)}")
                ms.append(sm)
            masks = np.stack(ms)
        elif source is not None and self.config.placement == "lungs":
            masks = self.placement_masks(images)
        return self.batch(images, rng, n_out=1, plan=plan, masks=masks)[0]
