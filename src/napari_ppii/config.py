# SPDX-License-Identifier: BSD-3-Clause
"""Configuration objects shared by the napari widgets, the ``ppii`` CLI and the trainer.

Validated once, at the edge: every field has the paper's / method-notes default and a documented range,
and a bad value or combination raises :class:`~napari_ppii.errors.InputError` with a message naming the
field.  Configurations load from and save to YAML (or JSON), and ``key=value`` overrides
(``synthesis.n_raters=[1,5]``) apply on top, the same way for the CLI and the widgets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import InputError

#: The synthesis methods a configuration may name: the four built in, and any registered with
#: :func:`napari_ppii.synthesis.register_method` (which adds to this list, to :data:`METHOD_DEFAULTS`,
#: :data:`PAPER_SYNTHESIS` and :data:`METHOD_PARAMS`).
METHOD_NAMES: list[str] = ["ppii", "pii", "fpi", "nsa"]
Method = str
#: A registered method's own parameters beyond the shared fields (``synthesis.params``): a pydantic model
#: per method name, validated with the configuration.
METHOD_PARAMS: dict[str, type] = {}
Placement = Literal["anywhere", "lungs", "mask"]

#: Per-method defaults for fields that default to ``None`` in :class:`SynthesisConfig`.
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    # P-PII (paper section 2; method-notes: side U[0.05, 0.2] of the extent per axis)
    # calibrated: nodule-sized (JSRT nodules are 6-30 mm, 9-43 px at 512; the rater disc is ~0.6 of the
    # side), the paper's 0.05-0.2 via configs/paper_ppii.yaml
    "ppii": {"patch_size": (0.04, 0.16), "square": False},
    # PII / FPI: square patch; the paper's half-width U[0.05 H, 0.2 H] (side 0.1-0.4) does not fit in a
    # lung field, so inside the lungs the side is 0.04-0.2 (paper: configs/paper_pii.yaml)
    "pii": {"patch_size": (0.04, 0.2), "square": True},
    "fpi": {"patch_size": (0.04, 0.2), "square": True},
    # NSA: sides per axis; in the lungs the same nodule-sized range as P-PII (NSA's own: configs/paper_nsa.yaml)
    "nsa": {"patch_size": (0.04, 0.16), "square": False},
}

#: The paper's / public sketch's synthesis settings (before the realism calibration of issue 10), per
#: method: ``SynthesisConfig(**PAPER_SYNTHESIS["ppii"])`` reproduces the paper's P-PII.
PAPER_SYNTHESIS: dict[str, dict[str, Any]] = {
    "ppii": {
        "method": "ppii",
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
    },
    "pii": {
        "method": "pii",
        "patch_size": (0.1, 0.4),
        "placement": "anywhere",
        "patch_distribution": "uniform",
        "source_rescale": (1.0, 1.0),
        "clip": "hard",
    },
    "fpi": {
        "method": "fpi",
        "patch_size": (0.1, 0.4),
        "placement": "anywhere",
        "patch_distribution": "uniform",
        "source_rescale": (1.0, 1.0),
        "clip": "hard",
    },
    # NSA's public code defaults (gamma_params (2, 0.05, 0.03) on the half-width, width bounds 0.05-0.2,
    # resize 0.7-1.3, up to 3 patches, normal clone, logistic-intensity label (1/6, 20) on 0-255, tol 1):
    # sides and intensities here are fractions of the extent and of [0, 1]
    "nsa": {
        "method": "nsa",
        "patch_size": (0.1, 0.4),
        "square": False,
        "patch_distribution": "gamma",
        "patch_gamma": (0.06, 0.1),
        "source_rescale": (0.7, 1.3),
        "nsa_patches": 3,
        "mixed_gradients": False,
        "placement": "anywhere",
        "source_in_mask": True,
        "clip": "hard",
        "label_k": 255 / 6,
        "label_x0": 20 / 255,
        "label_tolerance": 1 / 255,
        "label_median_radius": 5,
    },
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def _check_range(name: str, lo_hi, lo_bound, hi_bound) -> None:
    lo, hi = lo_hi
    if not (lo_bound <= lo <= hi <= hi_bound):
        raise ValueError(f"{name} must satisfy {lo_bound} <= low <= high <= {hi_bound}, got ({lo}, {hi})")


class SynthesisConfig(_Model):
    """Parameters of the synthetic-anomaly generator (FPI, PII, P-PII).

    Defaults are calibrated for chest scans (issue 10): anomalies inside the lung fields, nodule-sized,
    about as contrasted and as textured as real nodules (measured with ``ppii realism`` against the NIH
    Nodule/Mass boxes), labelled by a logistic of the change.  The paper's settings:
    :meth:`paper` (or ``configs/paper_ppii.yaml``).

    Ranges ``(low, high)`` are sampled uniformly (integers inclusive at both ends).  Fields used by one
    method only are ignored by the others.  Sizes are fractions of the image extent along each axis.
    """

    method: Method = Field(
        "ppii",
        description="ppii (paper), pii (Tan et al. 2021), fpi (Tan et al. 2020), nsa "
        "(Schlueter et al. 2022), or a method registered with napari_ppii.synthesis.register_method",
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="a registered method's own parameters (its parameter model's fields); "
        "the four built-in methods have none here",
    )
    patch_size: tuple[float, float] | None = Field(
        None,
        description="patch side as a fraction of the image extent per axis, in (0, 0.5]; "
        "None = method default (P-PII: 0.05-0.2; PII/FPI: 0.1-0.4, square)",
    )
    square: bool | None = Field(None, description="one side for all axes (PII/FPI default) or one per axis")
    core_fraction: float = Field(0.8, gt=0, le=1, description="patch centres lie in this central fraction of each axis")
    n_anomalies: tuple[int, int] = Field(
        (1, 5),
        description="P-PII: anomalies per image, 1-50 (paper: one to ten; "
        "calibrated: 1-5, as many as fit in the lungs without crowding)",
    )
    n_raters: tuple[int, int] = Field((1, 9), description="P-PII: rater masks per image, 1-32 (public sketch: 1-9)")
    gradient_scale: tuple[float, float] = Field(
        (1.0, 8.0),
        description="P-PII: up-scaling of the source gradients in [low, high), 0-100 (public sketch: "
        "10-20, which gives contrasts ~3x and gradient energies ~10x a real nodule's; calibrated on the NIH boxes: "
        "1-8 log-uniform with a smoothed source)",
    )
    rater_radius: float = Field(
        0.3,
        gt=0,
        le=0.5,
        description="P-PII: mean rater radius, fraction of the patch's shortest side (public sketch: 0.25)",
    )
    rater_radius_std: float = Field(1.0, ge=0, le=20, description="P-PII: std of the rater radius in pixels")
    rater_centre_std: float = Field(
        1 / 12, ge=0, le=0.5, description="P-PII: std of the rater centre, fraction of the patch side"
    )
    mixed_gradients: bool = Field(
        True,
        description="P-PII / NSA: keep the larger of (scaled) source and target "
        "gradient (NSA: mixed clone; NSA's default is the normal clone, False)",
    )
    alpha: tuple[float, float] = Field((0.05, 0.95), description="PII/FPI: interpolation factor range, in [0, 1]")
    pairwise: bool = Field(
        True, description="take the source patch from another image of the batch (else the same image)"
    )
    label_scale: float = Field(
        10.0,
        gt=0,
        le=100,
        description="P-PII, label_mode scaled: label = clip(label_scale * "
        "|target - mean|, 0, 1) (public sketch: 10; with 1 the faint rim of an anomaly is labelled ~0)",
    )
    label_tolerance: float = Field(
        1e-3,
        ge=0,
        le=1,
        description="PII/FPI/NSA: a pixel is labelled where it changed by more than this (NSA: 1 grey level, 1/255)",
    )
    clip: Literal["hard", "soft", "none"] = Field(
        "soft",
        description="blended images beyond the target's intensity range: clipped (hard; the paper), "
        "compressed smoothly into it (soft: no flat white/black plateaus) or left as they are (none)",
    )
    size_step: int = Field(
        1,
        ge=1,
        le=64,
        description="round patch sides up to a multiple of this (fewer distinct shapes for GPU batching)",
    )
    fast_sizes: bool = Field(
        True,
        description="round patch sides up (a few pixels at most) so the DST length "
        "2 (side - 1) is FFT-friendly (5-smooth): several times faster solves",
    )
    min_patch_side: int = Field(5, ge=3, le=64, description="smallest patch side in pixels")
    max_tries: int = Field(
        50, ge=1, le=1000, description="P-PII: placement attempts per anomaly (target boxes never overlap)"
    )
    # -- anatomy-aware placement ------------------------------------------------------------------
    placement: Placement = Field(
        "lungs",
        description="where target patches go: anywhere (the paper), lungs (lung fields computed "
        "by napari_ppii.anatomy) or mask (a mask given with the images: data.mask, or a Labels layer)",
    )
    placement_min_inside: float = Field(
        0.7,
        ge=0,
        le=1,
        description="lungs/mask: least fraction of a target patch box on the mask (AnatPaste/NSA "
        "keep >= 50-70% of the patch on the anatomy); a patch that cannot be placed after max_tries is dropped",
    )
    placement_margin_share: float = Field(
        0.1,
        ge=0,
        le=1,
        description="lungs/mask: share of anomalies placed at the mask's edge (the centre within "
        "a quarter of a box side of it, the box needing only placement_margin_min_inside on the mask): they "
        "straddle the pleura and the mediastinal edge as about one real nodule in ten does (NIH Nodule/Mass "
        "boxes, ppii realism); 0 = every anomaly well inside the mask",
    )
    placement_margin_min_inside: float = Field(
        0.3, ge=0, le=1, description="lungs/mask: least fraction of a margin anomaly's box on the mask"
    )
    source_in_mask: bool = Field(False, description="lungs/mask: take source patches from inside the mask too")
    mask_blend: bool = Field(
        True,
        description="lungs/mask: the change (and so the label) is multiplied by the "
        "mask, so no anomaly spills outside it; the input image itself is never masked",
    )
    # -- realism controls -------------------------------------------------------------------------
    patch_distribution: Literal["uniform", "gamma"] = Field(
        "gamma",
        description="patch side fraction drawn uniform in patch_size, or NSA-style: offset + "
        "Gamma(shape 2, scale), clipped to patch_size (mostly small patches, a long tail); offset and scale "
        "from patch_gamma",
    )
    patch_gamma: tuple[float, float] | None = Field(
        None,
        description="gamma patch sides: (offset, scale) of offset + Gamma(2, scale) as fractions of the extent; "
        "None = (low, (high - low) / 6) of patch_size (NSA: half-width 0.03 + Gamma(2, 0.05), i.e. (0.06, 0.1))",
    )
    nsa_patches: int = Field(
        3,
        ge=1,
        le=50,
        description="NSA: at most this many patches per image, the first always, "
        "each further one with probability 1/2 (NSA: 3 or 4 by object class)",
    )
    label_median_radius: int = Field(
        5,
        ge=0,
        le=15,
        description="NSA label: radius (pixels) of the disc (ball) median "
        "filter of the change before the logistic (NSA: 5)",
    )
    source_rescale: tuple[float, float] = Field(
        (0.7, 1.3),
        description="the source patch is taken at side / r, r ~ U[low, high], and resized to the "
        "target side (NSA: 0.7-1.3; 1-1 = no rescaling)",
    )
    gradient_scale_distribution: Literal["uniform", "log_uniform"] = Field(
        "log_uniform",
        description="P-PII: gradient scale drawn uniform or log-uniform in gradient_scale "
        "(log-uniform gives as many subtle as strong anomalies)",
    )
    source_smoothing: float = Field(
        2.0,
        ge=0,
        le=20,
        description="P-PII: Gaussian sigma (pixels) applied to the source patch before its "
        "gradients are up-scaled: removes the up-scaled texture/noise, leaving a soft, lesion-like profile",
    )
    label_mode: Literal["scaled", "logistic"] = Field(
        "logistic",
        description="P-PII: label = clip(label_scale * |change|, 0, 1) (the public sketch), or NSA's "
        "logistic of the change, 0 at no change: (s(k (|d| - x0)) - s(-k x0)) / (1 - s(-k x0))",
    )
    label_k: float = Field(
        100.0,
        gt=0,
        le=10000,
        description="logistic label (P-PII logistic, NSA): steepness k per "
        "unit intensity (NSA: 1/6 per grey level = 42.5)",
    )
    label_x0: float = Field(
        0.04,
        ge=0,
        le=1,
        description="logistic label (P-PII logistic, NSA): the change labelled "
        "~0.5 (a real JSRT nodule differs from its surroundings by ~0.04; NSA: 20 grey levels = 0.078)",
    )

    @field_validator("method")
    @classmethod
    def _known_method(cls, v):
        if v not in METHOD_NAMES:
            raise ValueError(
                f"unknown synthesis method {v!r}: one of {', '.join(METHOD_NAMES)} (a new method is "
                "registered with napari_ppii.synthesis.register_method)"
            )
        return v

    @field_validator("clip", mode="before")
    @classmethod
    def _clip_bool(cls, v):
        if isinstance(v, bool):  # configurations written before the soft clip: true / false
            return "hard" if v else "none"
        return v

    @model_validator(mode="after")
    def _validate(self) -> "SynthesisConfig":
        _check_range("source_rescale", self.source_rescale, 0.25, 4.0)
        if self.patch_gamma is not None and not (0 <= self.patch_gamma[0] <= 0.5 and 0 < self.patch_gamma[1] <= 0.5):
            raise ValueError(
                f"patch_gamma (offset, scale) must satisfy 0 <= offset <= 0.5, 0 < scale <= 0.5, got {self.patch_gamma}"
            )
        if self.patch_size is not None:
            lo, hi = self.patch_size
            if not (0 < lo <= hi <= 0.5):
                raise ValueError(f"patch_size must satisfy 0 < low <= high <= 0.5, got ({lo}, {hi})")
        _check_range("n_anomalies", self.n_anomalies, 1, 50)
        _check_range("n_raters", self.n_raters, 1, 32)
        _check_range("gradient_scale", self.gradient_scale, 0.0, 100.0)
        if self.gradient_scale[1] <= 0:
            raise ValueError("gradient_scale must allow a positive scale")
        if self.gradient_scale_distribution == "log_uniform" and self.gradient_scale[0] <= 0:
            raise ValueError("a log-uniform gradient_scale needs a positive low end")
        _check_range("alpha", self.alpha, 0.0, 1.0)
        model = METHOD_PARAMS.get(self.method)
        if model is not None:  # the registered method's own parameters, validated and completed
            self.__dict__["params"] = model.model_validate(self.params).model_dump(mode="json")
        elif self.params:
            raise ValueError(
                f"synthesis.params is for a registered method's own parameters; {self.method} takes none "
                f"(got {', '.join(self.params)})"
            )
        return self

    @classmethod
    def paper(cls, method: str = "ppii", **overrides) -> "SynthesisConfig":
        """The paper's / public sketch's settings of ``method`` (anomalies anywhere, strong, clipped)."""
        return cls(**(PAPER_SYNTHESIS[method] | overrides))

    def resolved(self) -> "SynthesisConfig":
        """A copy with every ``None`` replaced by the method's default."""
        upd = {k: v for k, v in METHOD_DEFAULTS[self.method].items() if getattr(self, k) is None}
        return self.model_copy(update=upd)


