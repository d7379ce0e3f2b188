# SPDX-License-Identifier: BSD-3-Clause
"""Training data: normal images in memory, augmentations, on-the-fly synthesis, the validation set.

Sources of normal images (``data.train``):

* a folder of radiographs (every readable image file in it, recursively);
* an annotations CSV like ``../shared/data/jsrt/annotations.csv``: rows with ``split == train`` (and
  ``label == normal`` where a label column exists); image paths relative to the CSV;
* a ``.npy`` stack ``(N, H, W)`` already pre-processed to [0, 1] (the viewer writes one from layers);
* a CT series folder or a volume file: every slice, except -- with ``data.boxes`` -- slices within
  ``lesion_margin`` slices of an annotated lesion (the paper: ~5 slices either side count as context).

Every image goes through :func:`~napari_ppii.preprocess.model_input` -- the same pre-processing
:mod:`napari_ppii.predict` uses.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from ..config import AugmentConfig, PPIIConfig
from ..errors import InputError
from ..io import read_boxes, read_scan
from ..io.readers import ITK_SUFFIXES, RASTER_SUFFIXES, scan_files
from ..io.scan import Scan
from ..preprocess import model_input, resize
from ..synthesis import make_synthesizer


def normal_slices(n_slices: int, lesion_z: list[tuple[float, float]], margin: int) -> list[int]:
    """Slices farther than ``margin`` from every lesion's z-range."""
    keep = []
    for z in range(n_slices):
        if all(z < lo - margin or z > hi + margin for lo, hi in lesion_z):
            keep.append(z)
    return keep


def _csv_images(path: Path) -> list[Path]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "image" not in rows[0]:
        raise InputError("annotations CSV needs an 'image' column", path)
    out = []
    for r in rows:
        if "split" in r and (r["split"] or "").strip().lower() != "train":
            continue
        if "label" in r and (r["label"] or "").strip().lower() not in ("normal", ""):
            continue
        out.append(path.parent / r["image"])
    if not out:
        raise InputError("no rows with split=train (and label=normal) to train on", path)
    return out


def _npy_images(path: Path, size: int) -> np.ndarray:
    """A ``(N, H, W)`` stack already pre-processed to [0, 1] (what the viewer writes from layers)."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise InputError(f"not a readable .npy image stack ({exc})", path) from None
    if arr.ndim != 3 or arr.dtype.kind != "f" or not np.isfinite(arr).all():
        raise InputError(f"expected a finite float (N, H, W) stack, got {arr.dtype} {arr.shape}", path)
    if arr.shape[1:] != (size, size):
        arr = np.stack([resize(a, (size, size)) for a in arr])
    return arr.astype(np.float32)


def load_normal_images(cfg: PPIIConfig) -> np.ndarray:
    """All normal training images as ``(N, S, S)`` float32."""
    return _load_images(cfg)[0]


def _resize_masks(m: np.ndarray, size: int) -> np.ndarray:
    m = np.asarray(m, dtype=np.float32)
    if m.shape[1:] != (size, size):
        m = np.stack([resize(a, (size, size)) for a in m])
    return m >= 0.5


def _given_masks(cfg: PPIIConfig, n: int, scan: Scan | None = None, keep: list[int] | None = None) -> np.ndarray:
    """``data.mask``: a .npy stack aligned with the images, or a mask volume of a single scan's shape."""
    if not cfg.data.mask:
        raise InputError("synthesis.placement=mask needs data.mask (a .npy mask stack or a mask volume)")
    path = Path(cfg.data.mask)
    if not path.exists():
        raise InputError("placement mask not found", path)
    if path.suffix.lower() == ".npy":
        try:
            m = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise InputError(f"not a readable .npy mask stack ({exc})", path) from None
    else:
        m = read_scan(path).array
    m = m[None] if m.ndim == 2 else m
    if scan is not None and scan.ndim == 3 and m.shape == scan.shape and keep is not None:
        m = m[keep]
    if m.ndim != 3 or m.shape[0] != n:
        raise InputError(f"mask stack of shape {m.shape} does not match the {n} training images", path)
    if not np.isfinite(m).all():
        raise InputError("mask contains NaN or Inf values", path)
    return _resize_masks(m > 0, cfg.data.image_size)


