# SPDX-License-Identifier: BSD-3-Clause
"""Benchmark: the trainer's own step, default precision path against fp32/NCHW, side by side in one run.

Each configuration builds a real :class:`~napari_ppii.training.loop.Trainer` on the bundled NIH
radiographs and times ``Trainer.step`` (draw a batch, P-PII synthesis in the loop, forward, BCE+Dice,
backward, Adam) after warm-up steps.  The default path is bf16 autocast + channels_last where the
hardware has native bf16 (CUDA, AVX512-BF16 / AMX CPUs) and fp32 elsewhere, eager on the CPU, with
``training.fast_layers`` (up-convolutions and the head as matrix products, concatenations convolved part by
part) and freed memory retained; the reference is the same step with ``training.amp=false
training.channels_last=false`` (and, as the trainer's CPU path before issue 23, the allocator as it comes).
The Table 1 setting: U-Net base 16, 256x256, batch 8.
Achieved GFLOP/s counts the model's forward + backward FLOPs (torch's FlopCounterMode; synthesis and the
optimiser are not counted) over the whole step time.

Usage: ``python benchmarks/bench_training.py [--size 256] [--batch 8] [--base-channels 16] [--steps 8]
[--threads N] [--device cpu] [--rounds R]``.  Each row runs in a fresh process (the allocator setting,
``training.retain_memory``, is process-wide).  Rows: fp32 (the trainer's CPU path before issue 23: fp32, NCHW,
eager, the batch drawn inside the step, the C library's allocator as it comes), fp32 with freed memory retained
(the allocator's share, apart from precision's), the default with the standard up-convolution and head kernels
(``training.fast_layers=false``), the default compiled (``training.compile=always``; the warm-up steps include
the compilation, which is not timed), the default with the allocator as it comes, the default, and the default
with ``training.prefetch`` (the next batch drawn in a background thread while the step runs; off by default).
Last line: one JSON object with ``speedup`` (default / fp32 steps/s), ``speedup_same_allocator`` (default / fp32
with freed memory retained: precision, layout and layers alone), ``fast_layers_gain``, ``speedup_compiled`` and
``prefetch_gain`` (prefetch / default), and ``speedup_median`` (default / fp32 of the rows' median rounds).
With prefetch the first timed step's batch was drawn during the last warm-up step: time several steps
(the default 8) -- a one-step smoke run (``--steps 1``) printed prefetch / default 4.6x at 64x64 on one thread
beside a training: partly that, partly a core the one-thread step left free; no figure to report.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from napari_ppii.config import PPIIConfig  # noqa: E402
from napari_ppii.training.data import load_normal_images  # noqa: E402
from napari_ppii.training.loop import Trainer  # noqa: E402


def step_gflop(trainer: Trainer) -> float:
    """Forward + backward FLOPs of one training step's model pass (no optimiser, no synthesis)."""
    from torch.utils.flop_counter import FlopCounterMode

    b = trainer.batches.draw(np.random.default_rng(1), trainer.t.batch_size)
    counter = FlopCounterMode(display=False)
    with counter:
        logits, aux = trainer.step_fn(b.image, b.label)
        (logits.float().mean() + aux.float()).backward()
    trainer.opt.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 1e9


