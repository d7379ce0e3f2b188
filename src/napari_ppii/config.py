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
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import InputError

from .synthesis.settings import (  # noqa: F401 -- the synthesis settings, re-exported with the sections
    METHOD_DEFAULTS,
    METHOD_NAMES,
    METHOD_PARAMS,
    PAPER_SYNTHESIS,
    ChangeLabel,
    LogisticLabel,
    MethodParams,
    NoParams,
    SynthesisConfig,
    check_range,
    param_owners,
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


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
    min_mask_share: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="leave out training (and validation) images whose placement mask covers less than this "
        "share of the image: CT slices above or below the lungs, where placement in the lungs finds no room "
        "and an anomaly lands outside them or not at all; 0 keeps every image, placement=anywhere ignores it",
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
    fast_layers: bool = Field(
        True,
        description="on the CPU's channels_last path, compute the U-Net's 2x2 up-convolutions as a 1x1 convolution "
        "and a rearrangement, its 1x1 head as a matrix product and the decoder's concatenations part by part (each "
        "part convolved with its slice of the weights, the results added): the same parameters and checkpoints, "
        "the same results in fp32 to rounding, bf16 rounding of different kernels; the default step ran 1.06x as "
        "fast at the Table 1 setting on two cores (oneDNN's strided-deconvolution weight gradient and the "
        "channels_last concatenation are slow there). false: the kernels of every run before this setting "
        "existed, whose figures it reproduces",
    )
    compile: Literal["auto", "always", "never"] = Field(
        "auto",
        description="torch.compile the training step (forward + backward): auto = on CUDA's bf16 path for runs of "
        "at least 5,000 steps, not on the CPU (on an AVX512-BF16 CPU with two cores the compiled step ran 7-14 % "
        "slower than eager since freed memory is retained; before that, 3 % faster), not under torchrun; falls "
        "back to eager, with a log record, if compiling fails (true / false are read as always / never)",
    )
    synthesis_on_device: bool = Field(True, description="run the batched torch synthesis on the training device")
    prefetch: bool = Field(
        False,
        description="draw the next synthetic batch in a background thread while the current step runs (the "
        "draw uses only the data RNG, whose state before the pending draw is what a checkpoint keeps, so resume "
        "stays exact); off by default: on two CPU cores the step keeps both busy and it gained nothing (measured "
        "1.00x, the draw being 9 % of a step), it helps where a core is free",
    )
    retain_memory: bool = Field(
        True,
        description="on the CPU, keep freed memory in the process for the next step instead of returning it to the "
        "OS (glibc mallopt, process-wide; elsewhere nothing changes): at the Table 1 setting on two cores the default "
        "step ran 1.04x as fast, the fp32 step 1.10x (bench_training.py, best of 3), and the process keeps up to "
        "about 0.5 GiB more than it uses",
    )
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
