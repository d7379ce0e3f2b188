# SPDX-License-Identifier: BSD-3-Clause
"""Peak memory of prediction and preview on big inputs, each scenario in a fresh process, side by side.

Scenarios (synthetic data, an untrained U-Net of the default size -- memory does not depend on weights):

* ``predict-2d``: a 2048x2048 radiograph;
* ``predict-ct``: a 512x512x600 CT volume, predicted slab by slab (the code path of ``ppii predict``);
* ``predict-ct-whole``: the same volume the way prediction worked before slabs (whole-volume
  pre-processing and one stack of slices) -- the reference the slab path is compared with;
* ``preview-slice``: the preview of one slice of that volume, 10 parameter changes in a row (the
  engine's caches as in the viewer): what each change adds after the first.

Reported per scenario: the input's size, the process's peak RSS, the peak above the RSS before the work
(model loaded, input in memory), and that extra memory as a multiple of the input; then the ratio
whole / slab measured in this run.  Usage: ``python benchmarks/bench_memory.py [--depth 600]``.
Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _volume(depth: int, size: int = 512):
    import numpy as np

    from napari_ppii.io import Scan

    rng = np.random.default_rng(0)
    vol = np.empty((depth, size, size), np.float32)
    base = rng.normal(-700, 150, (size, size)).astype(np.float32)
    for z in range(depth):  # slice by slice: the input is made without a second full copy
        vol[z] = base + np.float32(z % 50)
    return Scan(vol, (1.0, 0.7, 0.7), (0.0, 0.0, 0.0), np.eye(3), "CT")


def _checkpoint(folder: Path) -> Path:
    from napari_ppii.checkpoint import save_checkpoint
    from napari_ppii.config import PPIIConfig
    from napari_ppii.models import build_model

    cfg = PPIIConfig()
    return save_checkpoint(
        {"model": build_model(cfg.model).state_dict(), "config": cfg.to_dict(), "step": 0}, folder / "untrained.pt"
    )


def run_scenario(name: str, depth: int, ck: Path) -> dict:
    import numpy as np

    from napari_ppii.predict import Predictor

    pred = Predictor(ck)
    if name == "predict-2d":
        from napari_ppii.io import Scan

        scan = Scan(
            np.random.default_rng(0).random((2048, 2048)).astype(np.float32), (0.14, 0.14), (0, 0), np.eye(2), "DX"
        )
    else:
        scan = _volume(depth)
    input_mb = scan.array.nbytes / 2**20
    before = _rss_mb()
    t0 = time.perf_counter()
    if name in ("predict-2d", "predict-ct"):
        amap = pred.predict_scan(scan)
        assert amap.mean.shape == scan.shape
    elif name == "predict-ct-whole":
        from napari_ppii.preprocess import model_input, resize

        x = model_input(scan, pred.cfg)  # the whole volume at the model's size
        mean, var = pred.predict_images(x)
        mean = np.stack([resize(m, scan.shape[-2:]) for m in mean])
        var = np.stack([np.clip(resize(v, scan.shape[-2:]), 0, None) for v in var])
    elif name == "preview-slice":
        from napari_ppii.preview import PreviewEngine, PreviewRequest

        engine = PreviewEngine()
        cfg = pred.cfg.with_overrides(["synthesis.placement=anywhere"])
        after_first = None
        for i in range(10):
            c = cfg.with_values({"seed": i})
            engine.compute(PreviewRequest(i, scan, None, c, depth // 2, ("ct", None)))
            if i == 0:
                after_first = _rss_mb()
        per_change = (_rss_mb() - after_first) / 9.0
    else:
        raise SystemExit(f"unknown scenario {name}")
    out = {
        "scenario": name,
        "input_mb": round(input_mb, 1),
        "peak_rss_mb": round(_peak_mb(), 1),
        "extra_mb": round(_peak_mb() - before, 1),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    out["extra_x_input"] = round(out["extra_mb"] / input_mb, 2)
    if name == "preview-slice":
        out["rss_growth_per_change_mb"] = round(per_change, 2)
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--depth", type=int, default=600, help="slices of the CT volume (512x512 each)")
    ap.add_argument("--scenario", help=argparse.SUPPRESS)
    ap.add_argument("--checkpoint", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.scenario:  # child process: one scenario, one JSON line
        print(json.dumps(run_scenario(args.scenario, args.depth, args.checkpoint)))
        return {}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        ck = _checkpoint(Path(tmp))
        for name in ("predict-2d", "predict-ct", "predict-ct-whole", "preview-slice"):
            r = subprocess.run(
                [sys.executable, __file__, "--scenario", name, "--depth", str(args.depth), "--checkpoint", str(ck)],
                capture_output=True,
                text=True,
            )
            if r.returncode != 0:
                results[name] = {
                    "scenario": name,
                    "error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}",
                }
            else:
                results[name] = json.loads(r.stdout.strip().splitlines()[-1])
            print(json.dumps(results[name]), flush=True)
    print(f"\n{'scenario':18s} {'input MB':>9s} {'peak RSS MB':>12s} {'extra MB':>9s} {'extra/input':>12s} {'s':>7s}")
    for r in results.values():
        if "error" in r:
            print(f"{r['scenario']:18s} failed: {r['error']}")
            continue
        print(
            f"{r['scenario']:18s} {r['input_mb']:9.1f} {r['peak_rss_mb']:12.1f} {r['extra_mb']:9.1f} "
            f"{r['extra_x_input']:12.2f} {r['seconds']:7.1f}"
        )
    a, b = results.get("predict-ct-whole", {}), results.get("predict-ct", {})
    if "extra_mb" in a and "extra_mb" in b and b["extra_mb"] > 0:
        results["whole_over_slab_extra"] = round(a["extra_mb"] / b["extra_mb"], 2)
        print(f"\nextra memory, whole-volume path / slab path: {results['whole_over_slab_extra']:.2f}x")
    if "rss_growth_per_change_mb" in results.get("preview-slice", {}):
        print(
            f"preview of one slice: {results['preview-slice']['rss_growth_per_change_mb']:.2f} MB RSS growth per change"
        )
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