WindowName = Literal["lung", "mediastinum", "bone", "soft_tissue", "header"]


class PreprocessConfig(_Model):
    """Scan -> network input: window (CT), normalise to [0, 1], histogram-equalise, resize."""

    window: WindowName | None = Field("lung", description="HU window preset for CT; ignored for radiographs")
    normalise: Literal["minmax", "percentile"] = Field(
        "percentile", description="radiographs: min/max or 0.5/99.5 percentiles to [0, 1]"
    )
    equalise: bool = Field(True, description="histogram equalisation (the paper, after MIMIC-CXR-JPG)")
    size: int | None = Field(None, ge=16, le=4096, description="resize 2D images / slices to size x size (None = keep)")


class ModelConfig(_Model):
    """The backbone (paper section 3: five resolution levels each; PHiSeg two more)."""

    backbone: Literal["unet", "mc_unet", "phiseg"] = Field("unet", description="U-Net, MC-dropout U-Net or PHiSeg")
    base_channels: int = Field(
        32, ge=2, le=256, description="channels at full resolution (doubling per level, capped at 512)"
    )
    levels: int = Field(
        5, ge=2, le=8, description="resolution levels (PHiSeg: latent levels; it adds two resolution levels)"
    )
    dropout: float = Field(0.1, ge=0, lt=1, description="MC-dropout U-Net: dropout rate, active at inference")
    latent_channels: int = Field(2, ge=1, le=64, description="PHiSeg: channels of each latent level")
    kl_weight: float = Field(1.0, ge=0, le=100, description="PHiSeg: weight of the KL term")
    samples: int = Field(
        10, ge=1, le=200, description="MC-dropout / PHiSeg: samples drawn at inference (paper: 50 for PHiSeg)"
    )


