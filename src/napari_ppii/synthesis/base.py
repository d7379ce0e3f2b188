"""The shared interface of the synthesis methods: plans, results, sampling and rendering.

A method first draws a *plan* from a seeded ``numpy.random.Generator`` -- every random choice of one
image's anomalies as plain numbers (:class:`AnomalySpec`) -- then *renders* it.  Plans are what the
``ppii synthesize`` JSON stores, so a run is reproducible exactly, and the same plan renders to the same
result with NumPy (CPU, float64 solve) or with torch on any device (float32/float64): the random draws
never depend on the engine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from ..config import SynthesisConfig
from ..errors import InputError
from ..io.boxes import Box
from . import poisson

#: Smallest extent (pixels) of any spatial axis that synthesis accepts.
MIN_EXTENT = 16


@dataclass
class AnomalySpec:
    """One anomaly of one image: where it goes, where it comes from, and how it is blended.

    Boxes are Python slice bounds (``start`` inclusive, ``start + size`` exclusive) in array order.
    ``centres``/``radii`` hold one circle (ball in 3D) per rater, in pixels relative to the box start.
    """

    target_index: int
    source_index: int
    target_start: tuple[int, ...]
    source_start: tuple[int, ...]
    size: tuple[int, ...]
    gradient_scale: float = 1.0
    alpha: float | None = None
    centres: list[list[float]] = field(default_factory=list)
    radii: list[float] = field(default_factory=list)
    source_size: tuple[int, ...] | None = None  # rescaled source: taken at this size, resized to ``size``

    @property
    def target_slices(self) -> tuple[slice, ...]:
        return tuple(slice(a, a + s) for a, s in zip(self.target_start, self.size))

    @property
    def source_slices(self) -> tuple[slice, ...]:
        return tuple(slice(a, a + s) for a, s in zip(self.source_start, self.source_size or self.size))

    def box(self) -> Box:
        props = {"gradient_scale": self.gradient_scale, "n_raters": len(self.radii)}
        if self.alpha is not None:
            props["alpha"] = self.alpha
        return Box.from_half_open(self.target_start, [a + s for a, s in zip(self.target_start, self.size)],
                                  label="synthetic", properties=props)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AnomalySpec":
        d = dict(d)
        for k in ("target_start", "source_start", "size"):
            d[k] = tuple(int(v) for v in d[k])
        if d.get("source_size") is not None:
            d["source_size"] = tuple(int(v) for v in d["source_size"])
        return cls(**d)


@dataclass
class SynthesisResult:
    """One synthetic sample.

    image: the training image (P-PII: the mean over the rater blends).
    label: P-PII ``clip(label_scale * |target - image|, 0, 1)``; PII/FPI ``alpha`` where changed.
    variance: per-pixel variance over the raters (population variance; zero for one rater, PII, FPI).
    mask: the placement mask (lungs / given), None when anomalies may go anywhere.
    boxes: the anomalies' target boxes (inclusive :class:`Box`).
    plan: the anomalies as drawn (enough to re-render exactly).
    """

    image: Any
    label: Any
    variance: Any
    boxes: list[Box]
    plan: list[AnomalySpec]
    method: str
    mask: Any = None  # the placement mask used (NumPy bool), or None for placement "anywhere"

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "boxes": [b.to_dict() for b in self.boxes],
                "anomalies": [a.to_dict() for a in self.plan]}


# --------------------------------------------------------------------------------------------------
# Validation and sampling
# --------------------------------------------------------------------------------------------------
def validate_images(images: Any, config: SynthesisConfig) -> tuple[int, ...]:
    """Check a batch ``(B, *spatial)`` for synthesis; return the spatial shape."""
    shape = tuple(images.shape)
    if len(shape) not in (3, 4):
        raise InputError(f"synthesis takes a batch of 2D images or 3D volumes, got an array of shape {shape}")
    if shape[0] < 1:
        raise InputError("synthesis got an empty batch")
    spatial = shape[1:]
    if _is_torch(images):
        import torch

        if not images.is_floating_point():
            images = images.float()
        finite = bool(torch.isfinite(images).all())
    else:
        arr = np.asarray(images)
        if arr.dtype.kind not in "uif":
            raise InputError(f"synthesis needs numeric images, got dtype {arr.dtype}")
        finite = bool(np.isfinite(arr).all()) if arr.dtype.kind == "f" else True
    if not finite:
        raise InputError("image contains NaN or Inf values; synthesis needs finite intensities")
    small = [n for n in spatial if n < max(MIN_EXTENT, config.min_patch_side)]
    if small:
        raise InputError(
            f"image of shape {spatial} is too small for synthesis: every axis needs at least "
            f"{max(MIN_EXTENT, config.min_patch_side)} pixels")
    return spatial


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def _is_smooth(n: int) -> bool:
    for p in (2, 3, 5):
        while n % p == 0:
            n //= p
    return n == 1


def round_side(s: int, n: int, cfg: SynthesisConfig) -> int:
    """Smallest side >= ``s`` that is a multiple of ``size_step`` and (``fast_sizes``) whose DST-I
    length ``2 (side - 1)`` is 5-smooth; at most the extent ``n``."""
    s = max(int(s), cfg.min_patch_side)
    s = int(np.ceil(s / cfg.size_step) * cfg.size_step)
    if cfg.fast_sizes:
        t = s
        while t <= n and not _is_smooth(t - 1):
            t += cfg.size_step
        s = t if t <= n else s
    return min(s, n)


def sample_fraction(cfg: SynthesisConfig, rng: np.random.Generator) -> float:
    """One patch side fraction: uniform in ``patch_size``, or NSA-style ``offset + Gamma(2, scale)``
    clipped to ``patch_size`` (``patch_gamma``; default ``(low, (high - low) / 6)``)."""
    lo, hi = cfg.patch_size
    if cfg.patch_distribution == "gamma":
        off, scale = cfg.patch_gamma or (lo, (hi - lo) / 6.0)
        return float(min(hi, max(lo, off + rng.gamma(2.0, scale))))
    return float(rng.uniform(lo, hi))


def sample_size(spatial: Sequence[int], cfg: SynthesisConfig, rng: np.random.Generator) -> tuple[int, ...]:
    """Patch side per axis: a fraction (:func:`sample_fraction`) of the extent (one fraction of the
    shortest axis for square patches), at least ``min_patch_side``, rounded up by :func:`round_side`."""
    if cfg.square:
        sides = [sample_fraction(cfg, rng) * min(spatial)] * len(spatial)
    else:
        sides = [sample_fraction(cfg, rng) * n for n in spatial]
    return tuple(round_side(int(round(s)), n, cfg) for s, n in zip(sides, spatial))


def sample_source_size(spatial: Sequence[int], size: Sequence[int], cfg: SynthesisConfig,
                       rng: np.random.Generator) -> tuple[int, ...] | None:
    """The rescaled source patch's size (``size / r``, ``r ~ U[source_rescale]``), or None for none."""
    lo, hi = cfg.source_rescale
    if lo == hi == 1.0:
        return None
    r = float(rng.uniform(lo, hi))
    src = tuple(int(min(n, max(3, round(s / r)))) for s, n in zip(size, spatial))
    return None if src == tuple(size) else src


