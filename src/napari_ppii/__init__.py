# SPDX-License-Identifier: BSD-3-Clause
"""napari-ppii: self-supervised anomaly localisation with Probabilistic Poisson Image Interpolation.

The core (``io``, ``preprocess``, ``synthesis``, ``config``) imports no Qt and is usable from Python and
the ``ppii`` command line; the napari plugin only wires widgets to it.
"""

from .errors import InputError

__version__ = "0.1.0"
__all__ = ["InputError", "__version__"]