class AugmentConfig(_Model):
    """Augmentations of the normal images before synthesis (paper Table 2), each switchable."""

    scaling: bool = Field(False, description="random isotropic scaling")
    scale_range: tuple[float, float] = Field((0.9, 1.1), description="scaling factor range")
    rotation: bool = Field(False, description="random rotation")
    rotation_degrees: float = Field(10.0, ge=0, le=180, description="rotation range +- degrees (paper: 10)")
    elastic: bool = Field(False, description="random elastic deformation")
    elastic_alpha: float = Field(8.0, ge=0, le=100, description="elastic: displacement magnitude in pixels")
    elastic_sigma: float = Field(0.08, gt=0, le=1, description="elastic: smoothness, fraction of the image side")

    @model_validator(mode="after")
    def _validate(self) -> "AugmentConfig":
        _check_range("augment.scale_range", self.scale_range, 0.25, 4.0)
        return self


class DataConfig(_Model):
    """Where normal training images come from."""

    train: str | None = Field(
        None,
        description="folder of radiographs, an annotations CSV (rows with split=train "
        "and, when a label column exists, label=normal), or a CT series folder / volume file",
    )
    boxes: str | None = Field(None, description="CT: lesion boxes (LIDC XML or CSV) for the lesion-margin rule")
    mask: str | None = Field(
        None,
        description="placement masks for synthesis.placement=mask: a .npy stack (N, H, W) "
        "aligned with the training images (what the viewer writes from a Labels layer), or, for "
        "a single CT series / volume, a mask volume of the scan's shape",
    )
    lesion_margin: int = Field(
        5, ge=0, le=100, description="CT: slices within this many of a lesion are not normal (paper: ~5)"
    )
    modality: Literal["CT", "radiograph"] | None = Field(
        None,
        description="the modality of the training images where the data does not say (a pre-processed .npy "
        "stack); recorded in checkpoints, and prediction warns on a scan of another modality",
    )
    image_size: int = Field(256, ge=32, le=2048, description="training images are resized to size x size (paper: 512)")
    val_fraction: float = Field(0.1, ge=0, lt=1, description="normal images held out for the validation set")
    val_samples: int = Field(32, ge=1, le=10000, description="fixed, seeded synthetic validation samples")
    augment: AugmentConfig = Field(default_factory=AugmentConfig)