def sample_start(spatial: Sequence[int], size: Sequence[int], cfg: SynthesisConfig, rng: np.random.Generator,
                 mask: np.ndarray | None = None) -> tuple[int, ...] | None:
    """Box start whose centre is uniform in the central ``core_fraction`` of each axis (box kept inside).

    With a ``mask``: the centre is a mask pixel drawn uniformly, and the box must have at least
    ``placement_min_inside`` of its pixels on the mask; None when the draw fails that test."""
    if mask is not None:
        flat = _mask_index(mask)
        if flat.size == 0:
            return None
        c = np.unravel_index(int(flat[rng.integers(0, flat.size)]), mask.shape)
        start = tuple(min(max(int(round(ci - s / 2.0)), 0), n - s) for ci, s, n in zip(c, size, spatial))
        inside = float(mask[tuple(slice(a, a + s) for a, s in zip(start, size))].mean())
        return start if inside >= cfg.placement_min_inside else None
    start = []
    for n, s in zip(spatial, size):
        margin = (1.0 - cfg.core_fraction) / 2.0 * n
        c = rng.uniform(margin, n - margin)
        a = int(round(c - s / 2.0))
        start.append(min(max(a, 0), n - s))
    return tuple(start)


_MASK_INDEX: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _mask_index(mask: np.ndarray) -> np.ndarray:
    """Flat indices of a mask's pixels (cached for the mask array while it is alive)."""
    hit = _MASK_INDEX.get(id(mask))
    if hit is not None and hit[0] is mask:
        return hit[1]
    idx = np.flatnonzero(mask)
    if len(_MASK_INDEX) > 64:
        _MASK_INDEX.clear()
    _MASK_INDEX[id(mask)] = (mask, idx)
    return idx


