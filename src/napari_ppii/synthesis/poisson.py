# SPDX-License-Identifier: BSD-3-Clause
"""Poisson image blending by a DST-I solve over the patch box.

The discrete problem (Perez et al. 2003; the paper's Eq. 4): inside a box ``h`` find ``f`` minimising
``sum over neighbour pairs <p, q> touching the interior of (f_q - f_p - v_pq)^2`` with ``f`` fixed to the
target on the box border.  Its normal equations are the 2n+1-point discrete Poisson equation

    sum_d f(p + e_d) + f(p - e_d) - 2 f(p) = sum_d v_d(p) - v_d(p - e_d)        (p in the box interior)

where ``v_d(p)`` is the guidance on the edge from ``p`` to ``p + e_d`` (a forward difference).  Moving
the known border values to the right-hand side leaves a Dirichlet problem on the interior, which the
type-I discrete sine transform diagonalises: eigenvalues ``sum_d 2 cos(pi k_d / (N_d + 1)) - 2``.  The
cost is O(n log n) in the *box* size, independent of the image size.

Everything here works on arrays whose last ``ndim`` axes are the spatial axes of the box (2D or 3D) and
whose leading axes are a batch: many patches are blended in one call.  The same code runs on NumPy
(``scipy.fft.dstn``) and on torch tensors on any device (DST-I written as an odd extension + real FFT).

Guidance fields are lists with one array per spatial axis ``d``; entry ``d`` has the box shape with axis
``d`` one shorter (the edges between consecutive pixels).

:func:`poisson_solve_sparse` solves the same discrete system with ``scipy.sparse.linalg.spsolve`` over a
whole image, as the original PII implementation did; it is the reference in tests and benchmarks.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .backend import Array, ops
from .backend import is_torch as _is_torch


def _axis_slice(ndim_total: int, axis: int, sl: slice) -> tuple:
    idx = [slice(None)] * ndim_total
    idx[axis] = sl
    return tuple(idx)


def _spatial_axes(x: Array, ndim: int) -> list[int]:
    return list(range(x.ndim - ndim, x.ndim))


def _where(cond, a, b):
    return ops(a).where(cond, a, b)


def _abs(x):
    return ops(x).abs(x)


# --------------------------------------------------------------------------------------------------
# Gradients and guidance fields
# --------------------------------------------------------------------------------------------------
def forward_gradients(x: Array, ndim: int) -> list[Array]:
    """Forward differences along each of the last ``ndim`` axes (edge ``i`` joins pixels ``i, i+1``)."""
    out = []
    for ax in _spatial_axes(x, ndim):
        out.append(x[_axis_slice(x.ndim, ax, slice(1, None))] - x[_axis_slice(x.ndim, ax, slice(None, -1))])
    return out


def edge_mask(mask: Array, ndim: int) -> list[Array]:
    """A pixel mask moved onto the edges: the mean of the two pixels each edge joins."""
    out = []
    for ax in _spatial_axes(mask, ndim):
        a = mask[_axis_slice(mask.ndim, ax, slice(1, None))]
        b = mask[_axis_slice(mask.ndim, ax, slice(None, -1))]
        out.append(0.5 * (a + b))
    return out


def mixed(g_a: Array, g_b: Array) -> Array:
    """Per edge, whichever of two gradients has the larger magnitude (ties go to ``g_a``)."""
    return _where(_abs(g_b) > _abs(g_a), g_b, g_a)


def masked_guidance(
    g_target: Sequence[Array],
    g_source: Sequence[Array],
    mask: Array,
    *,
    mixed_gradients: bool = False,
) -> list[Array]:
    """Guidance that interpolates target and source gradients by a fractional pixel mask.

    ``v = (1 - m_e) * g_target + m_e * g_in`` with ``m_e`` the mask on the edge and ``g_in`` the source
    gradient, or (mixed gradients) whichever of source and target gradient is larger in magnitude.
    ``mask`` may carry extra leading axes (e.g. several rater masks) that broadcast against the
    gradients.
    """
    ndim = len(g_target)
    out = []
    for gt, gs, me in zip(g_target, g_source, edge_mask(mask, ndim)):
        gin = mixed(gs, gt) if mixed_gradients else gs
        out.append(gt + me * (gin - gt))
    return out


def interpolated_guidance(g_target: Sequence[Array], g_source: Sequence[Array], alpha) -> list[Array]:
    """PII's interpolated guidance field (paper Eq. 1).

    Per edge: ``(1 - alpha) g_target`` if ``|(1 - alpha) g_target| > |alpha g_source|``, else
    ``alpha g_source``.  ``alpha`` is a scalar or broadcasts against the gradients.
    """
    out = []
    for gt, gs in zip(g_target, g_source):
        a = (1.0 - alpha) * gt
        b = alpha * gs
        out.append(_where(_abs(a) > _abs(b), a, b))
    return out


def divergence(v: Sequence[Array]) -> Array:
    """Backward-difference divergence of a guidance field at the box interior (shape ``S - 2``)."""
    ndim = len(v)
    total = None
    for d, vd in enumerate(v):
        nd = vd.ndim
        idx_hi = [slice(None)] * nd
        idx_lo = [slice(None)] * nd
        for e in range(ndim):
            ax = nd - ndim + e
            if e == d:
                idx_hi[ax] = slice(1, None)
                idx_lo[ax] = slice(None, -1)
            else:
                idx_hi[ax] = slice(1, -1)
                idx_lo[ax] = slice(1, -1)
        term = vd[tuple(idx_hi)] - vd[tuple(idx_lo)]
        total = term if total is None else total + term
    return total


# --------------------------------------------------------------------------------------------------
# The DST-I solve
# --------------------------------------------------------------------------------------------------
def _dst1_torch(x, axis: int):
    """Unnormalised DST-I along ``axis`` (equals ``scipy.fft.dst(x, type=1)``) via a real FFT."""
    import torch

    x = x.movedim(axis, -1)
    n = x.shape[-1]
    zero = torch.zeros(x.shape[:-1] + (1,), dtype=x.dtype, device=x.device)
    z = torch.cat([zero, x, zero, -x.flip(-1)], dim=-1)
    y = -torch.fft.rfft(z, dim=-1).imag[..., 1 : n + 1]
    return y.movedim(-1, axis)


def _dstn(x: Array, ndim: int, inverse: bool) -> Array:
    axes = _spatial_axes(x, ndim)
    if _is_torch(x):
        for ax in axes:
            x = _dst1_torch(x, ax)
            if inverse:
                x = x / (2.0 * (x.shape[ax] + 1))
        return x
    import scipy.fft  # on first solve: importing the configuration (which registers the methods) stays light

    fn = scipy.fft.idstn if inverse else scipy.fft.dstn
    return fn(x, type=1, axes=axes)


def laplacian_eigenvalues(interior_shape: Sequence[int], like: Array | None = None) -> Array:
    """Eigenvalues of the Dirichlet discrete Laplacian on a box interior, in DST-I order."""
    ndim = len(interior_shape)
    lam = np.zeros(tuple(interior_shape), dtype=np.float64)
    for d, n in enumerate(interior_shape):
        k = np.arange(1, n + 1, dtype=np.float64)
        shape = [1] * ndim
        shape[d] = n
        lam = lam + (2.0 * np.cos(np.pi * k / (n + 1)) - 2.0).reshape(shape)
    if like is not None and _is_torch(like):
        import torch

        return torch.as_tensor(lam, dtype=like.dtype, device=like.device)
    return lam


def _boundary_term(boundary: Array, ndim: int) -> Array:
    """Sum over each interior pixel's neighbours that lie on the box border (known Dirichlet values)."""
    # Laplacian of the box with its interior zeroed, evaluated at the interior: only border
    # neighbours contribute.
    nd = boundary.ndim
    inner = tuple([slice(None)] * (nd - ndim) + [slice(1, -1)] * ndim)
    b = boundary * 1.0  # copy, dtype float
    b[inner] = 0
    total = None
    for e in range(ndim):
        ax = nd - ndim + e
        for sl in (slice(2, None), slice(None, -2)):
            idx = [slice(None)] * (nd - ndim) + [slice(1, -1)] * ndim
            idx[ax] = sl
            term = b[tuple(idx)]
            total = term if total is None else total + term
    return total