class TrainingConfig(_Model):
    """The step-based trainer (paper: 100,000 steps, batch 16, 512x512, Adam, best-Dice checkpoint)."""

    steps: int = Field(100_000, ge=1, le=10_000_000, description="optimisation steps")
    batch_size: int = Field(16, ge=1, le=1024, description="images per step (per process under torchrun)")
    lr: float = Field(1e-3, gt=0, le=1, description="peak learning rate (Adam)")
    weight_decay: float = Field(0.0, ge=0, le=1)
    warmup_steps: int = Field(100, ge=0, description="linear warm-up, then cosine decay to lr_min")
    lr_min: float = Field(1e-5, ge=0, description="final learning rate of the cosine schedule")
    loss: Literal["bce_dice", "bce", "dice", "mse"] = Field("bce_dice", description="loss on the continuous label")
    confidence_weighting: bool = Field(
        False,
        description="weight each pixel's loss by exp(-gamma * rater std), "
        "normalised to mean 1 (the paper's future work)",
    )
    confidence_gamma: float = Field(5.0, ge=0, le=1000, description="gamma of the confidence weighting")
    val_every: int = Field(500, ge=1, description="validate (and checkpoint) every N steps")
    keep_every: int | None = Field(
        None,
        ge=1,
        description="also keep a copy of the state every N steps as "
        "step_NNNNNNN.pt (checkpoint selection on real lesions afterwards)",
    )
    select: Literal["val_dice", "reference", "heldout"] = Field(
        "val_dice",
        description="which checkpoint becomes best.pt: best synthetic validation Dice (the paper), best "
        "pixel AUROC on a small labelled reference set from another dataset (training.reference), or best Dice on "
        "a held-out anomaly type never trained on (training.heldout; label-free, after Baugh et al. 2023)",
    )
    reference: str | None = Field(
        None,
        description="select=reference: an annotations CSV with lesion boxes (e.g. the "
        "NIH radiographs); its rows with boxes (and its normals) are scored at each validation",
    )
    reference_labels: list[str] | None = Field(
        None, description="select=reference: keep only boxes of these findings (e.g. [Nodule, Mass]); None = every box"
    )
    heldout: dict[str, Any] = Field(
        default_factory=lambda: {"method": "fpi"},
        description="select=heldout: synthesis "
        "settings (overrides of the training synthesis) of the held-out validation task",
    )
    log_every: int = Field(10, ge=1, description="log a line every N steps")
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N")
    amp: bool = Field(
        True, description="bf16 autocast on CUDA and on CPUs with native bf16 (AVX512-BF16 / AMX); fp32 elsewhere"
    )
    channels_last: bool = Field(
        True, description="channels_last memory format where the bf16 path runs (CUDA, native-bf16 CPUs)"
    )
    compile: Literal["auto", "always", "never"] = Field(
        "auto",
        description="torch.compile the training step (forward + backward): auto = where the bf16 path runs "
        "and the run has at least 2,000 steps (compiling takes about a minute on two cores; measured 7-12 % faster "
        "per step on an AVX512-BF16 CPU), not under torchrun; falls back to eager, with a log record, if compiling "
        "fails (true / false are read as always / never)",
    )
    synthesis_on_device: bool = Field(True, description="run the batched torch synthesis on the training device")
    out_dir: str = Field("runs/ppii", description="checkpoints and the JSON-lines log go here")
    num_threads: int | None = Field(None, ge=1, le=256, description="CPU threads for torch (None: torch's default)")

    @field_validator("compile", mode="before")
    @classmethod
    def _compile_bool(cls, v):
        return {True: "always", False: "never"}.get(v, v) if isinstance(v, bool) else v

    @model_validator(mode="after")
    def _validate(self) -> "TrainingConfig":
        import re

        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.lr_min > self.lr:
            raise ValueError(f"lr_min ({self.lr_min}) must not exceed lr ({self.lr})")
        return self


