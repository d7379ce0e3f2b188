# SPDX-License-Identifier: BSD-3-Clause
"""Peak memory of ``ppii synthesize``, ``ppii predict`` and ``ppii evaluate`` on a real CT series, each in a
fresh process, against the budget of issue 22: 2.5 x the volume's float32 size + 1 GB of fixed overhead
(LIDC-IDRI-0002, 261 x 512 x 512: 274 MB of float32, so <= 1.71 GB).  Also the size of the map files
``ppii predict`` writes.

    python benchmarks/bench_cli_memory.py [--series ../shared/data/lidc-idri-0002/dicom] [--only synthesize]

Reads ``../shared/data`` (says so and exits when it is absent).  Peak RSS is the child's own
(``wait4``'s ``ru_maxrss``), not this script's.  Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
PPII = [sys.executable, "-m", "napari_ppii.cli"]


def run_child(cmd: list[str]) -> dict:
    """Run ``cmd``; its exit status, peak RSS (MB) and wall time."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate()
    # communicate() reaped the child; its rusage is in RUSAGE_CHILDREN as a maximum over children, so
    # each command runs in its own python -c wrapper that reports its own peak (below)
    return {"rc": proc.returncode, "seconds": round(time.perf_counter() - t0, 1), "stdout": out, "stderr": err}


def measured(args: list[str]) -> dict:
    """``ppii ARGS`` in a fresh interpreter that prints its own peak RSS when done."""
    code = (
        "import resource, sys, json; from napari_ppii.cli import main; "
        f"rc = main({args!r}); "
        "print('PEAK', json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)); sys.exit(rc)"
    )
    r = run_child([sys.executable, "-c", code])
    peak = [line for line in r["stdout"].splitlines() if line.startswith("PEAK ")]
    r["peak_mb"] = round(float(peak[-1].split()[1]), 1) if peak else None
    return r


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=Path, default=SHARED / "lidc-idri-0002" / "dicom")
    ap.add_argument("--boxes", type=Path, default=SHARED / "lidc-idri-0002" / "071.xml")
    ap.add_argument("--checkpoint", type=Path, default=ROOT / "resources" / "models" / "lidc_unet_demo.pt")
    ap.add_argument("--only", nargs="*", default=["synthesize", "predict", "evaluate"])
    args = ap.parse_args(argv)
    if not args.series.exists():
        print(f"bench_cli_memory: {args.series} is absent (../shared/data): nothing measured")
        return {}
    sys.path.insert(0, str(ROOT / "src"))
    from napari_ppii.io.readers import series_geometry

    geo = series_geometry(args.series)
    shape = (len(geo.files), int(geo.first_header.Rows), int(geo.first_header.Columns))
    volume_mb = shape[0] * shape[1] * shape[2] * 4 / 2**20
    budget = 2.5 * volume_mb + 1024
    results: dict = {"shape": shape, "float32_mb": round(volume_mb, 1), "budget_mb": round(budget, 1)}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cmds = {
            "synthesize": ["synthesize", str(args.series), "--out", str(tmp / "syn")],
            "predict": [
                "predict",
                str(args.series),
                "--checkpoint",
                str(args.checkpoint),
                "--out",
                str(tmp / "pred"),
                "--quiet",
            ],
            "evaluate": [
                "evaluate",
                "--checkpoint",
                str(args.checkpoint),
                "--data",
                str(args.series),
                "--boxes",
                str(args.boxes),
                "--out",
                str(tmp / "eval"),
                "--n-boot",
                "100",
                "--quiet",
            ],
        }
        for name in args.only:
            r = measured(cmds[name])
            row = {"rc": r["rc"], "peak_mb": r["peak_mb"], "seconds": r["seconds"]}
            if r["peak_mb"] is not None:
                row["peak_over_budget"] = round(r["peak_mb"] / budget, 2)
                row["within_budget"] = r["peak_mb"] <= budget
            if r["rc"] != 0:
                row["error"] = (r["stderr"].strip().splitlines() or ["?"])[-1]
            if name == "predict" and r["rc"] == 0:
                maps = sorted((tmp / "pred").glob("*.nii*"))
                row["files_mb"] = {p.name: round(p.stat().st_size / 2**20, 1) for p in maps}
            results[name] = row
            print(json.dumps({name: row}), flush=True)
    print(f"\nCT {shape}: float32 {volume_mb:.0f} MB, budget 2.5x + 1 GB = {budget:.0f} MB")
    for name in args.only:
        r = results[name]
        print(
            f"  {name:10s} peak RSS {r['peak_mb']} MB ({r.get('peak_over_budget')} of the budget) in {r['seconds']} s"
            + (f"  FAILED: {r.get('error')}" if r["rc"] not in (0, 1) else "")
        )
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
