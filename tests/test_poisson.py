# SPDX-License-Identifier: BSD-3-Clause
"""The DST-I Poisson solve against a sparse direct solve of the same discrete system."""

import numpy as np
import pytest
import torch

from napari_ppii.synthesis import poisson as P


def _random_problem(rng, shape, ndim_box):
    img = rng.normal(size=shape)
    src = rng.normal(size=shape)
    box = []
    for n in shape:
        a = int(rng.integers(0, n // 3))
        b = int(rng.integers(a + 3, n + 1))
        box.append(slice(a, b))
    box = tuple(box)
    mask = rng.random([s.stop - s.start for s in box])
    return img, src, box, mask


@pytest.mark.parametrize("shape", [(30, 41), (17, 23, 19)])
@pytest.mark.parametrize("mixed", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dst_equals_sparse_direct_solve(shape, mixed, seed):
    rng = np.random.default_rng(seed)
    img, src, box, mask = _random_problem(rng, shape, len(shape))
    nd = len(shape)
    gt = P.forward_gradients(img[box], nd)
    gs = [3.0 * g for g in P.forward_gradients(src[box], nd)]
    v = P.masked_guidance(gt, gs, mask, mixed_gradients=mixed)
    fast = P.poisson_solve(img[box], v)
    ref = P.poisson_solve_sparse(img, box, v)
    np.testing.assert_allclose(fast, ref[box], atol=1e-6, rtol=0)
    # the sparse solve pins everything outside the box interior: the DST result must agree there too
    outside = np.ones(shape, bool)
    outside[tuple(slice(s.start + 1, s.stop - 1) for s in box)] = False
    np.testing.assert_array_equal(ref[outside], img[outside])


def test_discrete_equation_holds_inside_and_border_is_untouched(rng):
    box_vals = rng.normal(size=(12, 15))
    v = [rng.normal(size=(11, 15)), rng.normal(size=(12, 14))]
    f = P.poisson_solve(box_vals, v)
    # border exactly the boundary values
    for sl in (np.s_[0, :], np.s_[-1, :], np.s_[:, 0], np.s_[:, -1]):
        np.testing.assert_array_equal(f[sl], box_vals[sl])
    lap = f[2:, 1:-1] + f[:-2, 1:-1] + f[1:-1, 2:] + f[1:-1, :-2] - 4 * f[1:-1, 1:-1]
    np.testing.assert_allclose(lap, P.divergence(v), atol=1e-9)


def test_zero_guidance_gives_harmonic_fill(rng):
    box_vals = rng.normal(size=(9, 11, 10))
    zero = [np.zeros((8, 11, 10)), np.zeros((9, 10, 10)), np.zeros((9, 11, 9))]
    f = P.poisson_solve(box_vals, zero)
    c = f[1:-1, 1:-1, 1:-1]
    lap = (
        f[2:, 1:-1, 1:-1]
        + f[:-2, 1:-1, 1:-1]
        + f[1:-1, 2:, 1:-1]
        + f[1:-1, :-2, 1:-1]
        + f[1:-1, 1:-1, 2:]
        + f[1:-1, 1:-1, :-2]
        - 6 * c
    )
    assert np.abs(lap).max() < 1e-9
    # maximum principle: a harmonic fill stays within the boundary's range
    assert c.max() <= box_vals.max() and c.min() >= box_vals.min()
    # a linear ramp is harmonic: the fill reproduces it
    ramp = np.add.outer(np.arange(9.0), np.arange(11.0))
    np.testing.assert_allclose(P.poisson_solve(ramp, [np.zeros((8, 11)), np.zeros((9, 10))]), ramp, atol=1e-9)


def test_source_gradients_with_full_mask_reproduce_the_source_up_to_the_boundary(rng):
    # if the source equals the target, blending under any mask returns the target exactly
    t = rng.normal(size=(16, 14))
    out = P.poisson_blend(t, t, rng.random((16, 14)))
    np.testing.assert_allclose(out, t, atol=1e-9)


@pytest.mark.parametrize("shape,nd", [((2, 3, 18, 21), 2), ((2, 11, 12, 13), 3)])
def test_torch_and_numpy_agree_batched(shape, nd):
    rng = np.random.default_rng(5)
    t, s, m = rng.normal(size=shape), rng.normal(size=shape), rng.random(shape)
    kw = dict(mixed_gradients=True, gradient_scale=4.0, ndim=nd)
    ref = P.poisson_blend(t, s, m, **kw)
    got = P.poisson_blend(torch.tensor(t), torch.tensor(s), torch.tensor(m), **kw)
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-9)
    # one batched call equals the problems solved one at a time
    flat = (-1,) + shape[-nd:]
    singles = [P.poisson_blend(a, b, c, **kw) for a, b, c in zip(t.reshape(flat), s.reshape(flat), m.reshape(flat))]
    np.testing.assert_allclose(ref.reshape(flat), np.stack(singles), atol=1e-12)


def test_torch_dst_matches_scipy():
    import scipy.fft

    x = np.random.default_rng(0).normal(size=(4, 7))
    got = P._dst1_torch(torch.tensor(x), 1).numpy()
    np.testing.assert_allclose(got, scipy.fft.dst(x, type=1, axis=1), atol=1e-12)


def test_interpolated_guidance_is_eq1():
    gt = [np.array([[1.0, -2.0, 0.5]])]
    gs = [np.array([[3.0, 1.0, -4.0]])]
    alpha = 0.25
    v = P.interpolated_guidance(gt, gs, alpha)[0]
    # |0.75 * 1| = 0.75 vs |0.25 * 3| = 0.75: not greater -> alpha * source
    np.testing.assert_allclose(v, [[0.75, -1.5, -1.0]])


def test_mixed_keeps_larger_magnitude():
    a = np.array([1.0, -3.0, 0.2])
    b = np.array([-2.0, 1.0, 0.1])
    np.testing.assert_array_equal(P.mixed(a, b), [-2.0, -3.0, 0.2])


def test_box_too_small_is_refused():
    with pytest.raises(ValueError, match="at least 3"):
        P.poisson_solve(np.zeros((2, 5)), [np.zeros((1, 5)), np.zeros((2, 4))])
