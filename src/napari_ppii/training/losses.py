# SPDX-License-Identifier: BSD-3-Clause
"""Losses on the continuous P-PII label.

``bce_dice`` (default): binary cross-entropy with soft targets + soft Dice (``1 - 2 sum(p y) / (sum(p) +
sum(y))`` per image, averaged).  With ``confidence_weighting`` each pixel's term is weighted by

    w = exp(-gamma * sqrt(variance)),   normalised so that mean(w) = 1 over the batch,

where ``variance`` is the P-PII rater variance: pixels the simulated raters disagree on count less
(the paper names this as future work).  Dice uses the same weights inside its sums.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def confidence_weights(variance: torch.Tensor, gamma: float) -> torch.Tensor:
    w = torch.exp(-gamma * variance.clamp_min(0).sqrt())
    return w / w.mean().clamp_min(1e-8)


def soft_dice(
    prob: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None, eps: float = 1e-6
) -> torch.Tensor:
    """Per-image soft Dice coefficient of ``(B, 1, H, W)`` maps."""
    w = torch.ones_like(prob) if weight is None else weight
    dims = tuple(range(1, prob.ndim))
    inter = (w * prob * target).sum(dims)
    denom = (w * prob).sum(dims) + (w * target).sum(dims)
    return (2 * inter + eps) / (denom + eps)


def segmentation_loss(
    logits: torch.Tensor,
    label: torch.Tensor,
    variance: torch.Tensor | None = None,
    *,
    kind: str = "bce_dice",
    confidence_weighting: bool = False,
    gamma: float = 5.0,
) -> torch.Tensor:
    logits = logits.float()
    w = confidence_weights(variance, gamma) if (confidence_weighting and variance is not None) else None
    prob = torch.sigmoid(logits)
    terms = []
    if kind in ("bce", "bce_dice"):
        bce = F.binary_cross_entropy_with_logits(logits, label, reduction="none")
        terms.append((bce * w).mean() if w is not None else bce.mean())
    if kind in ("dice", "bce_dice"):
        terms.append(1.0 - soft_dice(prob, label, w).mean())
    if kind == "mse":
        se = (prob - label) ** 2
        terms.append((se * w).mean() if w is not None else se.mean())
    return sum(terms)
