# SPDX-License-Identifier: BSD-3-Clause
"""Anatomy-aware maps at inference: the soft prior, ppii evaluate's two rows, ppii predict --prior."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import RESOURCES, chest_phantom
from napari_ppii.errors import InputError
from napari_ppii.prior import PriorSettings, apply_prior, prior_mask, soft_prior


def test_soft_prior_damps_outside_and_keeps_the_inside():
    mask = np.zeros((80, 80), bool)
    mask[10:70, 10:40] = True
    amap = np.random.default_rng(0).random((80, 80)).astype(np.float32)
    s = PriorSettings("mask", sigma=0.02, floor=0.25)
    out = apply_prior(amap, mask, s)
    # deep inside the mask the map is unchanged; far outside it is damped to the floor, never to zero
    np.testing.assert_allclose(out[30:50, 20:30], amap[30:50, 20:30], rtol=1e-5)
    np.testing.assert_allclose(out[30:50, 70:], 0.25 * amap[30:50, 70:], rtol=1e-4)
    # at the edge: in between (a lesion on the pleura still scores)
    edge = soft_prior(mask, 0.02, 0.25)[40, 41]
    assert 0.25 < edge < 1.0
    # none leaves the map alone; an empty mask damps nothing
    assert apply_prior(amap, mask, PriorSettings("none")) is amap
    np.testing.assert_allclose(soft_prior(np.zeros((8, 8))), 1.0)
    # a volume: slice by slice
    assert soft_prior(np.stack([mask, mask])).shape == (2, 80, 80)
    with pytest.raises(InputError, match="does not match"):
        apply_prior(amap, mask[:40], s)
    with pytest.raises(InputError, match="prior must be one of"):
        PriorSettings("brain")
    with pytest.raises(InputError, match="needs a mask"):
        prior_mask(amap, PriorSettings("mask"))


class _FakePredictor:
    """A 'model' whose map peaks on the nodule and, stronger, on the shoulder outside the lungs."""

    def __init__(self, nodules):
        self.nodules = nodules

    def predict_scan(self, scan, samples=None):
        m = np.full(scan.shape, 0.05, np.float32)
        y, x = self.nodules[id(scan)]
        m[y - 4 : y + 5, x - 4 : x + 5] = 0.6
        m[8:17, 120:129] = 0.9  # outside the body / lungs, above the mediastinum
        return SimpleNamespace(mean=m)


def test_evaluate_reports_the_raw_and_the_prior_weighted_map(tmp_path):
    from napari_ppii.evaluation import EvalOptions, evaluate
    from napari_ppii.evaluation.evaluate import TestItem
    from napari_ppii.evaluation.report import write_report
    from napari_ppii.evaluation.summary import summarise
    from napari_ppii.io import Box
    from napari_ppii.io.scan import Scan

    items, nodules = [], {}
    for s in range(4):
        y, x = 110 + 5 * s, (70, 185)[s % 2]
        img, _ = chest_phantom(256, s, nodule=(y, x, 6, 0.5))
        scan = Scan(img, (1.0, 1.0), (0.0, 0.0), np.eye(2), "CR")
        nodules[id(scan)] = (y, x)
        items.append(TestItem(f"p{s}", None, [Box((y - 6, x - 6), (y + 6, x + 6))], scan))
    pred = _FakePredictor(nodules)
    raw = evaluate(pred, items, EvalOptions(n_boot=20, prior=PriorSettings("none")), floors=False)
    assert raw.metrics["prior"]["kind"] == "none" and "raw" not in raw.metrics
    assert raw.metrics["top1_hits"] == [0, 4]  # the shoulder outshines every nodule
    ev = evaluate(pred, items, EvalOptions(n_boot=20, prior=PriorSettings("lungs", 0.03, 0.1)), floors=["lung_field"])
    m = ev.metrics
    assert m["prior"] == {"kind": "lungs", "sigma": 0.03, "floor": 0.1}
    assert m["top1_hits"] == [4, 4]  # weighted by the lungs, the nodules come first
    assert m["raw"]["top1_hits"] == [0, 4] and m["raw"]["pixel_auroc"] == pytest.approx(raw.metrics["pixel_auroc"])
    report = write_report(ev, tmp_path / "rep").read_text()
    assert "| **model (x lungs prior)** |" in report and "| model, raw map (no prior) |" in report
    text = summarise(json.loads((tmp_path / "rep" / "metrics.json").read_text()))
    assert "model (map x lungs prior): pixel AUROC" in text and "model, raw map (no prior)" in text


def test_predict_cli_writes_the_weighted_and_the_raw_map(tmp_path, capsys):
    from conftest import tiny_checkpoint
    from napari_ppii.cli import main
    from napari_ppii.io import read_scan

    ckpt = tiny_checkpoint(tmp_path)
    img = RESOURCES / "nih-cxr" / "00000002_000.png"
    out = tmp_path / "pred"
    assert main(["predict", str(img), "--checkpoint", str(ckpt), "--out", str(out), "--prior", "lungs", "--quiet"]) == 0
    w = read_scan(out / "00000002_000_anomaly_map.tif").array
    r = read_scan(out / "00000002_000_anomaly_map_raw.tif").array
    assert w.shape == r.shape and np.all(w <= r + 1e-6) and np.any(w < r - 1e-4)
    assert json.loads((out / "predict.json").read_text())["prior"]["kind"] == "lungs"
    # a painted mask: zero everywhere but one corner -> the map damped to the floor outside it
    mask = np.zeros(w.shape, np.uint8)
    mask[:100, :100] = 1
    from napari_ppii.io import write_array

    mpath = write_array(mask, tmp_path / "mask", fmt="tiff")
    out2 = tmp_path / "pred2"
    assert (
        main(
            [
                "predict",
                str(img),
                "--checkpoint",
                str(ckpt),
                "--out",
                str(out2),
                "--prior",
                "mask",
                "--prior-mask",
                str(mpath),
                "--prior-floor",
                "0.5",
                "--quiet",
            ]
        )
        == 0
    )
    w2 = read_scan(out2 / "00000002_000_anomaly_map.tif").array
    np.testing.assert_allclose(w2[-200:, -200:], 0.5 * r[-200:, -200:], rtol=1e-4, atol=1e-7)
    assert main(["predict", str(img), "--checkpoint", str(ckpt), "--out", str(out2), "--prior", "mask"]) == 2
    assert "--prior-mask" in capsys.readouterr().err


def test_ct_scans_get_the_ct_default_and_a_given_value_serves_both(tmp_path):
    from dataclasses import replace

    from napari_ppii.cli import _prior_args
    from napari_ppii.evaluation import EvalOptions, evaluate
    from napari_ppii.evaluation.evaluate import TestItem
    from napari_ppii.io import Box
    from napari_ppii.io.scan import Scan
    from napari_ppii.prior import DEFAULT_PRIOR

    ct, cxr = DEFAULT_PRIOR.ct, DEFAULT_PRIOR.for_scan(SimpleNamespace(modality="DX"))
    assert (cxr.sigma, cxr.floor) == (0.03, 0.1) and cxr.sigma_ct is None
    assert (ct.sigma, ct.floor) != (cxr.sigma, cxr.floor)  # CT has a default of its own
    assert DEFAULT_PRIOR.for_scan(SimpleNamespace(modality="CT")) == ct
    assert "CT:" in DEFAULT_PRIOR.describe() and DEFAULT_PRIOR.to_dict()["sigma_ct"] == ct.sigma

    def args(**kw):
        base = dict(prior=None, prior_sigma=None, prior_floor=None, prior_mask=None)
        return SimpleNamespace(**(base | kw))

    assert _prior_args(args())[0] == DEFAULT_PRIOR
    given = _prior_args(args(prior_sigma=0.05))[0]
    assert given.ct.sigma == given.sigma == 0.05 and given.ct.floor == ct.floor  # the floor stays per modality
    assert _prior_args(args(prior_floor=0.3))[0].ct.floor == 0.3

    # a CT volume is weighted with the CT values, a radiograph with the radiographs' (same lungs, same map)
    img, _ = chest_phantom(128, 0, nodule=(60, 40, 5, 0.5))
    hu = (img * 1400 - 1000).astype(np.float32)
    vol = Scan(np.stack([hu, hu]), (2.0, 1.0, 1.0), (0, 0, 0), np.eye(3), "CT")
    flat = Scan(img, (1.0, 1.0), (0.0, 0.0), np.eye(2), "CR")
    rng = np.random.default_rng(0)
    maps = {id(vol): rng.random(vol.shape).astype(np.float32), id(flat): rng.random(flat.shape).astype(np.float32)}

    class Fixed:
        def predict_scan(self, scan, samples=None):
            return SimpleNamespace(mean=maps[id(scan)].copy())

    from napari_ppii.anatomy import lung_mask

    for scan, want in ((vol, ct), (flat, cxr)):
        item = TestItem("s", None, [Box((0, 55, 35), (1, 65, 45)) if scan.ndim == 3 else Box((55, 35), (65, 45))], scan)
        ev = evaluate(Fixed(), [item], EvalOptions(n_boot=5, prior=DEFAULT_PRIOR), floors=False, keep_maps=1)
        weighted = ev.maps[0]
        lungs = lung_mask(scan)
        expected = maps[id(scan)] * soft_prior(lungs.reshape(scan.shape), want.sigma, want.floor)
        np.testing.assert_allclose(weighted, expected, rtol=1e-5, atol=1e-6)
        other = replace(want, sigma=cxr.sigma if want is ct else ct.sigma)
        wrong = maps[id(scan)] * soft_prior(lungs.reshape(scan.shape), other.sigma, other.floor)
        assert not np.allclose(expected, wrong)  # the two modalities' values give two maps here
