"""Inference: a checkpoint + a scan -> anomaly map and variance map in the scan's own geometry.

The scan gets the training pre-processing (:func:`napari_ppii.training.data.model_input`: window or
normalise, equalise, resize to the training size); each image / slice goes through
``model.predict(x, samples)``; the maps are resized back to the scan's grid, so they line up with the
scan and its boxes (same spacing, origin, direction).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .config import PPIIConfig
from .errors import InputError
from .io.scan import Scan
from .models import build_model
from .preprocess import resize


@dataclass
class AnomalyMap:
    mean: np.ndarray  # same shape as the scan, in [0, 1]
    variance: np.ndarray  # same shape, variance over samples (zero for a plain U-Net)
    scan: Scan  # geometry the maps belong to
    samples: int

    def as_scan(self, which: str = "mean") -> Scan:
        return self.scan.with_array(getattr(self, which).astype(np.float32))


class Predictor:
    """A loaded model ready to predict (keeps weights on ``device``)."""

    def __init__(self, checkpoint: str | Path, device: str = "cpu"):
        from .training.checkpoint import load_checkpoint
        from .training.loop import resolve_device

        ck = load_checkpoint(checkpoint)
        self.path = Path(checkpoint)
        self.cfg = PPIIConfig.from_dict(ck["config"], source=checkpoint)
        self.device = resolve_device(device)
        self.model = build_model(self.cfg.model)
        try:
            self.model.load_state_dict(ck["model"])
        except RuntimeError as exc:
            raise InputError(f"weights do not fit the model the checkpoint describes ({str(exc).splitlines()[0]})", checkpoint) from None
        self.model.to(self.device).eval()
        self.step = int(ck.get("step", 0))

    def predict_images(self, images: np.ndarray, samples: int | None = None, batch: int = 4,
                       progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(N, S, S)`` pre-processed images -> mean and variance maps of the same shape."""
        n = self.cfg.model.samples if samples is None else samples
        means, vars_ = [], []
        for i in range(0, len(images), batch):
            x = torch.as_tensor(images[i:i + batch])[:, None].float().to(self.device)
            m, v = self.model.predict(x, samples=n)
            means.append(m[:, 0].cpu().numpy())
            vars_.append(v[:, 0].cpu().numpy())
            if progress is not None:
                progress(min(i + batch, len(images)), len(images))
        return np.concatenate(means), np.concatenate(vars_)

    def predict_scan(self, scan: Scan, samples: int | None = None, progress=None) -> AnomalyMap:
        from .training.data import model_input

        x = model_input(scan, self.cfg)
        mean, var = self.predict_images(x, samples, progress=progress)
        shape2d = scan.shape[-2:]
        mean = np.stack([resize(m, shape2d) for m in mean])
        var = np.stack([np.clip(resize(v, shape2d), 0, None) for v in var])
        if scan.ndim == 2:
            mean, var = mean[0], var[0]
        n = self.cfg.model.samples if samples is None else samples
        return AnomalyMap(np.clip(mean, 0, 1).astype(np.float32), var.astype(np.float32), scan, n if self.model.stochastic else 1)
