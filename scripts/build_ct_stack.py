# SPDX-License-Identifier: BSD-3-Clause
"""Build one training stack from the normal slices of several CT series (each with its own lesion XML).

    python scripts/build_ct_stack.py CONFIG OUT_PREFIX SERIES:BOXES [SERIES:BOXES ...]

Every series goes through the trainer's own loader (``load_training_set``: the configuration's
pre-processing, the lesion-margin rule, the CT lung masks), so the stack holds exactly the slices a
single-series run would train on.  Writes ``OUT_PREFIX_images.npy`` and ``OUT_PREFIX_masks.npy``
(``(N, S, S)``, aligned) and ``OUT_PREFIX_sources.json`` (how many slices came from which series, and
which slice indices); train on them with ``data.train=OUT_PREFIX_images.npy data.mask=OUT_PREFIX_masks.npy
synthesis.placement=mask``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from napari_ppii.config import PPIIConfig
from napari_ppii.training.data import _load_images, load_training_set


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    cfg0 = PPIIConfig.load(argv[0])
    prefix = Path(argv[1])
    prefix.parent.mkdir(parents=True, exist_ok=True)
    images, masks, sources = [], [], []
    for pair in argv[2:]:
        series, _, boxes = pair.partition(":")
        cfg = cfg0.model_copy(
            update={
                "data": cfg0.data.model_copy(update={"train": series, "boxes": boxes or None}),
                "synthesis": cfg0.synthesis.model_copy(update={"placement": "lungs"}),
            }
        )
        im, m = load_training_set(cfg)
        _, _, keep = _load_images(cfg)
        images.append(im)
        masks.append(m)
        sources.append({"series": series, "boxes": boxes, "n_slices": int(len(im)), "slices": [int(k) for k in keep]})
        print(f"{series}: {len(im)} normal slices (lesion margin {cfg.data.lesion_margin})")
    np.save(f"{prefix}_images.npy", np.concatenate(images).astype(np.float32))
    np.save(f"{prefix}_masks.npy", np.concatenate(masks).astype(np.float32))
    Path(f"{prefix}_sources.json").write_text(json.dumps(sources, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
