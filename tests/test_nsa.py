# SPDX-License-Identifier: BSD-3-Clause
"""NSA (Natural Synthetic Anomalies) as the fourth method: its label, blending, sampling and replay."""

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.morphology import ball, disk

from conftest import smooth_image
from napari_ppii.config import PPIIConfig, SynthesisConfig
from napari_ppii.synthesis import NSA, AnomalySpec, make_synthesizer
from napari_ppii.synthesis.nsa import median_filter, nsa_label_of


def _nsa_label_reference(orig, blended, k, x0, tol, radius):
    """NSA's logistic-intensity label written from its definition with scipy/skimage filters on the whole
    image: binary change > tol, 5x5 median; intensity median over a disc; mask / (1 + exp(-k (i - x0)))."""
    d = np.abs(blended - orig)
    nd = d.ndim
    m = ndimage.median_filter((d > tol).astype(float), size=5, mode="nearest")
    foot = disk(radius) if nd == 2 else ball(radius)
    inten = ndimage.median_filter(m * d, footprint=foot, mode="nearest")
    return m / (1.0 + np.exp(-k * (inten - x0)))


@pytest.mark.parametrize(
    "cfg",
    [SynthesisConfig.paper("nsa"), SynthesisConfig(method="nsa", placement="anywhere")],
    ids=["paper", "calibrated"],
)
def test_label_is_nsas_logistic_intensity_label(cfg):
    img, src = smooth_image((96, 112), 1), smooth_image((96, 112), 2)
    syn = make_synthesizer(cfg)
    n = 0
    for seed in range(6):
        r = syn.sample(img, src, rng=seed)
        ref = _nsa_label_reference(
            img.astype(np.float64),
            r.image.astype(np.float64),
            cfg.label_k,
            cfg.label_x0,
            cfg.label_tolerance,
            cfg.label_median_radius,
        )
        np.testing.assert_allclose(r.label, ref, atol=2e-6)
        n += int((r.label > 0.01).sum())
    assert n > 0  # the labels are not all empty


def test_median_filter_matches_scipy_on_both_engines_2d_and_3d():
    rng = np.random.default_rng(0)
    for shape, foot in (((23, 31), disk(3)), ((9, 12, 11), ball(2))):
        x = rng.random(shape)
        offsets = np.argwhere(foot) - np.array(foot.shape) // 2
        ref = ndimage.median_filter(x, footprint=foot, mode="nearest")
        np.testing.assert_allclose(median_filter(x, offsets, max_elements=500), ref)
        np.testing.assert_allclose(median_filter(torch.as_tensor(x), offsets).numpy(), ref)


def test_normal_clone_carries_the_source_structure_onto_the_target_level():
    # target flat at 0.3; source flat at 0.7 with a bump: NSA's normal clone keeps the bump's relief and
    # the target's level at the box border (Poisson with the source's gradients)
    tgt = np.full((64, 64), 0.3)
    yy, xx = np.mgrid[:64, :64]
    src = 0.7 + 0.2 * np.exp(-((yy - 20) ** 2 + (xx - 40) ** 2) / (2 * 3.0**2))
    cfg = SynthesisConfig(method="nsa", placement="anywhere", mixed_gradients=False, clip="none")
    spec = AnomalySpec(0, 1, (10, 10), (8, 28), (25, 25))  # source box centred on the bump
    r = NSA(cfg).sample(tgt, src, plan=[spec])
    got = r.image[10:35, 10:35]
    want = src[8:33, 28:53] - 0.7 + 0.3
    np.testing.assert_allclose(got, want, atol=2e-3)
    assert got.max() == pytest.approx(0.5, abs=2e-3)
    outside = np.pad(np.zeros((25, 25), bool), ((10, 29), (10, 29)), constant_values=True)
    np.testing.assert_array_equal(r.image[outside], np.float32(0.3))
    # the mixed clone keeps the larger gradient: on a flat target it is the same here
    r2 = NSA(cfg.model_copy(update={"mixed_gradients": True})).sample(tgt, src, plan=[spec])
    np.testing.assert_allclose(r2.image, r.image, atol=1e-9)
    # label: where the change exceeds x0 the logistic passes 0.5
    assert r.label[22, 22] > 0.5 and r.label[0, 0] == 0


def test_patch_count_sizes_and_rescaling_follow_nsa():
    cfg = SynthesisConfig.paper("nsa", nsa_patches=4, fast_sizes=False)  # sides not rounded up
    syn = make_synthesizer(cfg)
    img, src = smooth_image((200, 200), 1), smooth_image((200, 200), 2)
    counts, ratios, fracs = [], [], []
    for seed in range(300):
        plan = syn.plan(np.stack([img, src]), np.random.default_rng(seed), n_out=1)
        counts.append(len(plan))
        for s in plan:
            assert s.source_index == 1 and s.gradient_scale == 1.0 and s.radii == []
            ss = s.source_size or s.size
            ratios.append(s.size[0] / ss[0])
            fracs.append(ss[0] / 200)
    counts = np.array(counts)
    assert counts.min() == 1 and counts.max() == 4
    # the first patch always, three more on coin flips: mean 1 + 3/2
    assert counts.mean() == pytest.approx(2.5, abs=0.2)
    ratios = np.array(ratios)
    assert ratios.min() >= 0.65 and ratios.max() <= 1.35
    assert np.mean(np.isclose(ratios, 1.0, atol=0.04)) < 0.3  # rescaled, not only rounded
    fracs = np.array(fracs)
    # sides 0.06 + Gamma(2, 0.1) clipped to [0.1, 0.4]: median ~0.23
    assert 0.1 - 0.01 <= fracs.min() and fracs.max() <= 0.4 + 0.01
    assert 0.18 < np.median(fracs) < 0.3


