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

from .backend import ops
from .base import Synthesizer
from .plan import AnomalySpec, boxes_overlap, sample_size, sample_start
from .render import render_poisson, zero_border


def alpha_labels(images, mean, plan, n_out, tolerance):
    """``alpha`` inside each anomaly's box where the image changed by more than ``tolerance``."""
    label = ops(mean).zeros_like(mean)
    for s in plan:
        sl = s.target_slices
        changed = abs(mean[s.target_index][sl] - images[s.target_index][sl]) > tolerance
        label[s.target_index][sl] = changed * s.alpha
    return zero_border(label, images.ndim - 1)


class PII(Synthesizer):
    method = "pii"
    parameters = frozenset({"alpha", "label_tolerance"})  # one patch per image: no n_anomalies

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

    def render(self, images, plan, n_out, masks=None):
        mean, var = render_poisson(images, plan, n_out, self.config, masks)
        return mean, alpha_labels(images, mean, plan, n_out, self.config.label_tolerance), var