def sample_gradient_scale(cfg: SynthesisConfig, rng: np.random.Generator) -> float:
    lo, hi = cfg.gradient_scale
    if cfg.gradient_scale_distribution == "log_uniform":
        return float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) if hi > lo else float(lo)
    return float(rng.uniform(lo, hi))


def boxes_overlap(a_start, b_start, size_a, size_b) -> bool:
    return all(a < b + sb and b < a + sa for a, b, sa, sb in zip(a_start, b_start, size_a, size_b))


def sample_raters(size: Sequence[int], k: int, cfg: SynthesisConfig, rng: np.random.Generator) -> tuple[list[list[float]], list[float]]:
    """K circles inside a patch: radius ~ N(rater_radius * shortest side, rater_radius_std), centre ~
    N(patch centre, rater_centre_std * side), both bounded so the circle stays inside the patch."""
    size = np.asarray(size, dtype=float)
    smin = float(size.min())
    r_max = max((smin - 1.0) / 2.0, 1.0)
    radii = np.clip(rng.normal(cfg.rater_radius * smin, cfg.rater_radius_std, size=k), 1.0, r_max)
    centres = rng.normal((size - 1.0) / 2.0, cfg.rater_centre_std * size, size=(k, size.size))
    centres = np.clip(centres, radii[:, None], size - 1.0 - radii[:, None])
    return centres.tolist(), radii.tolist()


# --------------------------------------------------------------------------------------------------
# Rendering (NumPy or torch, same code)
# --------------------------------------------------------------------------------------------------
def _arange(n: int, like):
    if _is_torch(like):
        import torch

        return torch.arange(n, dtype=like.dtype, device=like.device)
    return np.arange(n, dtype=like.dtype)


def _const(values, like):
    if _is_torch(like):
        import torch

        return torch.as_tensor(np.asarray(values), dtype=like.dtype, device=like.device)
    return np.asarray(values, dtype=like.dtype)


def disc_masks(size: Sequence[int], centres, radii, like) -> Any:
    """Anti-aliased disc/ball masks ``(G, K, *size)``: 1 inside, 0 outside, a 1-pixel linear edge."""
    centres = _const(centres, like)  # (G, K, nd)
    radii = _const(radii, like)  # (G, K)
    nd = len(size)
    d2 = None
    for ax, n in enumerate(size):
        shape = [1] * nd
        shape[ax] = n
        coord = _arange(n, like).reshape(shape)
        c = centres[..., ax].reshape(tuple(centres.shape[:2]) + (1,) * nd)
        term = (coord - c) ** 2
        d2 = term if d2 is None else d2 + term
    r = radii.reshape(tuple(radii.shape) + (1,) * nd)
    dist = d2**0.5
    m = r + 0.5 - dist
    if _is_torch(m):
        return m.clamp(0.0, 1.0)
    return np.clip(m, 0.0, 1.0)


