# SPDX-License-Identifier: BSD-3-Clause
"""Test-time augmentation of :class:`napari_ppii.predict.Predictor`: its kinds and per-modality defaults.

Kept apart from :mod:`napari_ppii.predict` (which loads torch) so that the command line's parser and the
docks can offer the choice without loading torch.
"""

from __future__ import annotations

from .errors import InputError

#: ``none``; ``mirror`` (each image / slice also predicted mirrored left-right, that map mirrored back,
#: the two averaged as two members of an ensemble); ``mirror_zoom`` (mirror's two views, and the same two
#: with the model's input enlarged by :data:`ZOOM`, their maps brought back to the input's size: four members)
TTA_KINDS = ("none", "mirror", "mirror_zoom")

#: The enlargement of ``mirror_zoom``'s second pair of views (fixed before it was scored, not swept)
ZOOM = 1.25

#: The default per modality the model was trained on (``auto``), each adopted by a rule fixed before it was
#: scored, on NIH Nodule/Mass boxes (radiographs) or LIDC-IDRI-0002 (CT): benchmarks/README.md, "Mirror
#: test-time augmentation".  A model that does not record its modality gets ``none``.
DEFAULT_TTA = {"radiograph": "mirror", "CT": "mirror"}


def resolve_tta(tta: str, modality: str | None) -> str:
    """``tta`` with ``auto`` replaced by the default for ``modality``; an InputError for an unknown kind."""
    if tta == "auto":
        tta = DEFAULT_TTA.get(modality or "", "none")
    if tta not in TTA_KINDS:
        raise InputError(f"test-time augmentation must be auto or one of {', '.join(TTA_KINDS)}, got {tta!r}")
    return tta


def describe_auto() -> str:
    """What ``auto`` means, for help texts and tooltips."""
    return ", ".join(f"{v} for {k}" for k, v in DEFAULT_TTA.items()) + " models"
