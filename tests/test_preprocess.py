# SPDX-License-Identifier: BSD-3-Clause
"""Windows, normalisation, equalisation, resizing."""

import numpy as np
import pytest

from napari_ppii.config import PreprocessConfig
from napari_ppii.errors import InputError
from napari_ppii.io import Scan
from napari_ppii.preprocess import WINDOWS, apply_window, equalise, normalise, prepare, resize_scan, window_limits


def test_window_presets_map_to_unit_range():
    lo, hi = window_limits("lung")
    assert (lo, hi) == (-1350.0, 150.0)
    out = apply_window(np.array([-2000.0, -1350.0, -600.0, 150.0, 3000.0]), lo, hi)
    np.testing.assert_allclose(out, [0, 0, 0.5, 1, 1])
    for name in WINDOWS:
        a, b = window_limits(name)
        assert a < b


def test_header_window():
    scan = Scan(np.zeros((4, 4)), (1, 1), (0, 0), np.eye(2), "CT", metadata={"window_center": 40, "window_width": 80})
    assert window_limits("header", scan) == (0.0, 80.0)
    with pytest.raises(InputError, match="no WindowCenter"):
        window_limits("header", Scan(np.zeros((4, 4)), (1, 1), (0, 0), np.eye(2)))
    with pytest.raises(InputError, match="unknown window"):
        window_limits("brain")


def test_normalise_methods():
    x = np.concatenate([np.linspace(0, 100, 1000), [1e6]])
    assert normalise(x, "minmax").max() == 1.0 and normalise(x, "minmax")[500] < 0.001
    p = normalise(x, "percentile")
    assert p.min() == 0 and p.max() == 1 and 0.4 < p[500] < 0.6  # the outlier does not squash the rest
    assert np.all(normalise(np.full(10, 3.0)) == 0)


def test_equalise_flattens_histogram():
    x = np.random.default_rng(0).random((128, 128)) ** 2  # skewed towards dark
    e = equalise(x)
    # the equalised values are close to uniform: sorted values follow the identity
    q = np.sort(e.ravel())
    assert np.abs(q - np.linspace(0, 1, q.size)).max() < 0.08  # one 256-bin step at most
    assert np.abs(np.sort(x.ravel()) - np.linspace(0, 1, q.size)).max() > 0.2
    assert np.all(np.diff(e.ravel()[np.argsort(x.ravel())]) >= 0)  # monotone mapping
    const = np.full((8, 8), 0.3, np.float32)
    np.testing.assert_array_equal(equalise(const), const)


def test_resize_scan_updates_spacing_and_keeps_extent():
    scan = Scan(np.random.default_rng(0).random((100, 80)).astype(np.float32), (0.5, 0.25), (10.0, 20.0), np.eye(2))
    small = resize_scan(scan, (50, 40))
    assert small.shape == (50, 40)
    assert small.spacing == pytest.approx((1.0, 0.5))
    # physical field of view unchanged: first-pixel edge stays put
    assert small.origin[0] - small.spacing[0] / 2 == pytest.approx(scan.origin[0] - scan.spacing[0] / 2)
    assert abs(small.array.mean() - scan.array.mean()) < 0.01


def test_prepare_ct_and_radiograph():
    hu = np.linspace(-1200, 400, 64 * 64 * 3).reshape(3, 64, 64).astype(np.float32)
    ct = Scan(hu, (2.5, 0.7, 0.7), (0, 0, 0), np.eye(3), "CT")
    out = prepare(ct, PreprocessConfig(window="lung", equalise=False, size=32))
    assert out.shape == (3, 32, 32) and out.spacing == pytest.approx((2.5, 1.4, 1.4))
    assert 0 <= out.array.min() and out.array.max() <= 1
    cr = Scan(np.random.default_rng(1).random((50, 50)) * 4000, (0.2, 0.2), (0, 0), np.eye(2), "CR")
    o2 = prepare(cr)
    assert 0 <= o2.array.min() and o2.array.max() <= 1
    assert o2.metadata["preprocess"]["equalise"] is True
