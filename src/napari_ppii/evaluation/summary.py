# SPDX-License-Identifier: BSD-3-Clause
"""A few plain lines from an evaluation's ``metrics.json``: where the model's strongest detections land,
with its pixel AUROC and FROC@10FP (95% CIs) beside every non-learned floor's.  ``ppii evaluate`` prints
them; for a ``metrics.json`` written earlier:

    python -m napari_ppii.evaluation.summary out/eval/metrics.json
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path


def fmt_ci(m: dict, key: str, digits: int = 3, ci_digits: int | None = None) -> str:
    """``m[key]`` with its 95% CI ``m[key + '_ci']``, e.g. ``0.838 [0.777, 0.895]``; ``n/a`` for a missing
    or non-finite figure; the CI only where both ends are finite.  The one formatter of the report, the
    summary lines and the evaluation dock."""
    v, ci = m.get(key), m.get(f"{key}_ci")
    if v is None or not math.isfinite(v):
        return "n/a"
    cd = digits if ci_digits is None else ci_digits
    if ci and all(c is not None and math.isfinite(c) for c in ci):
        return f"{v:.{digits}f} [{ci[0]:.{cd}f}, {ci[1]:.{cd}f}]"
    return f"{v:.{digits}f}"


def _top1(m: dict) -> str:
    k, n = m["top1_hits"]
    return f"{k} of {n}"


def first_hit_lines(first_hit: dict, most: int = 40) -> str:
    """One line per image (slice) with a lesion: does its strongest detection land on it, and if not,
    which candidate does first."""
    lines = []
    for name, rank in list(first_hit.items())[:most]:
        what = (
            "strongest detection on the lesion"
            if rank == 1
            else f"first detection on a lesion is candidate {rank}"
            if rank
            else "no candidate on a lesion"
        )
        lines.append(f"  {name}: {what}")
    if len(first_hit) > most:
        lines.append(f"  ... and {len(first_hit) - most} more in metrics.json (first_hit)")
    return "\n".join(lines)


def summarise(metrics: dict) -> str:
    """The summary text of one evaluation (2D images, or a volume scored per slice and per 3D lesion)."""
    volume = "per_slice" in metrics
    flat = metrics.get("per_slice", metrics)
    unit = "slices" if volume else "images"
    lines = []
    if volume and "top1_hits" in metrics.get("per_lesion_3d", {}):
        k, n = metrics["per_lesion_3d"]["top1_hits"]
        lines.append(
            f"the volume's strongest detection lies on a lesion: {'yes' if k == n else 'no'} "
            f"({k} of {n} volume{'s' if n != 1 else ''} with lesions)"
        )
    if "top1_hits" in flat:
        lines.append(
            f"each of the {flat['top1_hits'][1]} {unit} with a lesion: its strongest detection lies on it in "
            f"{_top1(flat)}"
        )
    prior = metrics.get("prior", {}).get("kind", "none")
    tag = f" (map x {prior} prior)" if prior != "none" else ""
    lines.append(
        f"model{tag}: pixel AUROC {fmt_ci(metrics, 'pixel_auroc')}, FROC@10FP {fmt_ci(metrics, 'froc_at_10fp')}"
    )
    if "raw" in metrics:
        r = metrics["raw"]
        top1 = f", strongest detection on the lesion in {_top1(r)}" if "top1_hits" in r else ""
        lines.append(
            f"model, raw map (no prior): pixel AUROC {fmt_ci(r, 'pixel_auroc')}, FROC@10FP "
            f"{fmt_ci(r, 'froc_at_10fp')}{top1}"
        )
    for name, f in metrics.get("floors", {}).items():
        f = f.get("per_slice", f)
        top1 = f", strongest detection on the lesion in {_top1(f)}" if "top1_hits" in f else ""
        lines.append(
            f"floor {name}: pixel AUROC {fmt_ci(f, 'pixel_auroc')}, FROC@10FP {fmt_ci(f, 'froc_at_10fp')}{top1}"
        )
    lines += [f"floor {name} left out: {why}" for name, why in metrics.get("floors_left_out", {}).items() if why]
    lines += [f"WARNING: {w}" for w in metrics.get("warnings", [])]
    lines += below_floor_lines(metrics)
    return "\n".join(lines)


def below_floor_lines(metrics: dict) -> list[str]:
    """A warning line for each figure of the model (pixel AUROC, FROC@10FP) at or below a non-learned
    floor's point figure: such a figure says the map adds nothing over that floor."""
    out = []
    for key, label in (("pixel_auroc", "pixel AUROC"), ("froc_at_10fp", "FROC@10FP")):
        v = metrics.get(key)
        if v is None or not math.isfinite(v):
            continue
        beaten = [(n, f.get(key, f.get("per_slice", {}).get(key))) for n, f in metrics.get("floors", {}).items()]
        beaten = [(n, fv) for n, fv in beaten if fv is not None and math.isfinite(fv) and fv >= v and fv > 0]
        if beaten:
            names = ", ".join(f"{n} {fv:.3f}" for n, fv in beaten)
            out.append(
                f"WARNING: the model's {label} {v:.3f} is not above the floor{'s' if len(beaten) > 1 else ''} "
                f"{names}: on this set the map adds nothing over {'them' if len(beaten) > 1 else 'it'}"
            )
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m napari_ppii.evaluation.summary METRICS.json", file=sys.stderr)
        return 2
    path = Path(argv[0])
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        print(f"summary: cannot read {path}: {exc}", file=sys.stderr)
        return 2
    print(summarise(metrics))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
