# SPDX-License-Identifier: BSD-3-Clause
"""The benchmarks run (tiny repeat counts): a change that breaks one fails here, not months later."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np

from napari_ppii.anatomy import MASK_CACHE, lung_mask_cxr

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _bench(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_synthesis_runs_with_the_defaults_and_the_papers_settings():
    res = _bench("bench_synthesis").main(["--repeats", "1", "--sparse-blends", "1", "--batch", "2"])
    for k in (
        "dst_sample_ms",
        "default_sample_ms",
        "paper_sample_ms",
        "default_vs_paper",
        "sparse_sample_ms",
        "torch_batch_images_per_s",
    ):
        assert math.isfinite(res[k]) and res[k] > 0, k
    # the DST engine solves the same discrete problem as the whole-image sparse solve
    assert res["dst_vs_sparse_max_abs_diff"] < 1e-8
    assert set(res["goals"]) >= {"speedup_vs_sparse>=200", "default_vs_paper<=1.3"}


def test_bench_training_compares_the_default_path_with_fp32():
    res = _bench("bench_training").main(
        ["--size", "64", "--batch", "2", "--steps", "1", "--warmup", "0", "--base-channels", "4", "--compile", "never"]
    )
    assert res["fp32"]["path"] == "cpu fp32"
    assert res["default"]["gflop_per_step"] == res["fp32"]["gflop_per_step"] > 0
    assert math.isfinite(res["speedup"]) and res["speedup"] > 0
    # each row ran in a process of its own: the baseline kept the C library's allocator as it comes, the
    # others retained freed memory where glibc lets them
    import platform

    assert res["fp32"]["allocator"] == "system"
    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert res["default_system"]["allocator"] == "system"
    for row in ("fp32_retain", "standard_layers", "compiled", "default", "prefetch"):
        assert res[row]["allocator"].startswith("glibc") == glibc, row
    assert math.isfinite(res["speedup_same_allocator"]) and res["speedup_same_allocator"] > 0
    # the fast layers run where the channels_last path does (a native-bf16 CPU), never in their own baseline
    assert ("fast-layers" in res["default"]["path"]) == ("channels_last" in res["default"]["path"])
    assert "fast-layers" not in res["standard_layers"]["path"] and "compiled" not in res["compiled"]["path"]
    assert math.isfinite(res["fast_layers_gain"]) and res["fast_layers_gain"] > 0
    assert res["default"]["rounds_s_per_step"] == [res["default"]["s_per_step"]]  # one round: best = median
    assert math.isclose(res["speedup_median"], res["speedup"], rel_tol=1e-12)


def test_bench_methods_times_this_tree_against_a_commit():
    import shutil
    import subprocess

    import pytest

    root = BENCH.parent
    if shutil.which("git") is None or subprocess.run(["git", "rev-parse", "HEAD"], cwd=root).returncode != 0:
        pytest.skip("not a git checkout")
    res = _bench("bench_methods").main(["--against", "HEAD", "--rounds", "1", "--batches", "1", "--size", "64"])
    assert set(res["methods"]) == {"ppii", "pii", "fpi", "nsa"}
    assert all(math.isfinite(r["ratio"]) and r["this_ms"] > 0 and r["other_ms"] > 0 for r in res["methods"].values())


def test_radiograph_masks_are_computed_once_per_image():
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:128, :128] / 128.0
    img = 0.8 - 0.5 * ((np.abs(xx - 0.3) < 0.12) | (np.abs(xx - 0.7) < 0.12)) * ((yy > 0.2) & (yy < 0.8))
    img = img + 0.01 * rng.standard_normal(img.shape)
    MASK_CACHE.clear()
    a = lung_mask_cxr(img)
    assert (MASK_CACHE.hits, MASK_CACHE.misses) == (0, 1)
    a[:] = True  # the caller's copy: the cache keeps its own
    b = lung_mask_cxr(img.copy())
    assert (MASK_CACHE.hits, MASK_CACHE.misses) == (1, 1) and not b.all() and b.any()
    # another image (or another setting) is another mask
    lung_mask_cxr(img + 1e-3)
    lung_mask_cxr(img, dilate=0.0)
    assert MASK_CACHE.misses == 3


def test_gpu_check_cpu_smoke_runs_the_whole_path():
    res = _bench("gpu_check").main(["--cpu-smoke"])
    assert res["device"] == "cpu" and res["peak_memory_gib"] is None
    assert res["train"]["steps_per_s"] > 0 and res["train"]["gflop_per_step"] > 0
    assert res["synthesis"]["images_per_s"] > 0
    # the torch engine (float32) renders the NumPy engine's plan (float64) alike
    assert res["agreement"]["anomalies"] >= 1
    assert res["agreement"]["image_max_abs_diff"] < 1e-4 and res["agreement"]["label_max_abs_diff"] < 1e-3
    assert res["predict"]["finite"] and res["predict"]["shape"] == [8, 64, 64]
