# SPDX-License-Identifier: BSD-3-Clause
"""Foreign Patch Interpolation (FPI; Tan et al. 2020), the predecessor of PII.

Same patch sampling as PII (square, same location in source and target; another location when the
source is the image itself), but a plain convex
combination: ``(1 - alpha) * target + alpha * source`` inside the patch.  Label: ``alpha`` where the
result differs from the target by more than ``label_tolerance``.  A constant image stays constant.
"""

from __future__ import annotations

from .backend import ops
from .base import Synthesizer
from .pii import PII, alpha_labels


class FPI(Synthesizer):
    method = "fpi"
    parameters = frozenset({"alpha", "label_tolerance"})
    plan_image = PII.plan_image

    def render(self, images, plan, n_out, masks=None):
        cfg = self.config
        use_mask = masks is not None and cfg.mask_blend and cfg.placement != "anywhere"
        xp = ops(images)
        out = xp.copy(images[:n_out])
        for s in plan:
            t = xp.exact(images[s.target_index][s.target_slices])
            src = xp.exact(images[s.source_index][s.source_slices])
            change = s.alpha * (src - t)
            if use_mask:
                change = change * masks[s.target_index][s.target_slices]
            out[s.target_index][s.target_slices] = t + change
        return out, alpha_labels(images, out, plan, n_out, cfg.label_tolerance), ops(out).zeros_like(out)
