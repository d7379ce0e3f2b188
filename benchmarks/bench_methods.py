# SPDX-License-Identifier: BSD-3-Clause
"""Benchmark: each synthesis method's batch, this tree against another commit's, side by side in one run.

    python benchmarks/bench_methods.py --against 4d6ea48 [--rounds 6] [--batches 10] [--size 256]

The other commit's ``src/`` is taken with ``git archive`` into a temporary folder; each round times both
trees one after the other in fresh processes (``make_synthesizer(...).batch`` on 8 images, placement
anywhere, after one warm-up batch), so a machine shared with other work slows both alike.  Reports the
median ms per batch of each tree and the ratio this tree / the other.  Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("ppii", "pii", "fpi", "nsa")

TIMER = """
import json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
from napari_ppii.synthesis import make_synthesizer
from napari_ppii.config import SynthesisConfig
n, size = int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
imgs = np.stack([np.clip(rng.normal(0.5, 0.1, (size, size)), 0, 1) for _ in range(8)])
out = {}
for m in sys.argv[4].split(","):
    s = make_synthesizer(SynthesisConfig(method=m, placement="anywhere"))
    s.batch(imgs, np.random.default_rng(1))
    t0 = time.perf_counter()
    for i in range(n):
        s.batch(imgs, np.random.default_rng(i))
    out[m] = (time.perf_counter() - t0) / n * 1e3
print(json.dumps(out))
"""


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--against", required=True, help="a commit (or any git revision) of this repository")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        blob = subprocess.run(
            ["git", "archive", "--format=tar", args.against, "src"], cwd=ROOT, capture_output=True, check=True
        ).stdout
        with tarfile.open(fileobj=BytesIO(blob)) as tar:
            tar.extractall(tmp, filter="data")
        trees = {"other": str(Path(tmp) / "src"), "this": str(ROOT / "src")}
        times: dict[str, dict[str, list[float]]] = {t: {m: [] for m in METHODS} for t in trees}
        for r in range(args.rounds):
            for name, src in trees.items():
                cmd = [sys.executable, "-c", TIMER, src, str(args.batches), str(args.size), ",".join(METHODS)]
                run = subprocess.run(cmd, capture_output=True, text=True, check=True)
                res = json.loads(run.stdout.splitlines()[-1])
                for m, v in res.items():
                    times[name][m].append(v)
            print(f"round {r + 1}/{args.rounds} done", flush=True)
    out = {"against": args.against, "rounds": args.rounds, "batch": 8, "size": args.size, "methods": {}}
    print(f"{'method':6s} {args.against:>12s} {'this tree':>10s}  ratio (median ms per batch of 8)")
    for m in METHODS:
        a, b = statistics.median(times["other"][m]), statistics.median(times["this"][m])
        out["methods"][m] = {"other_ms": a, "this_ms": b, "ratio": b / a}
        print(f"{m:6s} {a:12.1f} {b:10.1f}  {b / a:.2f}")
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