def smooth(x, sigma: float, nd: int):
    """Gaussian smoothing of the last ``nd`` axes of ``x`` (NumPy or torch; edges replicated).  The same
    truncated kernel on both engines, so a plan renders alike on each."""
    if sigma <= 0:
        return x
    r = max(1, int(np.ceil(3.0 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k = k / k.sum()
    for ax in range(x.ndim - nd, x.ndim):
        n = x.shape[ax]
        idx = np.clip(np.arange(-r, n + r), 0, n - 1)
        if _is_torch(x):
            import torch

            xp = torch.index_select(x, ax, torch.as_tensor(idx, device=x.device))
            out = 0.0
            for j, w in enumerate(k):
                out = out + float(w) * xp.narrow(ax, j, n)
        else:
            xp = np.take(x, idx, axis=ax)
            out = 0.0
            for j, w in enumerate(k):
                out = out + w * np.take(xp, np.arange(j, j + n), axis=ax)
        x = out
    return x


def resize_linear(x, size: Sequence[int]):
    """Linear resize of the last ``len(size)`` axes (corner-aligned), the same maths on NumPy and torch."""
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
        w = _const((p - i0).reshape(wshape), x)
        if _is_torch(x):
            import torch

            a = torch.index_select(x, ax, torch.as_tensor(i0, device=x.device))
            b = torch.index_select(x, ax, torch.as_tensor(i1, device=x.device))
        else:
            a, b = np.take(x, i0, axis=ax), np.take(x, i1, axis=ax)
        x = a * (1 - w) + b * w
    return x


def soft_clip(x, lo, hi, margin: float = 0.1):
    """Compress values beyond ``[lo + m, hi - m]`` smoothly (tanh) into ``[lo, hi]``, ``m = margin (hi - lo)``:
    no flat plateaus at the limits, identity well inside the range."""
    m = (hi - lo) * margin + 1e-12
    top, bot = hi - m, lo + m
    if _is_torch(x):
        import torch

        x = torch.where(x > top, top + m * torch.tanh((x - top) / m), x)
        return torch.where(x < bot, bot - m * torch.tanh((bot - x) / m), x)
    x = np.where(x > top, top + m * np.tanh((x - top) / m), x)
    return np.where(x < bot, bot - m * np.tanh((bot - x) / m), x)


def _stack(items, like):
    if _is_torch(like):
        import torch

        return torch.stack(items)
    return np.stack(items)


def _source_patch(images, s: AnomalySpec):
    src = images[s.source_index][s.source_slices]
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
    lo = _stack([lows[i] for i in idx], like).reshape((len(idx),) + (1,) * nd_extra)
    hi = _stack([highs[i] for i in idx], like).reshape((len(idx),) + (1,) * nd_extra)
    if cfg.clip == "soft" and targets is not None:
        blends = targets + (soft_clip(blends, lo, hi) - soft_clip(targets, lo, hi))
    return blends.clamp(lo, hi) if _is_torch(blends) else np.clip(blends, lo, hi)


def render_poisson(images, plan: list[AnomalySpec], n_out: int, cfg: SynthesisConfig, masks=None):
    """Render Poisson anomalies of a plan; return ``(mean image, variance)`` for images ``[0, n_out)``.

    ``images``: ``(N, *spatial)`` float array or tensor holding the targets ``[0, n_out)`` and any
    extra source images after them.  Anomalies are grouped by box shape and rater count; each group is
    one batched DST solve.  Specs with ``alpha`` use PII's interpolated guidance (Eq. 1); the others use
    the rater masks with up-scaled (optionally mixed) source gradients, the source patch smoothed by
    ``source_smoothing`` first.  With ``masks`` (``(n_out, *spatial)``, 0/1) and ``mask_blend`` the
    change is multiplied by the mask.
    """
    nd = images.ndim - 1
    out = images[:n_out] * 1.0
    var = out * 0.0
    if not plan:
        return out, var
    flat = images.reshape(images.shape[0], -1)
    lows, highs = (flat.amin(1), flat.amax(1)) if _is_torch(flat) else (flat.min(1), flat.max(1))
    groups: dict[tuple, list[AnomalySpec]] = {}
    for spec in plan:
        key = (spec.size, len(spec.radii), spec.alpha is not None)
        groups.setdefault(key, []).append(spec)
    use_mask = masks is not None and cfg.mask_blend and cfg.placement != "anywhere"
    for (size, k, interp), specs in groups.items():
        tgt = _stack([images[s.target_index][s.target_slices] for s in specs], images)
        src = _stack([_source_patch(images, s) for s in specs], images)
        bshape = (len(specs), 1) + (1,) * nd
        gt = poisson.forward_gradients(tgt, nd)
        if interp:
            gs = poisson.forward_gradients(src, nd)
            alpha = _const([s.alpha for s in specs], images).reshape((len(specs),) + (1,) * nd)
            guidance = poisson.interpolated_guidance(gt, gs, alpha)
            blends = poisson.poisson_solve(tgt, guidance)[:, None]
        else:
            gs = poisson.forward_gradients(smooth(src, cfg.source_smoothing, nd), nd)
            scale = _const([s.gradient_scale for s in specs], images).reshape(bshape)
            discs = disc_masks(size, [s.centres for s in specs], [s.radii for s in specs], images)
            gt = [g[:, None] for g in gt]
            gs = [scale * g[:, None] for g in gs]
            guidance = poisson.masked_guidance(gt, gs, discs, mixed_gradients=cfg.mixed_gradients)
            blends = poisson.poisson_solve(tgt[:, None], guidance)
        if use_mask:
            m = _stack([masks[s.target_index][s.target_slices] for s in specs], images)
            blends = tgt[:, None] + (blends - tgt[:, None]) * m[:, None]
        blends = limit_range(blends, lows, highs, [s.target_index for s in specs], cfg, images, tgt[:, None])
        delta = blends - tgt[:, None]  # averaged as changes: where no rater changed a pixel it stays exact
        dmean = delta.mean(1)
        mean = tgt + dmean
        v = ((delta - dmean[:, None]) ** 2).mean(1)
        for s, m_i, v_i in zip(specs, mean, v):
            out[s.target_index][s.target_slices] = m_i
            var[s.target_index][s.target_slices] = v_i
    return out, var


class Synthesizer:
    """Base class of FPI, PII and P-PII.

    ``plan_image`` draws one image's anomalies; ``render`` turns a batch plan into results.  Call
    :meth:`sample` for one image (optionally with a source image) or :meth:`batch` for a batch; both
    accept NumPy arrays (results as NumPy float32) or torch tensors (results as tensors on their device).
    """

    method = "base"

    def __init__(self, config: SynthesisConfig | None = None):
        cfg = (config or SynthesisConfig(method=self.method)).resolved()
        if cfg.method != self.method:
            cfg = cfg.model_copy(update={"method": self.method}).resolved()
        self.config = cfg

    # -- to implement ---------------------------------------------------------------------------
    def plan_image(self, index: int, spatial: tuple[int, ...], n_images: int, rng: np.random.Generator,
                   masks: np.ndarray | None = None) -> list[AnomalySpec]:
        """One image's anomalies; ``masks`` (``(N, *spatial)`` bool, or None) constrain placement."""
        raise NotImplementedError

    def render(self, images, plan: list[AnomalySpec], n_out: int, masks=None):
        """Return ``(image, label, variance)`` batches for targets ``[0, n_out)``."""
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------------------
    def placement_masks(self, images, masks=None) -> np.ndarray | None:
        """The placement masks for a batch (``(N, *spatial)`` bool NumPy), or None for ``anywhere``.

        ``lungs`` without given masks computes them (radiographs: :func:`napari_ppii.anatomy.lung_mask_cxr`);
        ``mask`` needs them.  A mask's shape must match its image."""
        cfg = self.config
        if cfg.placement == "anywhere":
            return None
        shape = tuple(images.shape)
        if masks is None:
            if cfg.placement == "mask":
                raise InputError("placement 'mask' needs a placement mask (data.mask, or a Labels layer in the viewer)")
            if len(shape) != 3:
                raise InputError("placement 'lungs' on volumes needs lung masks computed from the HU scan: "
                                 "pass masks=napari_ppii.anatomy.lung_mask(scan)")
            from ..anatomy import lung_mask_cxr

            arr = images.detach().cpu().numpy() if _is_torch(images) else np.asarray(images)
            return np.stack([lung_mask_cxr(a) for a in arr])
        m = masks.detach().cpu().numpy() if _is_torch(masks) else np.asarray(masks)
        if m.shape == shape[1:] and shape[0] == 1:
            m = m[None]
        if m.shape != shape:
            raise InputError(f"placement mask of shape {m.shape} does not match the images {shape}")
        return m > 0

    def plan(self, images, rng: np.random.Generator, n_out: int | None = None, masks=None) -> list[AnomalySpec]:
        spatial = validate_images(images, self.config)
        n_out = images.shape[0] if n_out is None else n_out
        return self._plan_images(spatial, images.shape[0], n_out, rng, self.placement_masks(images, masks))

    def _plan_images(self, spatial, n_images: int, n_out: int, rng: np.random.Generator, pm) -> list[AnomalySpec]:
        plan: list[AnomalySpec] = []
        for i in range(n_out):
            plan.extend(self.plan_image(i, spatial, n_images, rng, pm))
        return plan

    def _source_index(self, index: int, n_images: int, rng: np.random.Generator) -> int:
        """Pairwise: another image of the batch drawn at random (itself when it is alone)."""
        if not self.config.pairwise or n_images < 2:
            return index
        j = int(rng.integers(0, n_images - 1))
        return j if j < index else j + 1

    def _target_start(self, spatial, size, rng, mask) -> tuple[int, ...] | None:
        """A target box start (inside the mask when there is one), or None after ``max_tries``.  An empty
        mask (no lung found: not a chest image) places anywhere, as ``placement=anywhere``."""
        if mask is None or _mask_index(mask).size == 0:
            return sample_start(spatial, size, self.config, rng)
        for _try in range(self.config.max_tries):
            st = sample_start(spatial, size, self.config, rng, mask)
            if st is not None:
                return st
        return None

    def _place_target(self, spatial, size, rng, mask, specs) -> tuple[int, ...] | None:
        """A target box start on the mask that overlaps none of ``specs``' boxes, or None after ``max_tries``."""
        for _try in range(self.config.max_tries):
            start = self._target_start(spatial, size, rng, mask)
            if start is not None and not any(boxes_overlap(start, s.target_start, size, s.size) for s in specs):
                return start
        return None

    def _place_source(self, spatial, s_size, rng, mask, src, index, placed, size) -> tuple[int, ...]:
        """A source box start (on ``mask`` when given); from the target image itself it avoids the target box."""
        s_start = None
        for _try in range(self.config.max_tries):
            s_start = self._target_start(spatial, s_size, rng, mask) or sample_start(spatial, s_size, self.config, rng)
            if src != index or not boxes_overlap(s_start, placed, s_size, size):
                break  # from the same image the source patch must come from elsewhere
        return s_start

    def batch(self, images, rng: np.random.Generator | int | None = None, *, n_out: int | None = None,
              plan: list[AnomalySpec] | None = None, masks=None) -> list[SynthesisResult]:
        """Synthesise anomalies into each of the first ``n_out`` images of ``images`` (``(N, *spatial)``);
        images after ``n_out`` serve as sources only.  ``masks`` (same shape, or None): placement masks
        for ``placement`` lungs/mask (computed for ``lungs`` when not given)."""
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        work = _as_work_array(images)
        n_out = work.shape[0] if n_out is None else n_out
        spatial = validate_images(work, self.config)
        pm = self.placement_masks(work, masks)
        if plan is None:
            plan = self._plan_images(spatial, work.shape[0], n_out, rng, pm)
        rm = None
        if pm is not None:
            if _is_torch(work):
                import torch

                rm = torch.as_tensor(pm[:n_out], device=work.device).to(work.dtype)
            else:
                rm = pm[:n_out].astype(work.dtype)
        img, lab, var = self.render(work, plan, n_out, rm)
        results = []
        for i in range(n_out):
            mine = [s for s in plan if s.target_index == i]
            results.append(SynthesisResult(_out(img[i]), _out(lab[i]), _out(var[i]), [s.box() for s in mine], mine,
                                           self.method, None if pm is None else pm[i]))
        return results

    def sample(self, target, source=None, rng: np.random.Generator | int | None = None,
               plan: list[AnomalySpec] | None = None, mask=None, source_mask=None) -> SynthesisResult:
        """One synthetic sample of ``target`` (2D or 3D), with the source patch from ``source`` when
        given (pairwise) or from ``target`` itself.  ``mask``: the target's placement mask (and
        ``source_mask`` the source's, for ``source_in_mask``)."""
        if source is not None and tuple(source.shape) != tuple(target.shape):
            raise InputError(f"source shape {tuple(source.shape)} differs from target shape {tuple(target.shape)}")
        stack = [target] if source is None else [target, source]
        if _is_torch(target):
            import torch

            images = torch.stack(stack)
        else:
            images = np.stack([np.asarray(s) for s in stack])
        masks = None
        if mask is not None:
            m = mask.detach().cpu().numpy() if _is_torch(mask) else np.asarray(mask)
            if m.shape != tuple(target.shape):
                raise InputError(f"placement mask of shape {m.shape} does not match the image {tuple(target.shape)}")
            ms = [m > 0]
            if source is not None:
                sm = np.ones_like(ms[0]) if source_mask is None else np.asarray(source_mask) > 0
                if sm.shape != ms[0].shape:
                    raise InputError(f"source mask of shape {sm.shape} does not match the source {tuple(source.shape)}")
                ms.append(sm)
            masks = np.stack(ms)
        elif source is not None and self.config.placement == "lungs":
            masks = self.placement_masks(images)
        return self.batch(images, rng, n_out=1, plan=plan, masks=masks)[0]


def _as_work_array(images):
    """float64 NumPy (exact CPU path) or a floating torch tensor (kept on its device and dtype)."""
    if _is_torch(images):
        return images if images.is_floating_point() else images.float()
    arr = np.asarray(images)
    if arr.dtype.kind not in "uif":
        raise InputError(f"synthesis needs numeric images, got dtype {arr.dtype}")
    return arr.astype(np.float64)


def _out(x):
    return x if _is_torch(x) else np.asarray(x, dtype=np.float32)


def zero_border(label, nd: int):
    """Zero the outermost pixel ring of each image of a ``(B, *spatial)`` batch (PII's labels)."""
    for ax in range(1, nd + 1):
        idx = [slice(None)] * (nd + 1)
        idx[ax] = 0
        label[tuple(idx)] = 0
        idx[ax] = -1
        label[tuple(idx)] = 0
    return label
