# SPDX-License-Identifier: BSD-3-Clause
"""Probabilistic Poisson Image Interpolation (P-PII), the paper's section 2.

Per image: ``n ~ U{n_anomalies}`` anomalies and ``K ~ U{n_raters}`` raters.  Each anomaly takes a patch
(side ``U[patch_size]`` of the extent per axis) from a source -- another image of the batch (pairwise)
or the image itself -- at one location and blends it into the target at another location, with the
source gradients up-scaled by ``s ~ U[gradient_scale)`` (mixed with the target gradients by default).
Inside each patch K circular rater masks (radius and centre from normal distributions, bounded to the
patch) give K versions of the anomaly, each blended from the original target by a DST Poisson solve over
the patch box.  Anatomy-aware placement (``placement`` lungs/mask) draws target boxes on the mask;
realism controls (log-uniform gradient scales, a smoothed source, soft clipping, the logistic label,
NSA-style gamma patch sizes and source rescaling) are documented in
:class:`~napari_ppii.config.SynthesisConfig`.  Target boxes never overlap, so every blend is
independent and the batch renders in a few batched solves.  Outputs: the mean over raters (training image), the label
``clip(label_scale * |target - mean|, 0, 1)`` and the variance over raters (uncertainty map).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from .settings import LogisticLabel, check_range

from . import poisson
from .backend import ops, smooth
from .base import Synthesizer
from .plan import AnomalySpec, sample_gradient_scale, sample_raters, sample_size, sample_source_size
from .render import disc_masks, render_blends


class PPIIParams(LogisticLabel):
    """P-PII's own parameters (calibrated defaults; the paper's / public sketch's values in ``paper``)."""

    shared_defaults: ClassVar[dict[str, Any]] = {"patch_size": (0.04, 0.16), "square": False}
    # the paper (section 2) with the public sketch's values where the paper gives none
    paper: ClassVar[dict[str, Any]] = {
        "patch_size": (0.05, 0.2),
        "n_anomalies": (1, 10),
        "gradient_scale": (10.0, 20.0),
        "gradient_scale_distribution": "uniform",
        "rater_radius": 0.25,
        "source_smoothing": 0.0,
        "clip": "hard",
        "label_mode": "scaled",
        "label_scale": 10.0,
        "placement": "anywhere",
        "patch_distribution": "uniform",
        "source_rescale": (1.0, 1.0),
    }

    n_anomalies: tuple[int, int] = Field(
        (1, 5),
        description="anomalies per image, 1-50 (paper: one to ten; "
        "calibrated: 1-5, as many as fit in the lungs without crowding)",
    )
    n_raters: tuple[int, int] = Field((1, 9), description="rater masks per image, 1-32 (public sketch: 1-9)")
    gradient_scale: tuple[float, float] = Field(
        (1.0, 8.0),
        description="up-scaling of the source gradients in [low, high), 0-100 (public sketch: "
        "10-20, which gives contrasts ~3x and gradient energies ~10x a real nodule's; calibrated on the NIH boxes: "
        "1-8 log-uniform with a smoothed source)",
    )
    gradient_scale_distribution: Literal["uniform", "log_uniform"] = Field(
        "log_uniform",
        description="gradient scale drawn uniform or log-uniform in gradient_scale "
        "(log-uniform gives as many subtle as strong anomalies)",
    )
    rater_radius: float = Field(
        0.3,
        gt=0,
        le=0.5,
        description="mean rater radius, fraction of the patch's shortest side (public sketch: 0.25)",
    )
    rater_radius_std: float = Field(1.0, ge=0, le=20, description="std of the rater radius in pixels")
    rater_centre_std: float = Field(
        1 / 12, ge=0, le=0.5, description="std of the rater centre, fraction of the patch side"
    )
    mixed_gradients: bool = Field(
        True,
        description="keep the larger of (scaled) source and target gradient",
    )
    source_smoothing: float = Field(
        2.0,
        ge=0,
        le=20,
        description="Gaussian sigma (pixels) applied to the source patch before its "
        "gradients are up-scaled: removes the up-scaled texture/noise, leaving a soft, lesion-like profile",
    )
    label_mode: Literal["scaled", "logistic"] = Field(
        "logistic",
        description="label = clip(label_scale * |change|, 0, 1) (the public sketch), or NSA's "
        "logistic of the change, 0 at no change: (s(k (|d| - x0)) - s(-k x0)) / (1 - s(-k x0))",
    )
    label_scale: float = Field(
        10.0,
        gt=0,
        le=100,
        description="label_mode scaled: label = clip(label_scale * "
        "|target - mean|, 0, 1) (public sketch: 10; with 1 the faint rim of an anomaly is labelled ~0)",
    )

    @model_validator(mode="after")
    def _ranges(self) -> "PPIIParams":
        check_range("n_anomalies", self.n_anomalies, 1, 50)
        check_range("n_raters", self.n_raters, 1, 32)
        check_range("gradient_scale", self.gradient_scale, 0.0, 100.0)
        if self.gradient_scale[1] <= 0:
            raise ValueError("gradient_scale must allow a positive scale")
        if self.gradient_scale_distribution == "log_uniform" and self.gradient_scale[0] <= 0:
            raise ValueError("a log-uniform gradient_scale needs a positive low end")
        return self


