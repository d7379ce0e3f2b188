# SPDX-License-Identifier: BSD-3-Clause
"""Rendering plans (NumPy or torch, one code path through :mod:`.backend`): the loop every patch-blending
method shares (:func:`render_blends`: group, stack, blend, mask, clip, average), rater discs, range limits
and label borders.  Each method's own blend lives in its module."""

from __future__ import annotations

from typing import Any, Callable, Sequence

from .settings import SynthesisConfig
from . import poisson
from .backend import ops, resize_linear, soft_clip
from .plan import AnomalySpec


def disc_masks(size: Sequence[int], centres, radii, like) -> Any:
    """Anti-aliased disc/ball masks ``(G, K, *size)``: 1 inside, 0 outside, a 1-pixel linear edge."""
    centres = ops(like).const(centres, like)  # (G, K, nd)
    radii = ops(like).const(radii, like)  # (G, K)
    nd = len(size)
    d2 = None
    for ax, n in enumerate(size):
        shape = [1] * nd
        shape[ax] = n
        coord = ops(like).arange(n, like).reshape(shape)
        c = centres[..., ax].reshape(tuple(centres.shape[:2]) + (1,) * nd)
        term = (coord - c) ** 2
        d2 = term if d2 is None else d2 + term
    r = radii.reshape(tuple(radii.shape) + (1,) * nd)
    dist = d2**0.5
    return ops(like).clip(r + 0.5 - dist, 0.0, 1.0)


def source_patch(images, s: AnomalySpec):
    src = ops(images).exact(images[s.source_index][s.source_slices])
    if s.source_size is not None and tuple(s.source_size) != tuple(s.size):
        src = resize_linear(src, s.size)
    return src


def limit_range(blends, lows, highs, idx, cfg: SynthesisConfig, like, targets=None):
    """Apply ``cfg.clip`` to blends ``(G, ...)`` of the target images ``idx``.  ``soft``: the change is
    compressed smoothly near the limits (``t + soft(b) - soft(t)``, so unchanged pixels stay exactly as
    they were), then held in range."""
    if cfg.clip == "none":
        return blends
    nd_extra = blends.ndim - 1
    lo = ops(like).stack([lows[i] for i in idx]).reshape((len(idx),) + (1,) * nd_extra)
    hi = ops(like).stack([highs[i] for i in idx]).reshape((len(idx),) + (1,) * nd_extra)
    if cfg.clip == "soft" and targets is not None:
        blends = targets + (soft_clip(blends, lo, hi) - soft_clip(targets, lo, hi))
    return ops(blends).clip(blends, lo, hi)


#: ``blend(tgt, src, specs) -> (G, K, *size)``: K blended versions of each of a group's G target patches.
Blend = Callable[[Any, Any, list[AnomalySpec]], Any]


def render_blends(
    images,
    plan: list[AnomalySpec],
    n_out: int,
    cfg: SynthesisConfig,
    masks,
    blend: Blend,
    *,
    group=None,
    limit: bool = True,
):
    """The rendering every patch-blending method shares; returns ``(mean image, variance)`` for images
    ``[0, n_out)``.

    ``images``: ``(N, *spatial)`` float array or tensor holding the targets ``[0, n_out)`` and any extra
    source images after them.  Anomalies are grouped by box shape (and ``group(spec)``, e.g. the rater
    count); for each group the target and source patches are stacked and the method's ``blend`` makes
    ``K`` versions of each (raters; ``K = 1`` for one blend).  Then, shared by every method: with
    ``masks`` (``(n_out, *spatial)``, 0/1) and ``mask_blend`` the change is multiplied by the mask; the
    result is held in the target's range (``clip``; ``limit=False`` for blends that cannot leave it); the
    versions are averaged as changes (where none changed a pixel it stays exact) and their variance kept.
    """
    xp = ops(images)
    out = xp.copy(images[:n_out])
    var = xp.zeros_like(out)
    if not plan:
        return out, var
    flat = images.reshape(images.shape[0], -1)
    lows, highs = xp.amin(flat, 1), xp.amax(flat, 1)
    groups: dict[tuple, list[AnomalySpec]] = {}
    for spec in plan:
        key = (tuple(spec.size),) + ((group(spec),) if group is not None else ())
        groups.setdefault(key, []).append(spec)
    use_mask = masks is not None and cfg.mask_blend and cfg.placement != "anywhere"
    for specs in groups.values():
        tgt = xp.exact(xp.stack([images[s.target_index][s.target_slices] for s in specs]))
        src = xp.exact(xp.stack([source_patch(images, s) for s in specs]))
        blends = blend(tgt, src, specs)
        if use_mask:
            m = xp.stack([masks[s.target_index][s.target_slices] for s in specs])
            blends = tgt[:, None] + (blends - tgt[:, None]) * m[:, None]
        if limit:
            blends = limit_range(blends, lows, highs, [s.target_index for s in specs], cfg, tgt, tgt[:, None])
        delta = blends - tgt[:, None]
        if delta.shape[1] == 1:  # one version: its change (the mean of one, exactly), no variance
            mean, v = tgt + delta[:, 0], None
        else:
            dmean = delta.mean(1)
            mean = tgt + dmean
            v = ((delta - dmean[:, None]) ** 2).mean(1)
        for i, s in enumerate(specs):
            out[s.target_index][s.target_slices] = mean[i]
            if v is not None:
                var[s.target_index][s.target_slices] = v[i]
    return out, var


def poisson_blend(tgt, guidance):
    """One DST Poisson solve of each target patch ``(G, *size)`` with its guidance: ``(G, 1, *size)``."""
    return poisson.poisson_solve(tgt, guidance)[:, None]


def zero_border(label, nd: int):
    """Zero the outermost pixel ring of each image of a ``(B, *spatial)`` batch (PII's labels)."""
    for ax in range(1, nd + 1):
        idx = [slice(None)] * (nd + 1)
        idx[ax] = 0
        label[tuple(idx)] = 0
        idx[ax] = -1
        label[tuple(idx)] = 0
    return label
