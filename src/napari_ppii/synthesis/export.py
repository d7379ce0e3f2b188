# SPDX-License-Identifier: BSD-3-Clause
"""Writing a synthetic sample: image, label, variance, the pre-processed target, boxes and a JSON of
everything needed to reproduce it (used by ``ppii synthesize`` and the viewer's Export)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .. import __version__
from ..config import PPIIConfig
from ..io import write_array, write_boxes_csv
from ..io.scan import Scan
from .base import SynthesisResult


def export_sample(
    out: str | Path,
    target: Scan,
    result: SynthesisResult,
    cfg: PPIIConfig,
    *,
    fmt: str | None = None,
    resolved: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Write ``result`` (synthesised on the pre-processed ``target``) to ``out``; return the record."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fmt = fmt or ("nifti" if target.ndim == 3 else "tiff")
    written = {}
    for name, arr in (
        ("target", target.array),
        ("image", result.image),
        ("label", result.label),
        ("variance", result.variance),
    ):
        written[name] = write_array(arr, out / name, like=target, fmt=fmt).name
    write_boxes_csv(result.boxes, out / "boxes.csv")
    record = {
        "ppii_version": __version__,
        **extra,
        "format": fmt,
        "seed": cfg.seed,
        "config": cfg.to_dict(),
        "resolved_synthesis": resolved,
        "shape": list(target.shape),
        "spacing": list(target.spacing),
        "origin": list(target.origin),
        "files": written,
        **result.to_json(),
    }
    (out / "params.json").write_text(json.dumps(record, indent=2))
    return record