def rater_blend(cfg):
    """P-PII's blend: each rater disc's version of the anomaly, the source (smoothed by
    ``source_smoothing``) with its gradients up-scaled by the anomaly's scale inside the disc (mixed with
    the target's by default), the target's gradients outside it, one DST solve per rater."""

    def blend(tgt, src, specs):
        nd = tgt.ndim - 1
        xp = ops(tgt)
        bshape = (len(specs), 1) + (1,) * nd
        gt = [g[:, None] for g in poisson.forward_gradients(tgt, nd)]
        scale = xp.const([s.gradient_scale for s in specs], tgt).reshape(bshape)
        gs = [scale * g[:, None] for g in poisson.forward_gradients(smooth(src, cfg.source_smoothing, nd), nd)]
        discs = disc_masks(specs[0].size, [s.centres for s in specs], [s.radii for s in specs], tgt)
        guidance = poisson.masked_guidance(gt, gs, discs, mixed_gradients=cfg.mixed_gradients)
        return poisson.poisson_solve(tgt[:, None], guidance)

    return blend


class PPII(Synthesizer):
    method = "ppii"
    params_model = PPIIParams

    @classmethod
    def applies(cls, field: str, config) -> bool:
        if field == "label_scale":  # the scaled label only
            return config.label_mode == "scaled"
        if field in ("label_k", "label_x0"):  # the logistic label only
            return config.label_mode == "logistic"
        return super().applies(field, config)

    def plan_image(self, index, spatial, n_images, rng, masks=None):
        cfg = self.config
        n = int(rng.integers(cfg.n_anomalies[0], cfg.n_anomalies[1] + 1))
        k = int(rng.integers(cfg.n_raters[0], cfg.n_raters[1] + 1))
        tmask = None if masks is None else masks[index]
        specs: list[AnomalySpec] = []
        for _ in range(n):
            src = self._source_index(index, n_images, rng)
            size = sample_size(spatial, cfg, rng)
            src_size = sample_source_size(spatial, size, cfg, rng)
            placed = self._place_target(spatial, size, rng, tmask, specs)
            if placed is None:
                continue  # no free room: fewer anomalies (recorded in the plan)
            smask = masks[src] if masks is not None and cfg.source_in_mask else None
            s_start = self._place_source(spatial, src_size or size, rng, smask, src, index, placed, size)
            scale = sample_gradient_scale(cfg, rng)
            centres, radii = sample_raters(size, k, cfg, rng)
            specs.append(AnomalySpec(index, src, placed, s_start, size, scale, None, centres, radii, src_size))
        return specs

    def render(self, images, plan, n_out, masks=None):
        cfg = self.config
        mean, var = render_blends(images, plan, n_out, cfg, masks, rater_blend(cfg), group=lambda s: len(s.radii))
        # the change is zero outside the (non-overlapping) target boxes, and so is its label: label only
        # the boxes (the whole-image label costs the preview several ms per change at 512x512)
        label = ops(mean).zeros_like(mean)
        for spec in plan:
            if spec.target_index < n_out:
                sl = spec.target_slices
                xp = ops(mean)
                d = xp.exact(mean[spec.target_index][sl]) - xp.exact(images[spec.target_index][sl])
                label[spec.target_index][sl] = change_label(ops(d).abs(d), cfg)
        return mean, label, var


def change_label(diff, cfg):
    """P-PII's label of an absolute intensity change: ``clip(label_scale * d, 0, 1)`` or the logistic
    ``(s(k (d - x0)) - s(-k x0)) / (1 - s(-k x0))`` (0 at no change, 0.5 near ``x0``, 1 for large changes)."""
    xp = ops(diff)
    if cfg.label_mode == "logistic":
        base = 1.0 / (1.0 + np.exp(cfg.label_k * cfg.label_x0))
        sig = 1.0 / (1.0 + xp.exp(-cfg.label_k * (diff - cfg.label_x0)))
        label = (sig - base) / (1.0 - base)
    else:
        label = diff * cfg.label_scale
    return xp.clip(label, 0.0, 1.0)
