"""Device resolution shared by the trainer and inference."""

from __future__ import annotations

import torch

from .errors import InputError


def resolve_device(spec: str, local_rank: int = 0) -> torch.device:
    """``auto`` (CUDA when present), ``cpu``, ``cuda`` (this process's local rank) or ``cuda:N``."""
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"device {spec!r} asked for, but no CUDA device is available (use --device cpu)")
        idx = int(spec.split(":")[1]) if ":" in spec else local_rank
        if idx >= torch.cuda.device_count():
            raise InputError(f"device {spec!r}: only {torch.cuda.device_count()} CUDA device(s) found")
        return torch.device("cuda", idx)
    return torch.device("cpu")