def time_trainer(cfg: PPIIConfig, images: np.ndarray, steps: int, warmup: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = cfg.with_overrides([f"training.out_dir={tmp}"])
        tr = Trainer(cfg, images=images)
        for _ in range(warmup):
            tr.step()
        sync = torch.cuda.synchronize if tr.device.type == "cuda" else (lambda: None)
        sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            tr.step()
        sync()
        dt = (time.perf_counter() - t0) / steps
        tr.close()  # the prefetched batch's draw, before the FLOP count draws one of its own
        gflop = step_gflop(tr)
        return {
            "path": tr.path["path"],
            "s_per_step": dt,
            "steps_per_s": 1 / dt,
            "images_per_s": cfg.training.batch_size / dt,
            "gflop_per_step": gflop,
            "gflop_per_s": gflop / dt,
            "loss": tr.loss,
            "allocator": tr.allocator,
        }


# the rows, each timed in a process of its own (the allocator setting is process-wide and cannot be undone)
ROWS = (
    # the trainer's CPU path before issue 23: fp32, NCHW, eager, the batch drawn inside the step, the C
    # library's allocator as it comes
    (
        "fp32",
        [
            "training.amp=false",
            "training.channels_last=false",
            "training.compile=never",
            "training.prefetch=false",
            "training.retain_memory=false",
        ],
    ),
    # the same with freed memory retained: the allocator's share of the speed-up, apart from precision's
    ("fp32_retain", ["training.amp=false", "training.channels_last=false", "training.compile=never"]),
    # the default before training.fast_layers: oneDNN's strided up-convolution and 1x1-head kernels
    ("standard_layers", ["training.fast_layers=false"]),
    # the default step compiled (the default for long CPU runs until compiling was measured slower here)
    ("compiled", ["training.compile=always"]),
    # the default with the allocator as it comes: the allocator's share on the default path
    ("default_system", ["training.retain_memory=false"]),
    ("default", []),
    ("prefetch", ["training.prefetch=true"]),
)


def base_config(args) -> PPIIConfig:
    return PPIIConfig().with_overrides(
        [
            f"data.train={ROOT / 'resources' / 'nih-cxr'}",
            f"data.image_size={args.size}",
            f"model.base_channels={args.base_channels}",
            f"training.batch_size={args.batch}",
            f"training.device={args.device}",
            "data.val_samples=2",
            "synthesis.placement=lungs",
        ]
        + ([f"training.num_threads={args.threads}"] if args.threads else [])
    )


def time_row(args, name: str) -> dict:
    """One row, in this process (``--row``): the trainer's step timed, one JSON line printed."""
    if args.threads:
        torch.set_num_threads(args.threads)
    base = base_config(args)
    over = dict(ROWS)[name]
    if name == "compiled":
        over = [f"training.compile={args.compile}"]
    r = time_trainer(base.with_overrides(over), load_normal_images(base), args.steps, args.warmup)
    r.update(threads=torch.get_num_threads(), prefetch="training.prefetch=true" in over)
    return r


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--base-channels", type=int, default=16)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, all cores)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="time every row this many times, interleaved; each row's best round counts",
    )
    ap.add_argument(
        "--compile",
        default="always",
        choices=["auto", "always", "never"],
        help="training.compile of the 'compiled' row (never: a quick run without the compiler)",
    )
    ap.add_argument("--row", choices=[n for n, _ in ROWS], help=argparse.SUPPRESS)  # one row, in this process
    args = ap.parse_args(argv)
    if args.row:
        r = time_row(args, args.row)
        print(json.dumps(r))
        return r
    res = {
        "device": args.device,
        "size": args.size,
        "batch": args.batch,
        "base_channels": args.base_channels,
        "steps": args.steps,
    }
    passed = list(argv if argv is not None else sys.argv[1:])
    rounds: dict[str, list[float]] = {}
    for rnd in range(args.rounds):
        for name, _ in ROWS:
            out = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), *passed, "--row", name],
                capture_output=True,
                text=True,
            )
            if out.returncode != 0:
                raise SystemExit(f"row {name} failed:\n{out.stderr[-2000:]}")
            r = json.loads(out.stdout.strip().splitlines()[-1])
            r["round"] = rnd
            res["threads"] = r["threads"]
            rounds.setdefault(name, []).append(r["s_per_step"])
            if name not in res or r["s_per_step"] < res[name]["s_per_step"]:
                res[name] = r
            print(
                f"{name:11s} [{r['path']}{', prefetch' if r['prefetch'] else ''}; allocator: {r['allocator']}] "
                f"round {rnd + 1}: {r['s_per_step']:.3f} s/step, {r['images_per_s']:.2f} images/s, "
                f"{r['gflop_per_s']:.0f} GFLOP/s ({r['gflop_per_step']:.1f} GFLOP/step)",
                flush=True,
            )
    for name, times in rounds.items():
        res[name]["rounds_s_per_step"] = times
        res[name]["median_s_per_step"] = float(np.median(times))
    ratio = lambda a, b: res[a]["steps_per_s"] / res[b]["steps_per_s"]  # noqa: E731
    # the same ratio of the rows' median rounds: less flattering than the best where rounds vary
    res["speedup_median"] = res["fp32"]["median_s_per_step"] / res["default"]["median_s_per_step"]
    res["speedup"] = ratio("default", "fp32")
    res["speedup_compiled"] = ratio("compiled", "fp32")
    res["fast_layers_gain"] = ratio("default", "standard_layers")
    res["speedup_prefetch"] = ratio("prefetch", "fp32")
    res["prefetch_gain"] = ratio("prefetch", "default")
    res["retain_gain_fp32"] = ratio("fp32_retain", "fp32")
    res["retain_gain_default"] = ratio("default", "default_system")
    res["speedup_same_allocator"] = ratio("default", "fp32_retain")
    print(
        f"speedup default / fp32: {res['speedup']:.2f}x (compiled: {res['speedup_compiled']:.2f}x; fast layers / "
        f"standard layers {res['fast_layers_gain']:.2f}x; with "
        f"prefetch: {res['speedup_prefetch']:.2f}x, prefetch / default {res['prefetch_gain']:.2f}x); freed memory "
        f"retained: fp32 {res['retain_gain_fp32']:.2f}x, default {res['retain_gain_default']:.2f}x; default / fp32 "
        f"with the same allocator: {res['speedup_same_allocator']:.2f}x"
        + (
            f"; best of {args.rounds} rounds per row (medians: default / fp32 {res['speedup_median']:.2f}x)"
            if args.rounds > 1
            else ""
        )
    )
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    main()
