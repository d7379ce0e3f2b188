# SPDX-License-Identifier: BSD-3-Clause
"""bf16 vs fp32 parity: the validation curves of two runs of the same configuration and seed, side by side.

    ppii train --config configs/nih_ppii_unet.yaml --set training.steps=600 --set training.val_every=100 \\
        --set training.out_dir=runs/parity_bf16
    ppii train ... --set training.amp=false --set training.channels_last=false --set training.out_dir=runs/parity_fp32
    python benchmarks/parity_table.py runs/parity_bf16 runs/parity_fp32

Prints a Markdown table (synthetic validation Dice, selection score and loss at each validation, both
runs) and, last, one JSON line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from napari_ppii.training import read_log  # noqa: E402


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    runs = [Path(a) for a in argv]
    logs = {r.name: read_log(r / "log.jsonl") for r in runs}
    paths = {n: next(x["precision"] for x in log if x["event"] == "start") for n, log in logs.items()}
    vals = {n: {x["step"]: x for x in log if x["event"] == "val"} for n, log in logs.items()}
    speed = {n: [x["images_per_s"] for x in log if x["event"] == "step"][-1] for n, log in logs.items()}
    steps = sorted(set.intersection(*(set(v) for v in vals.values())))
    names = list(logs)
    print("| step | " + " | ".join(f"{n}: val Dice / select score / loss" for n in names) + " |")
    print("|---|" + "---|" * len(names))
    for s in steps:
        print(
            f"| {s} | "
            + " | ".join(
                f"{vals[n][s]['val_dice']:.3f} / {vals[n][s]['select_score']:.3f} / {vals[n][s]['loss']:.3f}"
                for n in names
            )
            + " |"
        )
    res = {
        "paths": paths,
        "images_per_s": speed,
        "curves": {n: {s: [vals[n][s]["val_dice"], vals[n][s]["select_score"]] for s in steps} for n in names},
    }
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    main()
