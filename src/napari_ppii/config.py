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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import InputError

Method = Literal["ppii", "pii", "fpi"]

#: Per-method defaults for fields that default to ``None`` in :class:`SynthesisConfig`.
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    # P-PII (paper section 2; method-notes: side U[0.05, 0.2] of the extent per axis)
    "ppii": {"patch_size": (0.05, 0.2), "square": False},
    # PII / FPI: square patch, half-width U[0.05 H, 0.2 H] => side U[0.1, 0.4] of the extent
    "pii": {"patch_size": (0.1, 0.4), "square": True},
    "fpi": {"patch_size": (0.1, 0.4), "square": True},
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def _check_range(name: str, lo_hi, lo_bound, hi_bound) -> None:
    lo, hi = lo_hi
    if not (lo_bound <= lo <= hi <= hi_bound):
        raise ValueError(f"{name} must satisfy {lo_bound} <= low <= high <= {hi_bound}, got ({lo}, {hi})")


class SynthesisConfig(_Model):
    """Parameters of the synthetic-anomaly generator (FPI, PII, P-PII).

    Ranges ``(low, high)`` are sampled uniformly (integers inclusive at both ends).  Fields used by one
    method only are ignored by the others.  Sizes are fractions of the image extent along each axis.
    """

    method: Method = Field("ppii", description="ppii (paper), pii (Tan et al. 2021) or fpi (Tan et al. 2020)")
    patch_size: tuple[float, float] | None = Field(
        None, description="patch side as a fraction of the image extent per axis, in (0, 0.5]; "
        "None = method default (P-PII: 0.05-0.2; PII/FPI: 0.1-0.4, square)")
    square: bool | None = Field(None, description="one side for all axes (PII/FPI default) or one per axis")
    core_fraction: float = Field(0.8, gt=0, le=1, description="patch centres lie in this central fraction of each axis")
    n_anomalies: tuple[int, int] = Field((1, 10), description="P-PII: anomalies per image, 1-50 (paper: one to ten)")
    n_raters: tuple[int, int] = Field((1, 9), description="P-PII: rater masks per image, 1-32 (public sketch: 1-9)")
    gradient_scale: tuple[float, float] = Field(
        (10.0, 20.0), description="P-PII: up-scaling of the source gradients, uniform in [low, high), 0-100 "
        "(public sketch: 10-20)")
    rater_radius: float = Field(0.25, gt=0, le=0.5, description="P-PII: mean rater radius, fraction of the patch's shortest side")
    rater_radius_std: float = Field(1.0, ge=0, le=20, description="P-PII: std of the rater radius in pixels")
    rater_centre_std: float = Field(1 / 12, ge=0, le=0.5, description="P-PII: std of the rater centre, fraction of the patch side")
    mixed_gradients: bool = Field(True, description="P-PII: keep the larger of scaled source and target gradient")
    alpha: tuple[float, float] = Field((0.05, 0.95), description="PII/FPI: interpolation factor range, in [0, 1]")
    pairwise: bool = Field(True, description="take the source patch from another image of the batch (else the same image)")
    label_scale: float = Field(1.0, gt=0, le=100, description="P-PII: label = clip(label_scale * |target - mean|, 0, 1)")
    label_tolerance: float = Field(1e-3, ge=0, le=1, description="PII/FPI: a pixel is labelled where it changed by more than this")
    clip: bool = Field(True, description="clip every blended image to the target's intensity range")
    size_step: int = Field(1, ge=1, le=64, description="round patch sides up to a multiple of this (fewer distinct shapes for GPU batching)")
    fast_sizes: bool = Field(True, description="round patch sides up (a few pixels at most) so the DST length "
                             "2 (side - 1) is FFT-friendly (5-smooth): several times faster solves")
    min_patch_side: int = Field(5, ge=3, le=64, description="smallest patch side in pixels")
    max_tries: int = Field(50, ge=1, le=1000, description="P-PII: placement attempts per anomaly (target boxes never overlap)")

    @model_validator(mode="after")
    def _validate(self) -> "SynthesisConfig":
        if self.patch_size is not None:
            lo, hi = self.patch_size
            if not (0 < lo <= hi <= 0.5):
                raise ValueError(f"patch_size must satisfy 0 < low <= high <= 0.5, got ({lo}, {hi})")
        _check_range("n_anomalies", self.n_anomalies, 1, 50)
        _check_range("n_raters", self.n_raters, 1, 32)
        _check_range("gradient_scale", self.gradient_scale, 0.0, 100.0)
        if self.gradient_scale[1] <= 0:
            raise ValueError("gradient_scale must allow a positive scale")
        _check_range("alpha", self.alpha, 0.0, 1.0)
        return self

    def resolved(self) -> "SynthesisConfig":
        """A copy with every ``None`` replaced by the method's default."""
        upd = {k: v for k, v in METHOD_DEFAULTS[self.method].items() if getattr(self, k) is None}
        return self.model_copy(update=upd)


WindowName = Literal["lung", "mediastinum", "bone", "soft_tissue", "header"]


class PreprocessConfig(_Model):
    """Scan -> network input: window (CT), normalise to [0, 1], histogram-equalise, resize."""

    window: WindowName | None = Field("lung", description="HU window preset for CT; ignored for radiographs")
    normalise: Literal["minmax", "percentile"] = Field("percentile", description="radiographs: min/max or 0.5/99.5 percentiles to [0, 1]")
    equalise: bool = Field(True, description="histogram equalisation (the paper, after MIMIC-CXR-JPG)")
    size: int | None = Field(None, ge=16, le=4096, description="resize 2D images / slices to size x size (None = keep)")


class PPIIConfig(_Model):
    """The one configuration object: widget, CLI and trainer all read it."""

    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    synthesis: SynthesisConfig = Field(default_factory=SynthesisConfig)
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

    def with_overrides(self, overrides: list[str] | None) -> "PPIIConfig":
        """Apply ``section.key=value`` overrides (values parsed as YAML: ``[1, 5]``, ``true``, ``0.1``)."""
        data = self.to_dict()
        for item in overrides or []:
            if "=" not in item:
                raise InputError(f"override {item!r} is not of the form key=value")
            key, raw = item.split("=", 1)
            try:
                value = yaml.safe_load(raw)
            except yaml.YAMLError:
                value = raw
            node = data
            parts = key.strip().split(".")
            for p in parts[:-1]:
                if not isinstance(node.get(p), dict):
                    raise InputError(f"unknown configuration section {p!r} in override {item!r}")
                node = node[p]
            if parts[-1] not in node:
                raise InputError(f"unknown configuration key {key!r} (known: {', '.join(sorted(node))})")
            node[parts[-1]] = value
        return PPIIConfig.from_dict(data)


def _format_validation(exc: ValidationError) -> str:
    msgs = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "config"
        msg = err["msg"].removeprefix("Value error, ")
        msgs.append(f"{loc}: {msg}")
    return "invalid configuration: " + "; ".join(msgs)
