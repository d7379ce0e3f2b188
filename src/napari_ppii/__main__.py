# SPDX-License-Identifier: BSD-3-Clause
"""``python -m napari_ppii``: the ``ppii`` command line."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
