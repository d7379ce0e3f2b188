# SPDX-License-Identifier: BSD-3-Clause
"""Synthetic anomalies: FPI, PII, NSA and P-PII behind one interface, on NumPy or torch.

>>> from napari_ppii.synthesis import make_synthesizer
>>> result = make_synthesizer().sample(image, rng=0)      # P-PII with the paper's defaults
>>> result.image, result.label, result.variance, result.boxes
"""

from __future__ import annotations

from .settings import SynthesisConfig, method_specific_fields
from .base import Synthesizer, SynthesisResult
from .plan import AnomalySpec
from .fpi import FPI
from .nsa import NSA
from .pii import PII
from .ppii import PPII

METHODS: dict[str, type[Synthesizer]] = {}


def register_method(
    cls: type[Synthesizer], *, defaults: dict | None = None, paper: dict | None = None, params=None
) -> type[Synthesizer]:
    """Make a synthesis method known everywhere a method is chosen -- ``ppii synthesize --method``, the
    preview's method list and controls, training, YAML configurations -- without touching the package
    (see docs/adding_a_method.md); the four built-in methods are registered the same way.  ``cls``: a
    :class:`Synthesizer` subclass with ``method`` (its name), ``plan_image`` and ``render``; ``params``: a
    pydantic model of its own parameters (default ``cls.params_model``; its ``shared_defaults`` and
    ``paper`` class variables, where it has them, give the next two); ``defaults``: values for the
    shared fields that default to None (patch_size, square); ``paper``: the published settings
    (:meth:`SynthesisConfig.paper`).  Returns ``cls``."""
    from .settings import METHOD_DEFAULTS, METHOD_NAMES, METHOD_PARAMS, PAPER_SYNTHESIS, MethodParams

    name = getattr(cls, "method", None)
    if not isinstance(name, str) or not name or not issubclass(cls, Synthesizer):
        raise TypeError("register_method takes a Synthesizer subclass with a method name")
    if params is not None:
        cls.params_model = params
    model = cls.params_model
    METHODS[name] = cls
    if name not in METHOD_NAMES:
        METHOD_NAMES.append(name)
    METHOD_PARAMS[name] = model
    METHOD_DEFAULTS[name] = dict(getattr(model, "shared_defaults", MethodParams.shared_defaults)) | dict(defaults or {})
    PAPER_SYNTHESIS[name] = {"method": name} | dict(getattr(model, "paper", {})) | dict(paper or {})
    return cls


for _cls in (PPII, PII, FPI, NSA):
    register_method(_cls)


def unregister_method(name: str) -> None:
    """Forget a registered method (the four built-in ones stay)."""
    from .settings import METHOD_DEFAULTS, METHOD_NAMES, METHOD_PARAMS, PAPER_SYNTHESIS

    if name in ("ppii", "pii", "fpi", "nsa"):
        raise ValueError(f"{name} is built in")
    METHODS.pop(name, None)
    if name in METHOD_NAMES:
        METHOD_NAMES.remove(name)
    for table in (METHOD_DEFAULTS, PAPER_SYNTHESIS, METHOD_PARAMS):
        table.pop(name, None)


def applicable(key: str, config) -> bool:
    """Does the configuration key ``key`` (``synthesis.<field>``, or any other section's) affect what
    ``config`` (a :class:`~napari_ppii.config.PPIIConfig`) synthesises?  The preview shows only those."""
    if not key.startswith("synthesis."):
        return True
    cls = METHODS.get(config.synthesis.method)
    return cls is None or cls.applies(key.split(".", 1)[1], config.synthesis)


def make_synthesizer(config: SynthesisConfig | None = None) -> Synthesizer:
    """The synthesiser for ``config.method`` (default: P-PII with the paper's defaults)."""
    config = config or SynthesisConfig()
    return METHODS[config.method](config)


__all__ = [
    "AnomalySpec",
    "FPI",
    "METHODS",
    "NSA",
    "PII",
    "PPII",
    "SynthesisResult",
    "Synthesizer",
    "applicable",
    "make_synthesizer",
    "method_specific_fields",
    "register_method",
    "unregister_method",
]