def test_plan_replays_identically_on_numpy_torch_and_from_json():
    img, src = smooth_image((80, 96), 3), smooth_image((80, 96), 4)
    syn = make_synthesizer(SynthesisConfig(method="nsa", placement="anywhere"))
    r = syn.sample(img, src, rng=5)
    plan = [AnomalySpec.from_dict(s.to_dict()) for s in r.plan]
    again = syn.sample(img, src, plan=plan)
    np.testing.assert_array_equal(again.image, r.image)
    np.testing.assert_array_equal(again.label, r.label)
    t = syn.sample(torch.as_tensor(img), torch.as_tensor(src), plan=plan)
    np.testing.assert_allclose(t.image.numpy(), r.image, atol=1e-6)
    np.testing.assert_allclose(t.label.numpy(), r.label, atol=1e-5)


def test_3d_volume_and_label_definition():
    vol, src = smooth_image((20, 40, 36), 5), smooth_image((20, 40, 36), 6)
    cfg = SynthesisConfig(method="nsa", placement="anywhere", label_median_radius=2, label_x0=0.01)
    r = make_synthesizer(cfg).sample(vol, src, rng=1)
    assert r.image.shape == vol.shape and r.plan
    ref = _nsa_label_reference(vol, r.image.astype(np.float64), cfg.label_k, cfg.label_x0, cfg.label_tolerance, 2)
    np.testing.assert_allclose(r.label, ref, atol=2e-6)
    assert r.variance.max() == 0


def test_paper_config_file_and_method_defaults():
    y = PPIIConfig.load(Path(__file__).resolve().parents[1] / "configs" / "paper_nsa.yaml").synthesis
    assert y == SynthesisConfig.paper("nsa")
    assert y.label_k == pytest.approx(255 / 6) and y.label_x0 == pytest.approx(20 / 255)
    d = SynthesisConfig(method="nsa").resolved()
    assert d.square is False and d.patch_size == (0.04, 0.16) and d.placement == "lungs"


def test_nsa_keeps_patches_on_the_object_mask_source_and_target():
    img, src = smooth_image((128, 128), 1), smooth_image((128, 128), 2)
    yy, xx = np.mgrid[:128, :128]
    tmask = (yy - 64) ** 2 + (xx - 60) ** 2 <= 35**2
    smask = (yy - 40) ** 2 + (xx - 80) ** 2 <= 30**2
    cfg = SynthesisConfig(
        method="nsa", placement="mask", source_in_mask=True, placement_min_inside=0.7, placement_margin_share=0.0
    )
    syn = make_synthesizer(cfg)
    for seed in range(20):
        r = syn.sample(img, src, rng=seed, mask=tmask, source_mask=smask)
        for s in r.plan:
            assert tmask[s.target_slices].mean() >= 0.7
            assert smask[s.source_slices].mean() >= 0.7
        assert np.all(r.label[~tmask] == 0)
        np.testing.assert_array_equal(r.image[~tmask], img[~tmask].astype(np.float32))


def test_label_of_no_change_is_zero():
    cfg = SynthesisConfig(method="nsa")
    assert nsa_label_of(np.zeros((30, 30)), cfg).max() == 0


def test_nsa_trains_on_the_batched_torch_engine_and_in_realism(tmp_path, capsys):
    import json

    from napari_ppii.cli import main
    from napari_ppii.training import load_checkpoint, train

    pool = np.stack([smooth_image((32, 32), seed=s) for s in range(6)])
    cfg = PPIIConfig().with_overrides(
        [
            "model.base_channels=4",
            "model.levels=3",
            "data.image_size=32",
            "training.batch_size=4",
            "data.val_samples=4",
            "training.warmup_steps=1",
            "synthesis.method=nsa",
            "synthesis.placement=anywhere",
            "training.steps=3",
            "training.val_every=3",
            f"training.out_dir={tmp_path / 'run'}",
        ]
    )
    res = train(cfg, images=pool)
    ck = load_checkpoint(res.last_checkpoint)
    assert ck["step"] == 3 and ck["config"]["synthesis"]["method"] == "nsa"
    from napari_ppii.training.data import SyntheticBatches

    b = SyntheticBatches(pool, cfg, torch.device("cpu")).draw(np.random.default_rng(0), 4)
    assert float(b.label.max()) > 0 and float(b.variance.max()) == 0
    # ppii realism measures NSA's anomalies too
    from skimage.io import imsave

    rows = ["image,label,x0,y0,x1,y1"]
    for s in range(3):
        imsave(tmp_path / f"im{s}.png", (smooth_image((96, 96), s) * 255).astype(np.uint8), check_contrast=False)
        rows.append(f"im{s}.png,normal,,,,")
    (tmp_path / "a.csv").write_text("\n".join(rows) + "\n")
    capsys.readouterr()
    assert (
        main(
            [
                "realism",
                "--data",
                str(tmp_path / "a.csv"),
                "--out",
                str(tmp_path / "out"),
                "--n",
                "6",
                "--set",
                "data.image_size=96",
                "--set",
                "synthesis.method=nsa",
                "--set",
                "synthesis.placement=anywhere",
            ]
        )
        == 0
    )
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["synthetic (nsa)"]["n"] >= 3
