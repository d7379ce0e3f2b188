# SPDX-License-Identifier: BSD-3-Clause
"""Benchmark: P-PII synthesis with the DST engine against the whole-image sparse solve and two peers.

One run measures, side by side, on the same 512x512 radiograph pair (bundled NIH sample) and the same
P-PII plan (10 anomalies x 9 raters = 90 blends):

* ``dst``: this package's engine, one whole P-PII sample (NumPy, one thread);
* ``sparse``: the original PII approach, one whole-image ``scipy.sparse.linalg.spsolve`` per blend,
  on the same discrete problems (agreement checked: max |difference|);
* ``pietorch``: PIE-torch's ``blend_dst_numpy`` (what the paper built on), one call per blend;
* ``opencv``: OpenCV's ``seamlessClone`` (what NSA uses), one call per blend (8-bit, as it requires);
* ``torch_batch``: images/s of the batched torch path (batch of 16; CPU here, CUDA when available);
* ``single_patch``: one 80x80 patch blend, DST vs whole-image sparse.

Usage: ``python benchmarks/bench_synthesis.py [--repeats N] [--sparse-blends N] [--device cuda]``.
``--sparse-blends`` times that many of the 90 sparse solves and scales to 90 (default: all 90).
Last line: one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from napari_ppii.config import PreprocessConfig, SynthesisConfig  # noqa: E402
from napari_ppii.io import read_scan  # noqa: E402
from napari_ppii.preprocess import prepare  # noqa: E402
from napari_ppii.synthesis import PPII  # noqa: E402
from napari_ppii.synthesis import poisson as P  # noqa: E402
from napari_ppii.synthesis.backend import resize_linear  # noqa: E402
from napari_ppii.synthesis.render import disc_masks  # noqa: E402


def timeit(fn, repeats: int) -> float:
    """Median seconds of ``repeats`` calls (after one warm-up)."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def timeit_interleaved(f, g, repeats: int) -> tuple[float, float]:
    """Median seconds of ``f`` and of ``g``, their calls alternating (after one warm-up each), so that
    a machine busy with something else slows both alike and their ratio stays fair."""
    f(), g()
    tf, tg = [], []
    for _ in range(repeats):
        for fn, acc in ((f, tf), (g, tg)):
            t = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t)
    return statistics.median(tf), statistics.median(tg)


def load_pair(size: int = 512):
    sample = ROOT / "resources" / "nih-cxr"
    cfg = PreprocessConfig(size=size)
    a = prepare(read_scan(sample / "00000002_000.png"), cfg).array.astype(np.float64)
    b = prepare(read_scan(sample / "00000005_000.png"), cfg).array.astype(np.float64)
    return a, b


