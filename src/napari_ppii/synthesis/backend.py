# SPDX-License-Identifier: BSD-3-Clause
"""NumPy or torch, one code path: the array operations synthesis needs, on either engine.

``ops(x)`` gives the namespace of ``x``'s engine (:data:`NUMPY` or :data:`TORCH`) with the same
functions, so rendering, labels and the Poisson solve are written once and a plan renders alike on both
(NumPy in float64 on the CPU, torch on any device and dtype).  The image operations below it (smoothing,
linear resize, soft clipping) are built only from these.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..errors import InputError

Array = Any  # numpy.ndarray or torch.Tensor


def is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


class _NumPy:
    torch = False

    @staticmethod
    def arange(n: int, like):
        return np.arange(n, dtype=like.dtype)

    @staticmethod
    def const(values, like):
        return np.asarray(values, dtype=like.dtype)

    stack = staticmethod(np.stack)
    concat = staticmethod(lambda items, axis=0: np.concatenate(items, axis))
    clip = staticmethod(np.clip)
    abs = staticmethod(np.abs)
    exp = staticmethod(np.exp)
    tanh = staticmethod(np.tanh)
    where = staticmethod(np.where)
    maximum = staticmethod(np.maximum)
    # np.zeros (calloc): pages never written stay unallocated -- a CT volume's label and variance are
    # zero outside a few boxes, so they cost next to nothing until written
    zeros_like = staticmethod(lambda x: np.zeros(x.shape, x.dtype))
    copy = staticmethod(lambda x: np.array(x, copy=True))
    #: patch arithmetic in float64 on the CPU, whatever the images are stored in (float32 volumes are
    #: not copied whole to float64: only the patches are)
    exact = staticmethod(lambda x: np.asarray(x, dtype=np.float64))
    amin = staticmethod(lambda x, axis: x.min(axis))
    amax = staticmethod(lambda x, axis: x.max(axis))
    median = staticmethod(lambda x, axis: np.median(x, axis))
    take = staticmethod(lambda x, idx, axis: np.take(x, idx, axis=axis))
    cast = staticmethod(lambda x, like: x.astype(like.dtype))


class _Torch:
    torch = True

    @staticmethod
    def _t():
        import torch

        return torch

    @classmethod
    def arange(cls, n: int, like):
        return cls._t().arange(n, dtype=like.dtype, device=like.device)

    @classmethod
    def const(cls, values, like):
        return cls._t().as_tensor(np.asarray(values), dtype=like.dtype, device=like.device)

    @classmethod
    def stack(cls, items):
        return cls._t().stack(list(items))

    @classmethod
    def concat(cls, items, axis=0):
        return cls._t().cat(list(items), axis)

    @staticmethod
    def clip(x, lo, hi):
        return x.clamp(lo, hi)

    abs = staticmethod(lambda x: x.abs())
    exp = staticmethod(lambda x: x.exp())
    tanh = staticmethod(lambda x: x.tanh())
    maximum = staticmethod(lambda a, b: a.maximum(b))
    zeros_like = staticmethod(lambda x: x.new_zeros(x.shape))
    copy = staticmethod(lambda x: x.clone())
    exact = staticmethod(lambda x: x)
    amin = staticmethod(lambda x, axis: x.amin(axis))
    amax = staticmethod(lambda x, axis: x.amax(axis))
    median = staticmethod(lambda x, axis: x.median(axis).values)
    cast = staticmethod(lambda x, like: x.to(like.dtype))

    @classmethod
    def where(cls, cond, a, b):
        return cls._t().where(cond, a, b)

    @classmethod
    def take(cls, x, idx, axis):
        return cls._t().index_select(x, axis, cls._t().as_tensor(np.asarray(idx), device=x.device))


NUMPY, TORCH = _NumPy(), _Torch()


def ops(x):
    """The operations of ``x``'s engine."""
    return TORCH if is_torch(x) else NUMPY


def to_numpy(x) -> np.ndarray:
    """A NumPy view or copy of ``x`` (a tensor comes back to the CPU)."""
    return x.detach().cpu().numpy() if is_torch(x) else np.asarray(x)


def as_work_array(images):
    """NumPy images as they are stored when floating (float32 or float64: a float32 CT volume is not
    copied to float64; the patch arithmetic is float64 regardless, see ``exact``), integers as float64;
    or a floating torch tensor (kept on its device and dtype)."""
    if is_torch(images):
        return images if images.is_floating_point() else images.float()
    arr = np.asarray(images)
    if arr.dtype.kind not in "uif":
        raise InputError(f"synthesis needs numeric images, got dtype {arr.dtype}")
    return arr if arr.dtype in (np.float32, np.float64) else arr.astype(np.float64)


def as_output(x):
    """Results: tensors as they are, NumPy as float32."""
    return x if is_torch(x) else np.asarray(x, dtype=np.float32)


def smooth(x, sigma: float, nd: int):
    """Gaussian smoothing of the last ``nd`` axes of ``x`` (NumPy or torch; edges replicated).  The same
    truncated kernel on both engines, so a plan renders alike on each."""
    if sigma <= 0:
        return x
    xp = ops(x)
    r = max(1, int(np.ceil(3.0 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k = k / k.sum()
    for ax in range(x.ndim - nd, x.ndim):
        n = x.shape[ax]
        padded = xp.take(x, np.clip(np.arange(-r, n + r), 0, n - 1), ax)
        lead = (slice(None),) * ax
        out = 0.0
        for j, w in enumerate(k):  # the taps as views (slices), not index copies: the same sums
            out = out + float(w) * padded[lead + (slice(j, j + n),)]
        x = out
    return x


def resize_linear(x, size: Sequence[int]):
    """Linear resize of the last ``len(size)`` axes (corner-aligned), the same maths on NumPy and torch."""
    xp = ops(x)
    nd = len(size)
    for ax, m in zip(range(x.ndim - nd, x.ndim), size):
        n = x.shape[ax]
        if n == m:
            continue
        p = np.linspace(0.0, n - 1.0, m)
        i0 = np.floor(p).astype(np.int64)
        i1 = np.minimum(i0 + 1, n - 1)
        wshape = [1] * x.ndim
        wshape[ax] = m
        w = xp.const((p - i0).reshape(wshape), x)
        x = xp.take(x, i0, ax) * (1 - w) + xp.take(x, i1, ax) * w
    return x


def soft_clip(x, lo, hi, margin: float = 0.1):
    """Compress values beyond ``[lo + m, hi - m]`` smoothly (tanh) into ``[lo, hi]``, ``m = margin (hi - lo)``:
    no flat plateaus at the limits, identity well inside the range."""
    xp = ops(x)
    m = (hi - lo) * margin + 1e-12
    top, bot = hi - m, lo + m
    x = xp.where(x > top, top + m * xp.tanh((x - top) / m), x)
    return xp.where(x < bot, bot - m * xp.tanh((bot - x) / m), x)
