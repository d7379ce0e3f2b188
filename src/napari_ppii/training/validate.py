# SPDX-License-Identifier: BSD-3-Clause
"""Validation during training: the soft Dice (and the loss) of a model on a fixed synthetic set."""

from __future__ import annotations

import numpy as np
import torch

from .losses import soft_dice


@torch.no_grad()
def evaluate_dice(model, val, device, samples: int = 1, batch: int = 8) -> tuple[float, float]:
    """Soft Dice over all validation pixels, and the mean BCE+Dice loss, of ``model.predict``."""
    inter = denom = 0.0
    losses = []
    for i in range(0, val.image.shape[0], batch):
        x = val.image[i : i + batch].to(device)
        y = val.label[i : i + batch].to(device)
        mean, _ = model.predict(x, samples=samples)
        inter += float((mean * y).sum())
        denom += float(mean.sum() + y.sum())
        losses.append(float(1.0 - soft_dice(mean, y).mean()))
    return (2 * inter + 1e-6) / (denom + 1e-6), float(np.mean(losses))
