"""Benchmark: training steps/s and images/s per backbone, with on-the-fly P-PII synthesis in the step.

Each configuration runs the trainer's own step (draw a batch of normal images, synthesise P-PII
anomalies with the batched torch engine on the training device, forward, BCE+Dice loss, backward, Adam)
on the bundled NIH radiographs, after warm-up steps.  CPU by default (here: 2 cores); with CUDA it also
runs the paper's setting, U-Net at 512x512, batch 16, synthesis on the GPU, bf16 autocast and
channels_last (goal >= 14 steps/s on an H200: 100,000 steps in under 2 hours).
Usage: ``python benchmarks/bench_training.py [--sizes 256 512] [--batch 4] [--steps 3] [--device cuda]``.
Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from napari_ppii.config import PPIIConfig  # noqa: E402
from napari_ppii.models import build_model  # noqa: E402
from napari_ppii.training.data import SyntheticBatches, load_normal_images  # noqa: E402
from napari_ppii.training.losses import segmentation_loss  # noqa: E402
from napari_ppii.training.loop import _TrainStep  # noqa: E402


def time_steps(cfg: PPIIConfig, images: np.ndarray, device: torch.device, steps: int, warmup: int) -> dict:
    model = build_model(cfg.model).to(device)
    cuda = device.type == "cuda"
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    batches = SyntheticBatches(images, cfg, device)
    step_fn = _TrainStep(model)
    rng = np.random.default_rng(0)
    t_synth = 0.0

    def one():
        nonlocal t_synth
        ts = time.perf_counter()
        b = batches.draw(rng, cfg.training.batch_size)
        if cuda:
            torch.cuda.synchronize()
        t_synth += time.perf_counter() - ts
        x = b.image.contiguous(memory_format=torch.channels_last) if cuda else b.image
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=cuda):
            logits, aux = step_fn(x, b.label)
        loss = segmentation_loss(logits, b.label) + aux.float()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        one()
    if cuda:
        torch.cuda.synchronize()
    t_synth = 0.0
    t0 = time.perf_counter()
    for _ in range(steps):
        one()
    if cuda:
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    out = {"steps_per_s": steps / dt, "images_per_s": steps * cfg.training.batch_size / dt,
           "synthesis_share": t_synth / dt}
    if cuda:
        out["max_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        torch.cuda.reset_peak_memory_stats(device)
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--batch", type=int, default=4, help="CPU batch size (the GPU setting uses 16)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--base-channels", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backbones", nargs="+", default=["unet", "mc_unet", "phiseg"])
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    results = {"device": str(device), "threads": torch.get_num_threads(), "runs": []}
    for size in args.sizes:
        base = PPIIConfig().with_overrides([f"data.train={ROOT / 'resources' / 'nih-cxr'}", f"data.image_size={size}",
                                            f"model.base_channels={args.base_channels}", f"training.batch_size={args.batch}"])
        images = load_normal_images(base)
        for backbone in args.backbones:
            cfg = base.with_overrides([f"model.backbone={backbone}"])
            r = time_steps(cfg, images, device, args.steps, args.warmup)
            r.update(backbone=backbone, size=size, batch=args.batch)
            results["runs"].append(r)
            print(f"{backbone:8s} {size}x{size} batch {args.batch}: {r['steps_per_s']:.3f} steps/s, "
                  f"{r['images_per_s']:.2f} images/s (synthesis {100 * r['synthesis_share']:.0f}% of the step)", flush=True)
    if device.type == "cuda":
        cfg = PPIIConfig().with_overrides([f"data.train={ROOT / 'resources' / 'nih-cxr'}", "data.image_size=512",
                                           f"model.base_channels={args.base_channels}", "training.batch_size=16",
                                           "synthesis.size_step=8"])
        r = time_steps(cfg, load_normal_images(cfg), device, max(args.steps, 50), max(args.warmup, 10))
        r.update(backbone="unet", size=512, batch=16, goal_steps_per_s=14, goal_met=r["steps_per_s"] >= 14)
        results["paper_setting"] = r
        print(f"paper setting (U-Net 512x512, batch 16, GPU synthesis): {r['steps_per_s']:.2f} steps/s "
              f"(goal >= 14), {r['images_per_s']:.0f} images/s")
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
