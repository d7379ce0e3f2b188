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


def make_synthesizer(config: SynthesisConfig | None = None) -> Synthesizer:
    """The synthesiser for ``config.method`` (default: P-PII with the paper's defaults)."""
    config = config or SynthesisConfig()
    return METHODS[config.method](config)


__all__ = ["AnomalySpec", "FPI", "METHODS", "NSA", "PII", "PPII", "SynthesisResult", "Synthesizer", "make_synthesizer"]
