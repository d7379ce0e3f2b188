# SPDX-License-Identifier: BSD-3-Clause
"""FPI, PII and P-PII: reproducibility, labels, variance, engines, validation."""

import numpy as np
import pytest
import torch

from conftest import smooth_image
from napari_ppii.config import SynthesisConfig
from napari_ppii.errors import InputError
from napari_ppii.synthesis import FPI, PII, PPII, make_synthesizer
from napari_ppii.synthesis.plan import boxes_overlap

METHODS = ["ppii", "pii", "fpi", "nsa"]


def paper(method: str = "ppii", **kw) -> SynthesisConfig:
    """The paper's settings of a method (anomalies anywhere): the mechanics these tests check."""
    return SynthesisConfig.paper(method, **kw)


@pytest.fixture(scope="module")
def pair():
    return smooth_image((96, 112), seed=1), smooth_image((96, 112), seed=2)


def _union_mask(result, shape):
    m = np.zeros(shape, bool)
    for b in result.boxes:
        m |= b.mask(shape)
    return m


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_same_output_and_different_seed_differs(method, pair):
    syn = make_synthesizer(paper(method))
    a = syn.sample(*pair, rng=7)
    b = syn.sample(*pair, rng=7)
    c = syn.sample(*pair, rng=8)
    for x, y in ((a.image, b.image), (a.label, b.label), (a.variance, b.variance)):
        np.testing.assert_array_equal(x, y)
    assert [bx.to_dict() for bx in a.boxes] == [bx.to_dict() for bx in b.boxes]
    assert not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("method", METHODS)
def test_labels_zero_outside_blended_regions_and_image_unchanged_there(method, pair):
    syn = make_synthesizer(paper(method))
    for seed in range(5):
        r = syn.sample(*pair, rng=seed)
        inside = _union_mask(r, pair[0].shape)
        assert inside.any()
        assert np.all(r.label[~inside] == 0)
        np.testing.assert_array_equal(r.image[~inside], pair[0][~inside])
        assert np.all(r.variance[~inside] == 0)
        assert r.label.max() > 0
        assert 0 <= r.label.min() and r.label.max() <= 1


def test_ppii_label_is_scaled_abs_difference_and_variance_over_raters(pair):
    cfg = paper(label_scale=3.0, n_raters=(4, 4))
    r = PPII(cfg).sample(*pair, rng=3)
    np.testing.assert_allclose(r.label, np.clip(3.0 * np.abs(pair[0] - r.image), 0, 1), atol=1e-6)
    assert r.variance.max() > 0
    assert all(len(s.radii) == 4 for s in r.plan)


def test_variance_is_zero_with_one_rater(pair):
    r = PPII(paper(n_raters=(1, 1))).sample(*pair, rng=0)
    assert r.label.max() > 0
    assert np.all(r.variance == 0)


def test_mean_image_is_the_mean_of_independent_rater_blends(pair):
    """Render each rater alone and average by hand: must equal the P-PII mean and variance."""
    cfg = paper(n_raters=(3, 3), n_anomalies=(2, 2))
    syn = PPII(cfg)
    r = syn.sample(*pair, rng=11)
    singles = []
    for k in range(3):
        plan = [type(s)(**{**s.to_dict(), "centres": [s.centres[k]], "radii": [s.radii[k]]}) for s in r.plan]
        singles.append(syn.sample(*pair, plan=plan).image)
    singles = np.stack(singles).astype(np.float64)
    np.testing.assert_allclose(r.image, singles.mean(0), atol=1e-5)
    np.testing.assert_allclose(r.variance, singles.var(0), atol=1e-5)


def test_constant_image_stays_constant_under_fpi():
    img = np.full((64, 64), 0.37, np.float32)
    r = FPI(paper("fpi")).sample(img, img.copy(), rng=0)
    np.testing.assert_array_equal(r.image, img)
    assert np.all(r.label == 0)


def test_fpi_is_convex_combination(pair):
    r = FPI(paper("fpi")).sample(*pair, rng=2)
    (spec,) = r.plan
    sl = spec.target_slices
    np.testing.assert_allclose(r.image[sl], (1 - spec.alpha) * pair[0][sl] + spec.alpha * pair[1][sl], atol=1e-6)


def test_pii_uses_same_location_and_alpha_label(pair):
    r = PII(paper("pii")).sample(*pair, rng=4)
    (spec,) = r.plan
    assert spec.target_start == spec.source_start
    vals = np.unique(r.label[r.label > 0])
    np.testing.assert_allclose(vals, [spec.alpha], rtol=1e-6)
    # border of the image is zeroed
    assert r.label[0].max() == 0 and r.label[:, -1].max() == 0


def test_ppii_plan_respects_parameters(pair):
    cfg = paper(n_anomalies=(3, 6), n_raters=(2, 5), gradient_scale=(2.0, 3.0))
    for seed in range(10):
        r = PPII(cfg).sample(*pair, rng=seed)
        assert 1 <= len(r.plan) <= 6
        ks = {len(s.radii) for s in r.plan}
        assert len(ks) == 1 and 2 <= ks.pop() <= 5
        for i, s in enumerate(r.plan):
            assert 2.0 <= s.gradient_scale < 3.0
            assert s.source_index == 1  # pairwise: the other image
            for c, rad in zip(s.centres, s.radii):
                # the circle stays inside the patch box
                assert all(rad <= ci <= n - 1 - rad + 1e-9 for ci, n in zip(c, s.size))
            for t in r.plan[:i]:
                assert not boxes_overlap(s.target_start, t.target_start, s.size, t.size)


def test_single_image_source_comes_from_another_location():
    img = smooth_image((80, 80), seed=3)
    r = PPII(paper(pairwise=False)).sample(img, rng=1)
    for s in r.plan:
        assert s.source_index == 0
        assert not boxes_overlap(s.source_start, s.target_start, s.size, s.size)