def training_masks(cfg: PPIIConfig, images: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray | None:
    """Placement masks for ``images`` (``(N, S, S)``) as ``synthesis.placement`` says, by the synthesis'
    own rule (:func:`napari_ppii.synthesis.base.placement_masks`): None (anywhere), the given ``masks`` or
    ``data.mask`` read from disk (mask), or lung fields computed from each image (lungs)."""
    from ..synthesis.base import placement_masks

    if cfg.synthesis.placement == "mask" and masks is None:
        masks = _given_masks(cfg, len(images))
    return placement_masks(cfg.synthesis, images, masks)


def with_room(masks: np.ndarray, share: float) -> np.ndarray:
    """Which images (a bool per image of ``masks``, ``(N, H, W)``) have a placement mask covering at least
    ``share`` of them: the ones ``data.min_mask_share`` keeps for training and validation.  An error when
    none has."""
    keep = np.asarray(masks, dtype=bool).reshape(len(masks), -1).mean(axis=1) >= share
    if not keep.any():
        raise InputError(
            f"no training image has a placement mask covering {share:.1%} of it (data.min_mask_share): "
            "lower it, or check the masks"
        )
    return keep


def _modality(scan: Scan) -> str:
    from ..preprocess import is_ct

    return "CT" if is_ct(scan) else "radiograph"


def training_inputs(cfg: PPIIConfig, scan: Scan | None = None) -> dict:
    """What a checkpoint records about its inputs: the modality trained on (``CT``, ``radiograph``, or None
    where a pre-processed ``.npy`` stack does not say), the training data's absolute path (it resolves
    from any working folder), and the input settings (pre-processing, image size).  Prediction warns
    when a scan's modality differs."""
    src = Path(cfg.data.train) if cfg.data.train else None
    modality = cfg.data.modality
    if modality is not None:
        pass
    elif scan is not None:
        modality = _modality(scan)
    elif src is not None and src.exists() and src.suffix.lower() != ".npy":
        try:
            first = (
                _csv_images(src)[0]
                if src.suffix.lower() == ".csv"
                else (src if src.is_file() else (scan_files(src) or [src])[0])
            )
            modality = _modality(read_scan(first))
        except InputError:
            modality = None
    return {
        "modality": modality,
        "train_data": str(src.resolve()) if src is not None else None,
        "image_size": cfg.data.image_size,
        "preprocess": cfg.preprocess.model_dump(mode="json"),
    }


def load_training_set(cfg: PPIIConfig, inputs: dict | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """All normal training images as ``(N, S, S)`` float32, and their placement masks (``(N, S, S)``
    bool, or None for ``placement=anywhere``).  CT lung masks come from the HU volume.  ``inputs`` (a
    dict): filled with :func:`training_inputs`, from the scan already read when the data is one scan."""
    images, scan, keep = _load_images(cfg)
    if inputs is not None:
        inputs.update(training_inputs(cfg, scan))
    place = cfg.synthesis.placement
    if place == "anywhere" or scan is None or scan.ndim != 3:
        return images, training_masks(cfg, images)
    if place == "mask":
        return images, _given_masks(cfg, len(images), scan, keep)
    from ..anatomy import lung_mask_ct

    return images, _resize_masks(lung_mask_ct(scan.array)[keep], cfg.data.image_size)


def _load_images(cfg: PPIIConfig) -> tuple[np.ndarray, Scan | None, list[int] | None]:
    """``(images, scan, kept slice indices)``: the scan and its kept slices when ``data.train`` is one
    scan (a CT series or volume file), else None for both."""
    if not cfg.data.train:
        raise InputError("no training data: set data.train to a folder, an annotations CSV or a CT series")
    src = Path(cfg.data.train)
    if not src.exists():
        raise InputError("training data not found", src)
    if src.is_file() and src.suffix.lower() == ".npy":
        return _npy_images(src, cfg.data.image_size), None, None
    if src.is_file() and src.suffix.lower() == ".csv":
        return np.concatenate([model_input(read_scan(p), cfg) for p in _csv_images(src)]), None, None
    is_series = src.is_dir() and not scan_files(src, suffixes=RASTER_SUFFIXES + ITK_SUFFIXES)
    if src.is_file() or is_series:
        try:
            scan = read_scan(src)
        except InputError as exc:
            if is_series:
                raise InputError(
                    f"folder holds no image files (PNG/JPEG/TIFF, NIfTI/MHD/NRRD) and no readable "
                    f"DICOM series ({exc.reason})",
                    src,
                ) from None
            raise
        arr = model_input(scan, cfg)
        keep = list(range(len(arr)))
        if scan.ndim == 3:
            lesions = []
            if cfg.data.boxes:
                boxes = read_boxes(cfg.data.boxes, scan.slice_positions)
                lesions = [(b.lo[0], b.hi[0]) for b in boxes if b.ndim == 3 and b.label != "non-nodule"]
            keep = normal_slices(arr.shape[0], lesions, cfg.data.lesion_margin)
            if not keep:
                raise InputError("no slice is farther than lesion_margin from a lesion", src)
            arr = arr[keep]
        return arr, scan, keep
    files = scan_files(src)
    if not files:
        raise InputError("folder holds no image files", src)
    return np.concatenate([model_input(read_scan(p), cfg) for p in files]), None, None


# --------------------------------------------------------------------------------------------------
# Augmentations (torch, on the training device)
# --------------------------------------------------------------------------------------------------
def augment(images: torch.Tensor, cfg: AugmentConfig, rng: np.random.Generator, masks: torch.Tensor | None = None):
    """Scaling, rotation and elastic deformation of a ``(B, H, W)`` batch; parameters from ``rng``.
    With ``masks`` (``(B, H, W)``), they get the same deformation and ``(images, masks)`` is returned."""
    if not (cfg.scaling or cfg.rotation or cfg.elastic):
        return images if masks is None else (images, masks)
    b, h, w = images.shape
    ang = rng.uniform(-cfg.rotation_degrees, cfg.rotation_degrees, b) if cfg.rotation else np.zeros(b)
    sc = rng.uniform(*cfg.scale_range, b) if cfg.scaling else np.ones(b)
    rad = np.deg2rad(ang)
    theta = np.zeros((b, 2, 3))
    theta[:, 0, 0] = np.cos(rad) / sc
    theta[:, 0, 1] = -np.sin(rad) / sc
    theta[:, 1, 0] = np.sin(rad) / sc
    theta[:, 1, 1] = np.cos(rad) / sc
    theta_t = torch.as_tensor(theta, dtype=images.dtype, device=images.device)
    grid = F.affine_grid(theta_t, (b, 1, h, w), align_corners=False)
    if cfg.elastic:
        g = max(2, int(round(1.0 / cfg.elastic_sigma)))
        coarse = torch.as_tensor(rng.normal(size=(b, 2, g, g)), dtype=images.dtype, device=images.device)
        disp = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)
        disp = disp * (2.0 * cfg.elastic_alpha / max(h, w))
        grid = grid + disp.permute(0, 2, 3, 1)
    out = F.grid_sample(images[:, None], grid, mode="bilinear", padding_mode="border", align_corners=False)
    if masks is None:
        return out[:, 0]
    mo = F.grid_sample(
        masks[:, None].to(images.dtype), grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    return out[:, 0], mo[:, 0] >= 0.5


# --------------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------------
@dataclass
class Batch:
    image: torch.Tensor  # (B, 1, H, W) synthetic training images
    label: torch.Tensor  # (B, 1, H, W)
    variance: torch.Tensor  # (B, 1, H, W) rater variance


class SyntheticBatches:
    """Draws batches: random normal images -> augmentations -> synthesis (P-PII by default).

    All randomness comes from one NumPy generator (its state goes into checkpoints), so a resumed run
    draws exactly the batches the uninterrupted run would have drawn.
    """

    def __init__(
        self,
        images: np.ndarray,
        cfg: PPIIConfig,
        device: torch.device,
        on_device: bool = True,
        masks: np.ndarray | None = None,
    ):
        self.cpu_images = torch.as_tensor(images)
        self.device = device
        self.images = self.cpu_images.to(device) if on_device else self.cpu_images
        self.masks = None if masks is None else torch.as_tensor(np.asarray(masks, bool)).to(self.images.device)
        self.cfg = cfg
        self.synth = make_synthesizer(cfg.synthesis)

    def draw(self, rng: np.random.Generator, batch_size: int) -> Batch:
        idx = rng.integers(0, self.images.shape[0], batch_size)
        sel = torch.as_tensor(idx, device=self.images.device)
        x = self.images[sel]
        m = None
        if self.masks is None:
            x = augment(x, self.cfg.data.augment, rng)
        else:
            x, m = augment(x, self.cfg.data.augment, rng, self.masks[sel])
        results = self.synth.batch(x, rng, masks=m)
        stack = lambda k: torch.stack([getattr(r, k) for r in results])[:, None].to(self.device, torch.float32)  # noqa: E731
        return Batch(stack("image"), stack("label"), stack("variance"))


def validation_set(images: np.ndarray, cfg: PPIIConfig, masks: np.ndarray | None = None, synthesis=None) -> Batch:
    """A fixed, seeded synthetic set (``data.val_samples`` samples of the given images; NumPy engine,
    independent of the training generator and of the device).  ``synthesis``: another
    :class:`~napari_ppii.config.SynthesisConfig` (a held-out anomaly type), default ``cfg.synthesis``."""
    rng = np.random.default_rng([cfg.seed, 0xBA1])
    scfg = synthesis or cfg.synthesis
    synth = make_synthesizer(scfg)
    if scfg.placement != "anywhere" and masks is None:
        masks = training_masks(cfg.model_copy(update={"synthesis": scfg}), images)
    n = cfg.data.val_samples
    out_i, out_l, out_v = [], [], []
    while len(out_i) < n:
        k = min(len(images), n - len(out_i))
        idx = rng.permutation(len(images))[: max(k, 2) if len(images) > 1 else 1]
        res = synth.batch(
            images[idx].astype(np.float64),
            rng,
            n_out=k,
            masks=None if masks is None or scfg.placement == "anywhere" else masks[idx],
        )
        for r in res:
            out_i.append(r.image)
            out_l.append(r.label)
            out_v.append(r.variance)
    t = lambda a: torch.as_tensor(np.stack(a))[:, None].float()  # noqa: E731
    return Batch(t(out_i), t(out_l), t(out_v))


def split_indices(n: int, cfg: PPIIConfig) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training and the held-out validation images (seeded; ``val_fraction``); with
    fewer than two held out, the validation set is drawn from the training images."""
    n_val = int(round(cfg.data.val_fraction * n))
    if n_val < 2 or n - n_val < 1:
        return np.arange(n), np.arange(n)
    perm = np.random.default_rng([cfg.seed, 0x5EED]).permutation(n)
    return perm[n_val:], perm[:n_val]
