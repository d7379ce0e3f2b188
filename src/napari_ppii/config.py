# SPDX-License-Identifier: BSD-3-Clause
"""Configuration objects shared by the napari widgets, the ``ppii`` CLI and the trainer.

Validated once, at the edge: every field has the paper's / method-notes default and a documented range,
and a bad value or combination raises :class:`~napari_ppii.errors.InputError` with a message naming the
field.  Configurations load from and save to YAML (or JSON), and ``key=value`` overrides
(``synthesis.n_raters=[1,5]``) apply on top, the same way for the CLI and the widgets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .errors import InputError

#: The synthesis methods a configuration may name: the four built in, and any registered with
#: :func:`napari_ppii.synthesis.register_method` (which adds to this list and to the tables below).
METHOD_NAMES: list[str] = ["ppii", "pii", "fpi", "nsa"]
Method = str
#: Each method's own parameters (``synthesis.params``): a pydantic model per method name, defined in the
#: method's module (``synthesis/ppii.py``: ``PPIIParams``, ...) and filled in by ``register_method``.
METHOD_PARAMS: dict[str, type[BaseModel]] = {}
#: Per method: values of the shared fields that default to ``None`` (patch_size, square) -- the method's
#: parameter model's ``shared_defaults`` (filled in by ``register_method``).
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {}
#: Per method: the paper's / public code's settings, shared fields and own parameters
#: (``SynthesisConfig.paper(method)``) -- the parameter model's ``paper`` (filled in by ``register_method``).
PAPER_SYNTHESIS: dict[str, dict[str, Any]] = {}
Placement = Literal["anywhere", "lungs", "mask"]


def _registered() -> None:
    """The built-in methods register themselves when :mod:`napari_ppii.synthesis` is imported."""
    if "ppii" not in METHOD_PARAMS:
        import napari_ppii.synthesis  # noqa: F401


def param_owners(name: str) -> list[str]:
    """The methods that have ``name`` among their own parameters."""
    _registered()
    return [m for m, model in METHOD_PARAMS.items() if name in model.model_fields]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def check_range(name: str, lo_hi, lo_bound, hi_bound) -> None:
    lo, hi = lo_hi
    if not (lo_bound <= lo <= hi <= hi_bound):
        raise ValueError(f"{name} must satisfy {lo_bound} <= low <= high <= {hi_bound}, got ({lo}, {hi})")


class MethodParams(BaseModel):
    """A synthesis method's own parameters (``synthesis.params``), one subclass per method in the method's
    module, with the paper's values beside the defaults.  Fields shared by every method (placement, patch
    sizes, source rescaling, clipping, ...) stay in :class:`SynthesisConfig`."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    #: values of the shared fields that default to None (patch_size, square) for this method
    shared_defaults: ClassVar[dict[str, Any]] = {"patch_size": (0.04, 0.16), "square": False}
    #: the published settings, shared fields and own parameters (:meth:`SynthesisConfig.paper`)
    paper: ClassVar[dict[str, Any]] = {}


class NoParams(MethodParams):
    """A method without parameters of its own."""


class ChangeLabel(MethodParams):
    """A label set where the image changed (PII, FPI, NSA)."""

    label_tolerance: float = Field(
        1e-3,
        ge=0,
        le=1,
        description="a pixel is labelled where it changed by more than this (NSA: 1 grey level, 1/255)",
    )


class LogisticLabel(MethodParams):
    """NSA's logistic label of the change (P-PII's label_mode logistic, NSA)."""

    label_k: float = Field(
        100.0,
        gt=0,
        le=10000,
        description="logistic label: steepness k per unit intensity (NSA: 1/6 per grey level = 42.5)",
    )
    label_x0: float = Field(
        0.04,
        ge=0,
        le=1,
        description="logistic label: the change labelled ~0.5 (a real JSRT "
        "nodule differs from its surroundings by ~0.04; NSA: 20 grey levels = 0.078)",
    )


