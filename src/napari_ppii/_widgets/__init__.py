# SPDX-License-Identifier: BSD-3-Clause
"""napari dock widgets (Qt).  Each module imports heavy libraries lazily, so napari starts fast."""
