# SPDX-License-Identifier: BSD-3-Clause
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


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_native_bf16() -> str | None:
    """The CPU's native bf16 instructions (``"amx_bf16"`` or ``"avx512_bf16"``), or None where bf16 would
    only be emulated (then bf16 autocast is slower than fp32 and the trainer stays fp32).  The environment
    variable ``PPII_CPU_BF16=0`` turns the answer off, ``=1`` forces it on."""
    import os

    forced = os.environ.get("PPII_CPU_BF16", "").strip()
    if forced in ("0", "1"):
        return "forced" if forced == "1" else None
    flags = _cpu_flags()
    for name in ("amx_bf16", "avx512_bf16"):
        if name in flags:
            return name
    return None


def fast_path(device: torch.device, amp: bool, channels_last: bool) -> dict:
    """Which precision and memory format the trainer uses on ``device``: bf16 autocast and channels_last
    on CUDA and on CPUs with native bf16 (when the configuration asks for them), fp32 / NCHW otherwise.
    Returns ``{"device": "cuda" | "cpu", "amp": bool, "channels_last": bool, "path": str}`` (``path`` says why,
    for the log)."""
    if device.type == "cuda":
        return {
            "device": "cuda",
            "amp": amp,
            "channels_last": channels_last,
            "path": f"cuda {'bf16' if amp else 'fp32'}{' channels_last' if channels_last else ''}",
        }
    native = cpu_native_bf16()
    if native is None:
        return {"device": "cpu", "amp": False, "channels_last": False, "path": "cpu fp32 (no native bf16 on this CPU)"}
    return {
        "device": "cpu",
        "amp": amp,
        "channels_last": channels_last,
        "path": f"cpu {'bf16 (' + native + ')' if amp else 'fp32'}{' channels_last' if channels_last else ''}",
    }


# glibc's mallopt parameters (malloc.h) and the values the trainer sets: every step allocates and frees the
# same large activations; by default glibc returns them to the OS (mmap for blocks over its threshold, heap
# trimming for the rest) and the next step faults the pages back in and zeroes them -- about 25,000 page
# faults per (eager bf16) step at the Table 1 setting; retained, the default step ran 1.04x as fast, fp32 1.10x
# (benchmarks/README.md).
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
RETAIN_SETTINGS = ((_M_MMAP_THRESHOLD, 32 << 20), (_M_TRIM_THRESHOLD, 512 << 20), (_M_TOP_PAD, 64 << 20))


def retain_freed_memory() -> str | None:
    """Keep freed memory in the process for reuse instead of handing it back to the OS after every step
    (glibc only: blocks up to 32 MiB come from the heap, which is trimmed only beyond 512 MiB free, grown 64 MiB
    at a time).  Process-wide and not undone: the trainer calls it where it owns the process (``ppii train``,
    the napari dock's training subprocess, or a Python session that constructs a CPU trainer), unless
    ``training.retain_memory=false``.  Returns what was set, for the log, or None where it cannot be set
    (not glibc, or mallopt refused a value)."""
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = all(libc.mallopt(ctypes.c_int(k), ctypes.c_int(v)) == 1 for k, v in RETAIN_SETTINGS)
    except (OSError, AttributeError):
        return None
    return "glibc, freed memory retained (mmap threshold 32 MiB, trim threshold 512 MiB)" if ok else None
