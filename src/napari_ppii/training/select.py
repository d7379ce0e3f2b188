# SPDX-License-Identifier: BSD-3-Clause
"""Checkpoint selection: which validation decides ``best.pt`` (``training.select``).

* ``val_dice`` -- soft Dice on the fixed synthetic validation set (the paper's rule).  At small budgets
  it rises while real-lesion localisation falls (the network learns the synthetic anomalies' own
  signature), so two rules that track real lesions are offered:
* ``reference`` -- pixel AUROC on a small labelled reference set from *another* dataset
  (``training.reference``: an annotations CSV with boxes, e.g. the NIH radiographs), scored at the
  model's input size with the evaluation's own metric code.  The reference set never includes the test
  rows of the dataset the model is finally measured on.
* ``heldout`` -- label-free: soft Dice on a validation set synthesised with a *different* anomaly type
  (``training.heldout``: overrides of the synthesis settings, default FPI), after Baugh et al. 2023
  ("Many tasks make light work"): a model that generalises to an anomaly type it never saw is more
  likely to respond to real lesions than one that fits its own.
"""

from __future__ import annotations

import numpy as np
import torch

from ..config import PPIIConfig
from ..errors import InputError


class Selector:
    """Scores a model at each validation for ``training.select`` (higher is better)."""

    def __init__(self, cfg: PPIIConfig, val_images: np.ndarray, val_masks: np.ndarray | None = None):
        self.cfg = cfg
        self.kind = cfg.training.select
        self.reference = None
        self.heldout = None
        if self.kind == "reference":
            if not cfg.training.reference:
                raise InputError("training.select=reference needs training.reference (an annotations CSV with boxes)")
            self.reference = load_reference(cfg)
        elif self.kind == "heldout":
            from .data import validation_set

            scfg = cfg.synthesis.model_dump()
            scfg.update(cfg.training.heldout or {})
            try:
                held = type(cfg.synthesis).model_validate(scfg)
            except Exception as exc:  # pydantic's ValidationError, reported as a config error
                raise InputError(f"training.heldout is not a valid synthesis setting ({exc})") from None
            self.heldout = validation_set(val_images, cfg, val_masks if held.placement != "anywhere" else None, held)

    def score(self, model, device, val_dice: float) -> tuple[float, dict]:
        """``(selection score, extra log fields)``."""
        if self.kind == "reference":
            auc = reference_auroc(model, self.reference, device)
            return auc, {"reference_pixel_auroc": auc}
        if self.kind == "heldout":
            from .validate import evaluate_dice

            d, _ = evaluate_dice(model, self.heldout, device, samples=min(self.cfg.model.samples, 4))
            return d, {"heldout_dice": d}
        return val_dice, {}


def load_reference(cfg: PPIIConfig) -> tuple[np.ndarray, np.ndarray]:
    """The reference set at the model's input size: images ``(N, S, S)`` and lesion masks (boxes)."""
    from ..evaluation.evaluate import load_csv_test_set
    from ..evaluation.metrics import lesion_mask
    from ..io import read_scan
    from ..preprocess import model_input

    items = load_csv_test_set(cfg.training.reference, labels=cfg.training.reference_labels, split="all")
    s = cfg.data.image_size
    imgs, gts = [], []
    for it in items:
        scan = read_scan(it.path)
        x = model_input(scan, cfg)[0]
        h, w = scan.shape[-2:]
        boxes = [b.scaled((s / h, s / w)) for b in it.boxes]
        imgs.append(x)
        gts.append(lesion_mask(boxes, (s, s)))
    gt = np.stack(gts)
    if not gt.any():
        raise InputError("the reference set holds no lesion boxes", cfg.training.reference)
    return np.stack(imgs), gt


@torch.no_grad()
def reference_auroc(model, reference: tuple[np.ndarray, np.ndarray], device, batch: int = 8) -> float:
    """Pixel AUROC of the model's maps on the reference set (the evaluation's histogram AUROC)."""
    from ..evaluation.metrics import auroc_from_histograms, pixel_histograms, quantile_edges

    imgs, gt = reference
    model.eval()
    maps = []
    for i in range(0, len(imgs), batch):
        x = torch.as_tensor(imgs[i : i + batch])[:, None].float().to(device)
        m, _ = model.predict(x, samples=1)
        maps.append(m[:, 0].float().cpu().numpy())
    maps = np.concatenate(maps)
    edges = quantile_edges(list(maps), 4096)
    pos = neg = 0
    for m, g in zip(maps, gt):
        p, n = pixel_histograms(m, g, edges)
        pos, neg = pos + p, neg + n
    return auroc_from_histograms(pos, neg)