class PPIIConfig(_Model):
    """The one configuration object: widget, CLI and trainer all read it."""

    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    synthesis: SynthesisConfig = Field(default_factory=SynthesisConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    seed: int = Field(0, ge=0, description="seed of every random choice")

    # -------------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str | Path | None = None) -> "PPIIConfig":
        try:
            return cls.model_validate(data or {})
        except ValidationError as exc:
            raise InputError(_format_validation(exc), source) from None

    @classmethod
    def load(cls, path: str | Path) -> "PPIIConfig":
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise InputError(f"cannot read configuration ({exc.strerror})", path) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InputError(f"not valid YAML/JSON: {str(exc).splitlines()[0]}", path) from None
        if isinstance(data, dict) and "config" in data and isinstance(data["config"], dict):
            data = data["config"]  # a parameters JSON written by `ppii synthesize`
        if not isinstance(data, dict):
            raise InputError("a configuration must be a mapping of sections", path)
        return cls.from_dict(data, source=path)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def with_values(self, values: dict[str, Any]) -> "PPIIConfig":
        """A validated copy with ``{"section.key": value}`` set as given (no YAML parsing: a path such as
        ``2024`` or ``on`` stays the string it is)."""
        data = self.to_dict()
        for key, value in values.items():
            node = data
            parts = key.split(".")
            for p in parts[:-1]:
                if not isinstance(node.get(p), dict):
                    raise InputError(f"unknown configuration section {p!r} in {key!r}")
                node = node[p]
            if parts[-1] not in node:
                raise InputError(f"unknown configuration key {key!r} (known: {', '.join(sorted(node))})")
            node[parts[-1]] = str(value) if isinstance(value, Path) else value
        return PPIIConfig.from_dict(data)

    def with_overrides(self, overrides: list[str] | None) -> "PPIIConfig":
        """Apply ``section.key=value`` overrides (values parsed as YAML: ``[1, 5]``, ``true``, ``0.1``)."""
        values: dict[str, Any] = {}
        for item in overrides or []:
            if "=" not in item:
                raise InputError(f"override {item!r} is not of the form key=value")
            key, raw = item.split("=", 1)
            try:
                values[key.strip()] = yaml.safe_load(raw)
            except yaml.YAMLError:
                values[key.strip()] = raw
        return self.with_values(values)


def _format_validation(exc: ValidationError) -> str:
    msgs = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "config"
        msg = err["msg"].removeprefix("Value error, ")
        msgs.append(f"{loc}: {msg}")
    return "invalid configuration: " + "; ".join(msgs)