def test_gradient_upscaling_makes_anomalies_more_salient(pair):
    weak = PPII(paper(gradient_scale=(1.0, 1.0), n_raters=(1, 1))).sample(*pair, rng=5)
    strong = PPII(paper(gradient_scale=(10.0, 10.0), n_raters=(1, 1), clip=False)).sample(*pair, rng=5)
    assert np.abs(strong.image - pair[0]).sum() > 3 * np.abs(weak.image - pair[0]).sum()


def test_3d_ppii_volume():
    vol = smooth_image((24, 40, 36), seed=4)
    r = PPII(paper(n_anomalies=(2, 3))).sample(vol, smooth_image((24, 40, 36), seed=5), rng=0)
    assert r.image.shape == vol.shape and r.label.max() > 0
    assert all(b.ndim == 3 for b in r.boxes)
    inside = _union_mask(r, vol.shape)
    assert np.all(r.label[~inside] == 0)


@pytest.mark.parametrize("method", METHODS)
def test_torch_engine_matches_numpy(method, pair):
    syn = make_synthesizer(paper(method))
    ref = syn.batch(np.stack(pair), rng=3)
    got = syn.batch(torch.tensor(np.stack(pair), dtype=torch.float64), rng=3)
    for r, g in zip(ref, got):
        assert isinstance(g.image, torch.Tensor)
        np.testing.assert_allclose(g.image.numpy(), r.image, atol=1e-5)
        np.testing.assert_allclose(g.label.numpy(), r.label, atol=1e-5)
        np.testing.assert_allclose(g.variance.numpy(), r.variance, atol=1e-5)


def test_torch_float32_batch_close_to_numpy():
    batch = np.stack([smooth_image((128, 128), seed=s) for s in range(4)])
    syn = PPII(paper())
    ref = syn.batch(batch, rng=0)
    got = syn.batch(torch.tensor(batch), rng=0)
    for r, g in zip(ref, got):
        assert g.image.dtype == torch.float32
        np.testing.assert_allclose(g.image.numpy(), r.image, atol=2e-3)


def test_batch_pairs_sources_within_batch():
    batch = np.stack([smooth_image((64, 64), seed=s) for s in range(5)])
    res = PPII(paper()).batch(batch, rng=0)
    assert len(res) == 5
    for i, r in enumerate(res):
        assert all(s.target_index == i and s.source_index != i for s in r.plan)


def test_size_step_rounds_patch_sides(pair):
    r = PPII(paper(size_step=8)).sample(*pair, rng=0)
    assert all(s % 8 == 0 or s == n for spec in r.plan for s, n in zip(spec.size, pair[0].shape))


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------
def test_nan_image_refused(pair):
    img = pair[0].copy()
    img[3, 4] = np.nan
    with pytest.raises(InputError, match="NaN"):
        PPII(paper()).sample(img, rng=0)


@pytest.mark.parametrize("shape", [(10, 64), (1, 1), (64, 8)])
def test_too_small_image_refused(shape):
    with pytest.raises(InputError, match="too small"):
        PPII(paper()).sample(np.zeros(shape, np.float32), rng=0)


def test_wrong_dimensionality_refused():
    with pytest.raises(InputError, match="2D images or 3D volumes"):
        PPII(paper()).sample(np.zeros((4, 32, 32, 3), np.float32), rng=0)


def test_mismatched_source_refused(pair):
    with pytest.raises(InputError, match="differs"):
        PPII(paper()).sample(pair[0], pair[1][:50], rng=0)


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"patch_size": (0.3, 0.1)}, "patch_size"),
        ({"patch_size": (0.1, 0.9)}, "patch_size"),
        ({"n_raters": (0, 3)}, "n_raters"),
        ({"n_anomalies": (5, 2)}, "n_anomalies"),
        ({"method": "pii", "alpha": (0.2, 1.5)}, "alpha"),
        ({"gradient_scale": (0.0, 0.0)}, "gradient_scale"),
        ({"method": "cutpaste"}, "method"),
    ],
)
def test_invalid_configuration_raises_clear_error(kw, match):
    from napari_ppii.config import PPIIConfig

    with pytest.raises(InputError, match=match):
        PPIIConfig.from_dict({"synthesis": kw})


def test_method_defaults_resolved():
    assert PPII().config.patch_size == (0.04, 0.16) and PPII().config.square is False
    assert PII().config.patch_size == (0.04, 0.2) and PII().config.square is True
    assert PPII(SynthesisConfig(patch_size=(0.1, 0.1))).config.patch_size == (0.1, 0.1)
    assert PPII(paper()).config.patch_size == (0.05, 0.2) and PII(paper("pii")).config.patch_size == (0.1, 0.4)


@pytest.mark.parametrize("cls", [PII, FPI])
def test_baselines_on_a_single_image_take_the_patch_from_elsewhere(cls):
    img = smooth_image((80, 80), seed=6)
    r = cls(paper(cls.method)).sample(img, rng=0)
    (s,) = r.plan
    assert not boxes_overlap(s.source_start, s.target_start, s.size, s.size)
    assert r.label.max() > 0


def test_fast_sizes_give_smooth_dst_lengths(pair):
    from napari_ppii.synthesis.plan import _is_smooth

    r = PPII(paper(n_anomalies=(10, 10))).sample(*pair, rng=0)
    assert all(_is_smooth(s - 1) or s == n for spec in r.plan for s, n in zip(spec.size, pair[0].shape))
    plain = PPII(paper(n_anomalies=(10, 10), fast_sizes=False)).sample(*pair, rng=0)
    assert any(not _is_smooth(s - 1) for spec in plain.plan for s in spec.size)
