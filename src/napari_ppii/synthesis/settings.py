# SPDX-License-Identifier: BSD-3-Clause
"""The synthesis settings: :class:`SynthesisConfig` (the fields every method shares, and the chosen method's
own parameters in ``params``), the base of a method's parameter model (:class:`MethodParams`) and the
registry tables that :func:`napari_ppii.synthesis.register_method` fills.  The synthesis package's own
module, below :mod:`napari_ppii.config` (whose :class:`~napari_ppii.config.PPIIConfig` holds one): the
methods read their settings here and never import the configuration above them.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

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


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


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


def param_owners(name: str) -> list[str]:
    """The methods that have ``name`` among their own parameters."""
    return [m for m, model in METHOD_PARAMS.items() if name in model.model_fields]


def method_specific_fields() -> frozenset[str]:
    """The registered methods' own parameters (every other synthesis field is shared)."""
    return frozenset().union(*(model.model_fields for model in METHOD_PARAMS.values()))


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
        return cls(**(PAPER_SYNTHESIS[method] | overrides))

    def resolved(self) -> "SynthesisConfig":
        """A copy with every ``None`` replaced by the method's default."""
        upd = {k: v for k, v in METHOD_DEFAULTS[self.method].items() if getattr(self, k) is None}
        return self.model_copy(update=upd)
