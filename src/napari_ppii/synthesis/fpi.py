# SPDX-License-Identifier: BSD-3-Clause
"""Foreign Patch Interpolation (FPI; Tan et al. 2020), the predecessor of PII.

Same patch sampling as PII (square, same location in source and target; another location when the
source is the image itself), but a plain convex
combination: ``(1 - alpha) * target + alpha * source`` inside the patch.  Label: ``alpha`` where the
result differs from the target by more than ``label_tolerance``.  A constant image stays constant.
"""

from __future__ import annotations

from .pii import InterpolatedPatch, PIIParams, alpha_factors


class FPIParams(PIIParams):
    """FPI's own parameters: PII's (the interpolation factor's range, the label's change tolerance)."""


class FPI(InterpolatedPatch):
    """A plain convex combination of target and source patch."""

    method = "fpi"
    params_model = FPIParams
    limit_range = False  # a convex combination stays in the target's range

    @staticmethod
    def blend(tgt, src, specs):
        return (tgt + alpha_factors(specs, tgt) * (src - tgt))[:, None]