def poisson_solve(boundary: Array, guidance: Sequence[Array]) -> Array:
    """Solve the Dirichlet Poisson problem on a batch of boxes; return the boxes with the solution.

    ``boundary``: the target values over the box, shape ``(*batch, *S)``; only its border is used.
    ``guidance``: one edge array per spatial axis (see :func:`masked_guidance`), broadcastable to the
    batch.  The border of the result equals ``boundary`` exactly.
    """
    ndim = len(guidance)
    if any(s < 3 for s in boundary.shape[-ndim:]):
        raise ValueError(f"a Poisson box needs at least 3 pixels per axis, got {tuple(boundary.shape[-ndim:])}")
    rhs = divergence(guidance) - _boundary_term(boundary, ndim)
    lam = laplacian_eigenvalues(rhs.shape[-ndim:], like=rhs)
    sol = _dstn(_dstn(rhs, ndim, inverse=False) / lam, ndim, inverse=True)
    inner = (Ellipsis,) + (slice(1, -1),) * ndim
    full = tuple(sol.shape[:-ndim]) + tuple(boundary.shape[-ndim:])
    if _is_torch(boundary):
        out = boundary.expand(full).clone()
    else:
        out = np.broadcast_to(boundary, full).astype(np.result_type(boundary, sol), copy=True)
    out[inner] = sol
    return out


