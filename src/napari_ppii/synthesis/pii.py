# SPDX-License-Identifier: BSD-3-Clause
"""Poisson Image Interpolation (PII; Tan et al., MICCAI 2021), the baseline of the paper.

One square patch per image (half-width ``U[0.05, 0.2]`` of the height, i.e. side ``U[0.1, 0.4]``),
centre in the central 80%, at the *same* location in source and target (when the source is the image
itself -- a single image, or ``pairwise=False`` -- the source patch comes from another location instead,
since the same location would change nothing); interpolation factor
``alpha ~ U[alpha]``; guidance = Eq. 1 of the paper over the patch box, solved by the DST Poisson solve.
Label: ``alpha`` where the blended image differs from the target by more than ``label_tolerance``,
zero on the image border.  No raters: the variance is zero.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, model_validator

from .settings import ChangeLabel, check_range
from . import poisson
from .backend import ops
from .base import Synthesizer
from .plan import AnomalySpec, boxes_overlap, sample_size, sample_start
from .render import poisson_blend, render_blends, zero_border


class PIIParams(ChangeLabel):
    """PII's own parameters: the interpolation factor's range, and the label's change tolerance."""

    # square patches; the paper's half-width U[0.05 H, 0.2 H] (side 0.1-0.4) does not fit in a lung field, so
    # inside the lungs the side is 0.04-0.2 (the paper's: ``paper`` / configs/paper_pii.yaml)
    shared_defaults: ClassVar[dict[str, Any]] = {"patch_size": (0.04, 0.2), "square": True}
    paper: ClassVar[dict[str, Any]] = {
        "patch_size": (0.1, 0.4),
        "placement": "anywhere",
        "patch_distribution": "uniform",
        "source_rescale": (1.0, 1.0),
        "clip": "hard",
    }

    alpha: tuple[float, float] = Field((0.05, 0.95), description="interpolation factor range, in [0, 1]")

    @model_validator(mode="after")
    def _ranges(self):
        check_range("alpha", self.alpha, 0.0, 1.0)
        return self


def alpha_labels(images, mean, plan, n_out, tolerance):
    """``alpha`` inside each anomaly's box where the image changed by more than ``tolerance``."""
    label = ops(mean).zeros_like(mean)
    for s in plan:
        sl = s.target_slices
        changed = abs(mean[s.target_index][sl] - images[s.target_index][sl]) > tolerance
        label[s.target_index][sl] = changed * s.alpha
    return zero_border(label, images.ndim - 1)


class InterpolatedPatch(Synthesizer):
    """The plan PII and FPI share: one square patch per image with an interpolation factor ``alpha``, at the
    same location in source and target (another location when the source is the image itself).
    Subclasses give ``blend`` (how source and target mix); the label is ``alpha`` where the image changed."""

    params_model = PIIParams  # one patch per image: no n_anomalies
    #: hold the blend in the target's range (``clip``); FPI's convex combination cannot leave it
    limit_range = True

    def plan_image(self, index, spatial, n_images, rng, masks=None):
        cfg = self.config
        src = self._source_index(index, n_images, rng)
        size = sample_size(spatial, cfg, rng)
        start = self._target_start(spatial, size, rng, None if masks is None else masks[index])
        if start is None:
            return []  # the mask has no room for a patch this size
        s_start = start
        if src == index:
            for _try in range(cfg.max_tries):
                s_start = sample_start(spatial, size, cfg, rng)
                if not boxes_overlap(s_start, start, size, size):
                    break
        alpha = float(rng.uniform(cfg.alpha[0], cfg.alpha[1]))
        return [AnomalySpec(index, src, start, s_start, size, 1.0, alpha, [], [])]

    @staticmethod
    def blend(tgt, src, specs):
        raise NotImplementedError

    def render(self, images, plan, n_out, masks=None):
        mean, var = render_blends(images, plan, n_out, self.config, masks, self.blend, limit=self.limit_range)
        return mean, alpha_labels(images, mean, plan, n_out, self.config.label_tolerance), var


def alpha_factors(specs, like):
    """The group's interpolation factors, shaped to broadcast over its ``(G, *size)`` patches."""
    return ops(like).const([s.alpha for s in specs], like).reshape((len(specs),) + (1,) * (like.ndim - 1))


class PII(InterpolatedPatch):
    """Eq. 1 of the paper: the guidance interpolates target and source gradients by ``alpha``."""

    method = "pii"

    @staticmethod
    def blend(tgt, src, specs):
        nd = tgt.ndim - 1
        gt, gs = poisson.forward_gradients(tgt, nd), poisson.forward_gradients(src, nd)
        return poisson_blend(tgt, poisson.interpolated_guidance(gt, gs, alpha_factors(specs, tgt)))
