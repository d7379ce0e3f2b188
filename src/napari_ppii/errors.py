# SPDX-License-Identifier: BSD-3-Clause
"""The one error type for bad input.

Everything the user can get wrong -- a missing, corrupt or truncated file, an empty folder, a non-image
file, an unsupported pixel format, NaN/Inf values, an image too small for synthesis, an invalid parameter
combination -- raises :class:`InputError` with a message that names the file (when there is one) and
says what is wrong.  Library errors from pydicom, SimpleITK, imageio, ... are caught at the boundary and
re-raised as ``InputError`` so callers (CLI, widgets, trainer) handle one type.
"""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad user input: the message says what is wrong, and with which file."""

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = None if path is None else Path(path)
        self.reason = message
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)
