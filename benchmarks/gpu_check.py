# SPDX-License-Identifier: BSD-3-Clause
"""One prepared check for a machine with one GPU (issue 21): everything a short GPU lease should measure,
in one command that finishes in well under 10 minutes, printing one JSON line.

* ``train``: steps/s of the trainer's own step at the paper's setting (U-Net, 512x512, batch 16, base 32,
  synthesis on the GPU, bf16 autocast + channels_last), with the achieved GFLOP/s;
* ``synthesis``: batched P-PII images/s on the device (batch 16 at 512x512, default parameters);
* ``agreement``: the same P-PII plan rendered by the NumPy engine on the CPU and by the torch engine on the
  device: max |difference| of image and label (float32 on the device against float64);
* ``predict``: seconds to predict a 512x512x300 CT volume (random weights at base 32: the time, not a map);
* ``peak_memory_gib``: torch's peak allocated GPU memory over the whole check.

``--cpu-smoke`` runs the same path on the CPU at toy sizes (64x64, batch 2, base 4, an 8-slice CT) in well
under two minutes: the test suite runs it, so the GPU check cannot rot between leases.

    bash benchmarks/gpu_check.sh               # on the GPU machine
    bash benchmarks/gpu_check.sh --cpu-smoke   # anywhere
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from napari_ppii.config import PPIIConfig, SynthesisConfig  # noqa: E402
from napari_ppii.synthesis import make_synthesizer  # noqa: E402


def _images(size: int, n: int) -> np.ndarray:
    """The bundled NIH radiographs at ``size`` (repeated to ``n``)."""
    from napari_ppii.training.data import load_normal_images

    cfg = PPIIConfig().with_overrides([f"data.train={ROOT / 'resources' / 'nih-cxr'}", f"data.image_size={size}"])
    imgs = load_normal_images(cfg)
    return np.concatenate([imgs] * (n // len(imgs) + 1))[:n]


def check(device: str, size: int, batch: int, base: int, steps: int, ct_shape: tuple[int, int, int]) -> dict:
    from bench_training import time_trainer

    from napari_ppii.checkpoint import save_checkpoint
    from napari_ppii.io.scan import Scan
    from napari_ppii.models import build_model
    from napari_ppii.predict import Predictor

    dev = torch.device(device)
    cuda = dev.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    out: dict = {
        "device": torch.cuda.get_device_name(dev) if cuda else "cpu",
        "torch": torch.__version__,
        "size": size,
        "batch": batch,
        "base_channels": base,
    }
    t_all = time.perf_counter()
    imgs = _images(size, max(batch, 4))

    # 1. training at the paper's setting
    cfg = PPIIConfig().with_overrides(
        [
            f"data.image_size={size}",
            f"model.base_channels={base}",
            f"training.batch_size={batch}",
            f"training.device={device}",
            "data.val_samples=2",
            "synthesis.placement=lungs",
        ]
        + (["synthesis.size_step=8"] if cuda else [])
    )
    r = time_trainer(cfg, imgs, steps, max(1, steps // 5))
    out["train"] = {k: r[k] for k in ("path", "steps_per_s", "images_per_s", "gflop_per_s", "gflop_per_step", "loss")}

    # 2. batched synthesis on the device
    syn = make_synthesizer(SynthesisConfig(size_step=8 if cuda else 1))
    x = torch.as_tensor(imgs[:batch], dtype=torch.float32, device=dev)
    rng = np.random.default_rng(0)
    syn.batch(x, rng)
    sync()
    t = time.perf_counter()
    reps = 5 if cuda else 2
    for _ in range(reps):
        syn.batch(x, rng)
    sync()
    out["synthesis"] = {"images_per_s": reps * batch / (time.perf_counter() - t)}

    # 3. CPU (NumPy, float64) against the device (torch, float32) on one plan
    pair = imgs[:2].astype(np.float64)
    ref_syn = make_synthesizer(SynthesisConfig())
    plan = ref_syn.plan(pair, np.random.default_rng(1), n_out=1)
    a = ref_syn.batch(pair, plan=plan, n_out=1)[0]
    b = ref_syn.batch(torch.as_tensor(pair, dtype=torch.float32, device=dev), plan=plan, n_out=1)[0]
    out["agreement"] = {
        "image_max_abs_diff": float(np.abs(np.asarray(b.image.cpu()) - a.image).max()),
        "label_max_abs_diff": float(np.abs(np.asarray(b.label.cpu()) - a.label).max()),
        "anomalies": len(plan),
    }

    # 4. prediction of a whole CT volume
    with tempfile.TemporaryDirectory() as tmp:
        pcfg = PPIIConfig().with_overrides([f"model.base_channels={base}", f"data.image_size={ct_shape[1]}"])
        model = build_model(pcfg.model)
        ck = save_checkpoint({"model": model.state_dict(), "config": pcfg.to_dict(), "step": 0}, Path(tmp) / "m.pt")
        pred = Predictor(ck, device=device)
        vol = np.random.default_rng(2).normal(-700, 200, ct_shape).astype(np.float32)
        scan = Scan(vol, (2.5, 0.7, 0.7), (0.0, 0.0, 0.0), np.eye(3), "CT")
        sync()
        t = time.perf_counter()
        amap = pred.predict_scan(scan)
        sync()
        out["predict"] = {
            "shape": list(ct_shape),
            "seconds": time.perf_counter() - t,
            "finite": bool(np.isfinite(amap.mean).all()),
        }
    out["peak_memory_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30 if cuda else None
    out["seconds"] = time.perf_counter() - t_all
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cpu-smoke", action="store_true", help="the same path on the CPU at toy sizes")
    ap.add_argument("--steps", type=int, default=50)
    args = ap.parse_args(argv)
    if args.cpu_smoke:
        res = check("cpu", 64, 2, 4, 2, (8, 64, 64))
    else:
        if not torch.cuda.is_available():
            res = {"error": "no CUDA device: run with --cpu-smoke on a machine without a GPU"}
            print(json.dumps(res))
            return res
        res = check("cuda", 512, 16, 32, args.steps, (300, 512, 512))
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    main()
