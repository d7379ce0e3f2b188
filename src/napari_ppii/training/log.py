# SPDX-License-Identifier: BSD-3-Clause
"""The JSON-lines progress log: one object per line (step, loss, lr, val_dice, images_per_s, eta_s, ...).

Written by the training process (rank 0), read live by the viewer; a line is flushed whole, so a reader
never sees half a record (a partial last line is skipped).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


class JsonlLog:
    def __init__(self, path: str | Path | None):
        self.path = None if path is None else Path(path)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, **record: Any) -> None:
        if self.path is None:
            return
        record.setdefault("time", time.time())
        with self.path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """All complete records of a log (an absent file gives none)."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out
