# SPDX-License-Identifier: BSD-3-Clause
"""Synthetic anomalies: FPI, PII, NSA and P-PII behind one interface, on NumPy or torch.

>>> from napari_ppii.synthesis import make_synthesizer
>>> result = make_synthesizer().sample(image, rng=0)      # P-PII with the paper's defaults
>>> result.image, result.label, result.variance, result.boxes
"""

from __future__ import annotations

from ..config import SynthesisConfig
from .base import Synthesizer, SynthesisResult
from .plan import AnomalySpec
from .fpi import FPI
from .nsa import NSA
from .pii import PII
from .ppii import PPII

METHODS: dict[str, type[Synthesizer]] = {"ppii": PPII, "pii": PII, "fpi": FPI, "nsa": NSA}


def METHOD_SPECIFIC() -> frozenset[str]:
    """Fields that some method reads and others do not (every other synthesis field is shared)."""
    return frozenset().union(*(cls.parameters for cls in METHODS.values()))


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


__all__ = ["AnomalySpec", "FPI", "METHODS", "METHOD_SPECIFIC", "NSA", "PII", "PPII", "SynthesisResult", "Synthesizer",
           "applicable", "make_synthesizer"]