def poisson_blend(
    target_box: Array,
    source_box: Array,
    mask: Array,
    *,
    mixed_gradients: bool = False,
    gradient_scale: float = 1.0,
    ndim: int | None = None,
) -> Array:
    """Blend ``source_box`` into ``target_box`` (same spatial shape) under a fractional ``mask``.

    Guidance = ``(1 - m) * grad(target) + m * g`` with ``g = gradient_scale * grad(source)`` (or, with
    mixed gradients, the larger of that and the target gradient).  ``mask`` may have extra leading axes,
    e.g. ``(K, *S)`` for K rater masks, giving K blends in one solve; ``ndim`` (default: all axes of
    ``target_box``) says how many trailing axes are spatial.  ``gradient_scale`` may be an array that
    broadcasts against the batch axes.
    """
    ndim = target_box.ndim if ndim is None else ndim
    gt = forward_gradients(target_box, ndim)
    gs = [gradient_scale * g for g in forward_gradients(source_box, ndim)]
    return poisson_solve(target_box, masked_guidance(gt, gs, mask, mixed_gradients=mixed_gradients))


# --------------------------------------------------------------------------------------------------
# Reference: the whole-image sparse direct solve (original PII approach)
# --------------------------------------------------------------------------------------------------
def poisson_solve_sparse(image: np.ndarray, box: Sequence[slice], guidance: Sequence[np.ndarray]) -> np.ndarray:
    """Solve the same discrete system as :func:`poisson_solve` with one sparse direct solve per image.

    Unknowns are *all* pixels of ``image`` (2D or 3D): identity rows pin every pixel outside the box
    interior to its value, Laplacian rows hold the Poisson equation inside.  This is how the original
    PII code solved it (whole image, ``spsolve``); it is slow and exists as the reference.
    """
    import scipy.sparse
    import scipy.sparse.linalg

    image = np.asarray(image, dtype=np.float64)
    ndim = image.ndim
    shape = image.shape
    n = image.size
    idx = np.arange(n).reshape(shape)
    interior = tuple(slice(b.start + 1, b.stop - 1) for b in box)
    inside = np.zeros(shape, dtype=bool)
    inside[interior] = True
    rows_in = idx[inside]
    div = divergence([np.asarray(g, dtype=np.float64) for g in guidance]).ravel()

    rows = [idx[~inside]]
    cols = [idx[~inside]]
    vals = [np.ones(rows[0].size)]
    rows.append(rows_in)
    cols.append(rows_in)
    vals.append(np.full(rows_in.size, -2.0 * ndim))
    strides = [int(np.prod(shape[d + 1 :])) for d in range(ndim)]
    for d in range(ndim):
        for sgn in (+1, -1):
            rows.append(rows_in)
            cols.append(rows_in + sgn * strides[d])
            vals.append(np.ones(rows_in.size))
    a = scipy.sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    b = image.ravel().copy()
    b[rows_in] = div
    return scipy.sparse.linalg.spsolve(a, b).reshape(shape)