def blends_of(plan, images):
    """Each (anomaly, rater) blend of a plan as (target box, source box, mask, scale, slices)."""
    out = []
    for s in plan:
        t = images[s.target_index][s.target_slices]
        src = images[s.source_index][s.source_slices]
        if src.shape != t.shape:  # a rescaled source patch (source_rescale), resized as render does
            src = resize_linear(src, t.shape)
        masks = disc_masks(s.size, [s.centres], [s.radii], t)[0]
        for m in masks:
            out.append((t, src, m, s.gradient_scale, s.target_slices))
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--sparse-blends", type=int, default=90, help="sparse solves actually timed (scaled to all)")
    ap.add_argument(
        "--device", default=None, help="torch device for the batched path (default: cuda if available, else cpu)"
    )
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    a, b = load_pair()
    images = np.stack([a, b])
    counts = {"n_anomalies": (10, 10), "n_raters": (9, 9)}
    cfg = SynthesisConfig(**counts, mixed_gradients=True, clip=False)
    syn = PPII(cfg)
    plan = syn.plan(images, np.random.default_rng(0), n_out=1)
    n_blends = sum(len(s.radii) for s in plan)
    results: dict = {"image": [512, 512], "anomalies": len(plan), "raters": 9, "blends": n_blends}
    print(f"P-PII sample: 512x512, {len(plan)} anomalies x 9 raters = {n_blends} blends")

    # --- this package's DST engine: one whole sample (planning included) -------------------------
    t_dst = timeit(lambda: syn.sample(a, b, rng=np.random.default_rng(0)), args.repeats)
    t_render = timeit(lambda: syn.sample(a, b, plan=plan), args.repeats)
    results["dst_sample_ms"] = t_dst * 1e3
    results["dst_render_ms"] = t_render * 1e3
    print(f"dst engine          : {t_dst * 1e3:8.2f} ms / sample (render only {t_render * 1e3:.2f} ms)")

    # --- the package's defaults against the paper's settings, same counts, side by side ----------------
    # (defaults: lung-placed, calibrated; the masks of a and b are computed once and then reused)
    from napari_ppii.anatomy import MASK_CACHE

    default_cfg, paper_cfg = SynthesisConfig(**counts), SynthesisConfig.paper("ppii", **counts)
    MASK_CACHE.clear()
    t_first = time.perf_counter()
    PPII(default_cfg).sample(a, b, rng=np.random.default_rng(0))
    t_first = time.perf_counter() - t_first
    t_default, t_paper = timeit_interleaved(
        lambda: PPII(default_cfg).sample(a, b, rng=np.random.default_rng(0)),
        lambda: PPII(paper_cfg).sample(a, b, rng=np.random.default_rng(0)),
        args.repeats,
    )
    results["default_sample_ms"] = t_default * 1e3
    results["default_first_sample_ms"] = t_first * 1e3
    results["paper_sample_ms"] = t_paper * 1e3
    results["default_vs_paper"] = t_default / t_paper
    print(
        f"defaults vs paper   : {t_default * 1e3:8.2f} ms vs {t_paper * 1e3:.2f} ms / sample -> "
        f"{t_default / t_paper:.2f}x (first default sample, masks computed: {t_first * 1e3:.1f} ms)"
    )

    # --- the original approach: whole-image sparse direct solve per blend ------------------------
    blends = blends_of(plan, images)
    k = max(1, min(args.sparse_blends, len(blends)))
    step = max(1, len(blends) // k)
    timed = blends[::step][:k]
    max_diff = 0.0
    t0 = time.perf_counter()
    for t, src, m, scale, sl in timed:
        nd = t.ndim
        v = P.masked_guidance(
            P.forward_gradients(t, nd), [scale * g for g in P.forward_gradients(src, nd)], m, mixed_gradients=True
        )
        ref = P.poisson_solve_sparse(a, sl, v)[sl]
        fast = P.poisson_solve(t, v)
        max_diff = max(max_diff, float(np.abs(ref - fast).max()))
    t_sparse = (time.perf_counter() - t0) / len(timed) * len(blends)
    results["sparse_sample_ms"] = t_sparse * 1e3
    results["sparse_blends_timed"] = len(timed)
    results["dst_vs_sparse_max_abs_diff"] = max_diff
    results["speedup_vs_sparse"] = t_sparse / t_dst
    print(
        f"whole-image sparse  : {t_sparse * 1e3:8.1f} ms / sample ({len(timed)} of {len(blends)} solves timed; "
        f"max |diff| {max_diff:.2e})  -> DST {t_sparse / t_dst:.0f}x faster"
    )

    # --- single 80x80 patch --------------------------------------------------------------------
    sl = (slice(200, 280), slice(150, 230))
    m80 = disc_masks((80, 80), [[[39.5, 39.5]]], [[20.0]], a)[0, 0]
    v80 = P.masked_guidance(P.forward_gradients(a[sl], 2), P.forward_gradients(b[sl], 2), m80, mixed_gradients=True)
    t80_dst = timeit(lambda: P.poisson_solve(a[sl], v80), args.repeats * 5)
    t80_sp = timeit(lambda: P.poisson_solve_sparse(a, sl, v80), 3)
    results["single_patch_80_dst_ms"] = t80_dst * 1e3
    results["single_patch_80_sparse_ms"] = t80_sp * 1e3
    results["single_patch_speedup"] = t80_sp / t80_dst
    print(f"one 80x80 blend     : DST {t80_dst * 1e3:.3f} ms, sparse {t80_sp * 1e3:.1f} ms -> {t80_sp / t80_dst:.0f}x")

    # --- peers ---------------------------------------------------------------------------------
    try:
        from pietorch import blend_dst_numpy

        def run_pie():
            for s in plan:
                src = images[s.source_index][s.source_slices] * s.gradient_scale
                masks = disc_masks(s.size, [s.centres], [s.radii], a)[0]
                for m in masks:
                    blend_dst_numpy(a, src, m, np.array([sl_.start for sl_ in s.target_slices]), True)

        t_pie = timeit(run_pie, max(3, args.repeats // 4))
        results["pietorch_sample_ms"] = t_pie * 1e3
        results["speedup_vs_pietorch"] = t_pie / t_dst
        print(f"PIE-torch (numpy)   : {t_pie * 1e3:8.1f} ms / sample -> DST {t_pie / t_dst:.1f}x faster")
    except ImportError:
        results["pietorch_sample_ms"] = None
        print("PIE-torch           : not installed (pip install pie-torch)")
    try:
        import cv2

        cv2.setNumThreads(1)
        a8 = cv2.cvtColor((a * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
        b8 = cv2.cvtColor((b * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)

        def run_cv():
            for s in plan:
                src = b8[s.source_slices]
                masks = (disc_masks(s.size, [s.centres], [s.radii], a)[0] > 0.5).astype(np.uint8) * 255
                cy, cx = ((st.start + st.stop) // 2 for st in s.target_slices)
                for m in masks:
                    cv2.seamlessClone(src, a8, m, (int(cx), int(cy)), cv2.MIXED_CLONE)

        t_cv = timeit(run_cv, max(3, args.repeats // 4))
        results["opencv_sample_ms"] = t_cv * 1e3
        results["speedup_vs_opencv"] = t_cv / t_dst
        print(f"OpenCV seamlessClone: {t_cv * 1e3:8.1f} ms / sample -> DST {t_cv / t_dst:.1f}x faster")
    except ImportError:
        results["opencv_sample_ms"] = None
        print("OpenCV              : not installed (pip install opencv-python-headless)")

    # --- batched torch path ----------------------------------------------------------------------
    dev = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    batch = torch.tensor(np.stack([a, b] * (args.batch // 2)), dtype=torch.float32, device=dev)
    rng = np.random.default_rng(1)
    default_syn = PPII(SynthesisConfig(size_step=8 if dev.startswith("cuda") else 1))

    def run_batch():
        default_syn.batch(batch, rng)
        if dev.startswith("cuda"):
            torch.cuda.synchronize()

    t_b = timeit(run_batch, max(3, args.repeats // 4))
    results["torch_batch_device"] = dev
    results["torch_batch_images_per_s"] = args.batch / t_b
    results["torch_threads"] = torch.get_num_threads()
    print(f"torch batched ({dev}): {args.batch / t_b:8.1f} images/s (batch {args.batch}, default P-PII parameters)")

    results["goals"] = {
        "speedup_vs_sparse>=200": results["speedup_vs_sparse"] >= 200,
        "default_vs_paper<=1.3": results["default_vs_paper"] <= 1.3,
        "sample<=50ms_one_core": results["dst_sample_ms"] <= 50,
        "gpu>=1000_images_per_s": (results["torch_batch_images_per_s"] >= 1000) if dev.startswith("cuda") else None,
    }
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