class SynthesisConfig(_Model):
    """Parameters of the synthetic-anomaly generator (P-PII, PII, FPI, NSA, registered methods).

    Defaults are calibrated for chest scans (issue 10): anomalies inside the lung fields, nodule-sized,
    about as contrasted and as textured as real nodules (measured with ``ppii realism`` against the NIH
    Nodule/Mass boxes), labelled by a logistic of the change.  The paper's settings:
    :meth:`paper` (or ``configs/paper_ppii.yaml``).

    The fields here are every method's (placement, patch sizes, source rescaling, clipping, ...); a
    method's own parameters are its parameter model in ``params`` (``PPIIParams`` in ``synthesis/ppii.py``,
    ...), read as ``config.n_raters`` as well as ``config.params.n_raters`` and set as
    ``synthesis.n_raters`` (YAML and ``--set``) or ``synthesis.params.n_raters``.  Files written before the
    parameters moved (flat keys) load: each key goes to the method that owns it; another method's key is
    ignored, as it always was.  Ranges ``(low, high)`` are sampled uniformly (integers inclusive at both
    ends).  Sizes are fractions of the image extent along each axis.
    """

    method: Method = Field(
        "ppii",
        description="ppii (paper), pii (Tan et al. 2021), fpi (Tan et al. 2020), nsa "
        "(Schlueter et al. 2022), or a method registered with napari_ppii.synthesis.register_method",
    )
    params: SerializeAsAny[MethodParams | BaseModel] | None = Field(
        None,
        description="the method's own parameters: its parameter model (synthesis/ppii.py PPIIParams, ...; a "
        "registered method's own), defaults filled in; each is also read and set as synthesis.<name>",
    )
    patch_size: tuple[float, float] | None = Field(
        None,
        description="patch side as a fraction of the image extent per axis, in (0, 0.5]; "
        "None = method default (P-PII: 0.05-0.2; PII/FPI: 0.1-0.4, square)",
    )
    square: bool | None = Field(None, description="one side for all axes (PII/FPI default) or one per axis")
    core_fraction: float = Field(0.8, gt=0, le=1, description="patch centres lie in this central fraction of each axis")
    pairwise: bool = Field(
        True, description="take the source patch from another image of the batch (else the same image)"
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
    source_rescale: tuple[float, float] = Field(
        (0.7, 1.3),
        description="the source patch is taken at side / r, r ~ U[low, high], and resized to the "
        "target side (NSA: 0.7-1.3; 1-1 = no rescaling)",
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

    @model_validator(mode="before")
    @classmethod
    def _own_parameters(cls, data):
        """Each method's own parameters into ``params``: from ``params`` (a mapping or another method's
        model: same-named values carry over) and from flat keys (files written before the move, ``--set
        synthesis.n_raters=...``); a key owned by another method only is dropped, as it was always ignored."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        method = data.get("method", "ppii")
        _registered()
        model = METHOD_PARAMS.get(method) if isinstance(method, str) else None
        given = data.pop("params", None)
        carried = isinstance(given, BaseModel) and type(given) is not model
        own = given.model_dump() if isinstance(given, BaseModel) else dict(given or {})
        for k in [k for k in data if k not in cls.model_fields]:
            if model is not None and k in model.model_fields:
                own[k] = data.pop(k)
            elif param_owners(k):
                data.pop(k)
        if model is not None:
            others = {k for m in METHOD_PARAMS.values() for k in m.model_fields} - set(model.model_fields)
            if carried or any(k in others for k in own):  # switched from another method: what fits carries over
                own = {k: v for k, v in own.items() if k not in others}
        data["params"] = own
        return data

    @field_validator("params", mode="before")
    @classmethod
    def _params_of_the_method(cls, v, info: ValidationInfo):
        model = METHOD_PARAMS.get(info.data.get("method"))
        if model is None:
            return None  # an unknown method: its own error says so
        if isinstance(v, model):
            return v
        try:
            return model.model_validate(v if isinstance(v, dict) else {})
        except ValidationError as exc:
            raise ValueError(
                "; ".join(
                    f"{'.'.join(str(x) for x in e['loc']) or info.data.get('method')}: "
                    f"{e['msg'].removeprefix('Value error, ')}"
                    for e in exc.errors()
                )
            ) from None

    @model_validator(mode="after")
    def _validate(self) -> "SynthesisConfig":
        check_range("source_rescale", self.source_rescale, 0.25, 4.0)
        if self.patch_gamma is not None and not (0 <= self.patch_gamma[0] <= 0.5 and 0 < self.patch_gamma[1] <= 0.5):
            raise ValueError(
                f"patch_gamma (offset, scale) must satisfy 0 <= offset <= 0.5, 0 < scale <= 0.5, got {self.patch_gamma}"
            )
        if self.patch_size is not None:
            lo, hi = self.patch_size
            if not (0 < lo <= hi <= 0.5):
                raise ValueError(f"patch_size must satisfy 0 < low <= high <= 0.5, got ({lo}, {hi})")
        return self

    def own_parameter_names(self) -> list[str]:
        """The chosen method's own parameters (the fields of ``params``)."""
        return list(type(self.params).model_fields) if self.params is not None else []

    def __getattr__(self, name: str):
        # the method's own parameters read as attributes: config.n_raters is config.params.n_raters
        if not name.startswith("_"):
            params = self.__dict__.get("params")
            if params is not None and name in type(params).model_fields:
                return getattr(params, name)
            owners = param_owners(name)
            if owners:
                raise AttributeError(
                    f"{name} is a parameter of {', '.join(owners)}, not of {self.__dict__.get('method')}"
                )
        return super().__getattr__(name)

    @classmethod
    def paper(cls, method: str = "ppii", **overrides) -> "SynthesisConfig":
        """The paper's / public sketch's settings of ``method`` (anomalies anywhere, strong, clipped)."""
        _registered()
        return cls(**(PAPER_SYNTHESIS[method] | overrides))

    def resolved(self) -> "SynthesisConfig":
        """A copy with every ``None`` replaced by the method's default."""
        _registered()
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
        check_range("augment.scale_range", self.scale_range, 0.25, 4.0)
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
        ``2024`` or ``on`` stays the string it is).  A synthesis method's own parameter is set as
        ``synthesis.<name>`` or ``synthesis.params.<name>``; it must be one of the method chosen (after
        these values)."""
        data = self.to_dict()
        own: list[str] = []
        for key, value in values.items():
            value = str(value) if isinstance(value, Path) else value
            parts = key.split(".")
            if parts[0] == "synthesis" and len(parts) in (2, 3) and parts[-1] not in SynthesisConfig.model_fields:
                if len(parts) == 2 or parts[1] == "params":
                    if param_owners(parts[-1]):
                        data["synthesis"].setdefault("params", {})
                        data["synthesis"]["params"] = dict(data["synthesis"]["params"] or {}) | {parts[-1]: value}
                        own.append(parts[-1])
                        continue
            node = data
            for p in parts[:-1]:
                if not isinstance(node.get(p), dict):
                    raise InputError(f"unknown configuration section {p!r} in {key!r}")
                node = node[p]
            if parts[-1] not in node:
                known = sorted(node) + (self.synthesis.own_parameter_names() if parts[0] == "synthesis" else [])
                raise InputError(f"unknown configuration key {key!r} (known: {', '.join(sorted(known))})")
            node[parts[-1]] = value
        method = data["synthesis"].get("method")
        for name in own:
            owners = param_owners(name)
            if method in METHOD_PARAMS and method not in owners:
                raise InputError(
                    f"synthesis.{name} is a parameter of {', '.join(owners)}; synthesis.method is {method}"
                )
        if own and method in METHOD_PARAMS:  # the values set win over what carries over from another method
            data["synthesis"]["params"] = {
                k: v for k, v in data["synthesis"]["params"].items() if k in METHOD_PARAMS[method].model_fields
            }
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
