# SPDX-License-Identifier: BSD-3-Clause
"""Batch prediction over files, folders and CSVs with one model load; slab-wise volumes; preprocessing
that is the same chunk by chunk as whole."""

import csv
import shutil

import numpy as np
import pytest

from conftest import RESOURCES, smooth_image
from napari_ppii.cli import main
from napari_ppii.config import PPIIConfig, PreprocessConfig
from napari_ppii.io import Scan, read_scan, write_array

TINY = [
    "model.base_channels=4",
    "model.levels=3",
    "data.image_size=32",
    "training.batch_size=4",
    "data.val_samples=4",
    "training.warmup_steps=2",
    "synthesis.placement=anywhere",
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from napari_ppii.training import train

    tmp = tmp_path_factory.mktemp("ck")
    cfg = PPIIConfig().with_overrides(TINY + [f"training.out_dir={tmp}", "training.steps=2", "training.val_every=2"])
    train(cfg, images=np.stack([smooth_image((32, 32), seed=s) for s in range(6)]))
    return tmp / "last.pt"


def test_equalisation_in_slabs_equals_skimage_on_the_whole_volume():
    from skimage.exposure import equalize_hist

    from napari_ppii.preprocess import InputMapping, apply_window, normalise, prepare

    rng = np.random.default_rng(0)
    vol = (smooth_image((37, 40, 36), seed=3) * 1500 - 1100 + rng.normal(0, 20, (37, 40, 36))).astype(np.float32)
    scan = Scan(vol, (1, 1, 1), (0, 0, 0), np.eye(3), "CT")
    want = equalize_hist(apply_window(vol, -1350, 150), nbins=256).astype(np.float32)
    m = InputMapping(scan, PreprocessConfig(window="lung"), slab=5)
    got = np.concatenate([m.apply(vol[z : z + 5]) for z in range(0, 37, 5)])
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(prepare(scan, PreprocessConfig(window="lung")).array, want)
    # radiographs: percentile normalisation then equalisation, as before
    img = (smooth_image((50, 60), seed=4) * 4000).astype(np.float32)
    r = Scan(img, (1, 1), (0, 0), np.eye(2), "DX")
    np.testing.assert_array_equal(prepare(r).array, equalize_hist(normalise(img), nbins=256).astype(np.float32))


def test_volume_prediction_in_slabs_equals_whole(checkpoint):
    from napari_ppii.predict import Predictor

    vol = (smooth_image((11, 40, 36), seed=1) * 1000 - 900).astype(np.float32)
    scan = Scan(vol, (2.5, 0.8, 0.7), (0, 0, 0), np.eye(3), "CT")
    p = Predictor(checkpoint)
    a = p.predict_scan(scan, slab=3)
    b = p.predict_scan(scan, slab=100)
    np.testing.assert_allclose(a.mean, b.mean, atol=1e-6)
    assert a.mean.shape == vol.shape and a.mean.max() > 0


def test_batch_predict_files_folder_csv_with_a_bad_input(tmp_path, checkpoint, capsys, monkeypatch):
    from napari_ppii import checkpoint as ck_mod
    from napari_ppii import predict as predict_mod

    loads = []
    real = ck_mod.load_checkpoint
    monkeypatch.setattr(ck_mod, "load_checkpoint", lambda *a, **k: loads.append(1) or real(*a, **k))
    folder = tmp_path / "scans"
    folder.mkdir()
    for name in ("00000002_000.png", "00000005_000.png"):
        shutil.copy(RESOURCES / "nih-cxr" / name, folder / name)
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    vol = (smooth_image((5, 40, 36), seed=1) * 1000 - 900).astype(np.float32)
    ct = write_array(vol, tmp_path / "ct", like=Scan(vol, (2.5, 0.8, 0.7), (0, 0, 0), np.eye(3), "CT"), fmt="nifti")
    out = tmp_path / "out"
    rc = main(
        [
            "predict",
            "--checkpoint",
            str(checkpoint),
            "--out",
            str(out),
            str(folder),
            str(ct),
            str(RESOURCES / "nih-cxr" / "00013751_003.png"),
            str(tmp_path / "missing.png"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1  # something was skipped
    assert len(loads) == 1  # one model for every scan
    assert "[1/5]" in err and "[5/5]" in err and "broken.png" in err and "missing.png" in err
    rows = list(csv.DictReader((out / "index.csv").open()))
    status = {r["input"].split("/")[-1]: r["status"] for r in rows}
    assert status == {
        "missing.png": "skipped",
        "00000002_000.png": "ok",
        "00000005_000.png": "ok",
        "broken.png": "skipped",
        "ct.nii.gz": "ok",
        "00013751_003.png": "ok",
    }
    assert all(r["reason"] for r in rows if r["status"] == "skipped")
    assert read_scan(out / "00000002_000_anomaly_map.tif").shape == read_scan(folder / "00000002_000.png").shape
    assert read_scan(out / "ct_anomaly_map.nii.gz").shape == (5, 40, 36)
    assert (out / "ct_variance.nii.gz").exists()
    # an annotations CSV with a split: only those rows
    rc = main(
        [
            "predict",
            "--checkpoint",
            str(checkpoint),
            "--out",
            str(tmp_path / "csv"),
            "--quiet",
            str(RESOURCES / "nih-cxr" / "annotations.csv"),
        ]
    )
    assert rc == 0
    n_images = len({r["image"] for r in csv.DictReader((RESOURCES / "nih-cxr" / "annotations.csv").open())})
    assert len(list((tmp_path / "csv").glob("*_anomaly_map.tif"))) == n_images
    # names never collide
    srcs, bad = predict_mod.expand_inputs([str(folder / "00000002_000.png"), str(folder / "00000002_000.png")])
    assert [s.name for s in srcs] == ["00000002_000", "00000002_000_2"] and bad == []


def test_folder_of_dicom_series_and_empty_folder(tmp_path, checkpoint, dicom_series):
    from napari_ppii.predict import expand_inputs

    empty = tmp_path / "empty"
    empty.mkdir()
    srcs, bad = expand_inputs([str(dicom_series), str(empty)])
    assert len(srcs) == 1 and srcs[0].series
    # the empty folder, and the series folder's text file (listed, as ppii info lists it)
    assert [why for inp, why in bad if inp == str(empty)] == ["folder is empty"]
    assert any(inp.endswith("notes.txt") and "not a scan" in why for inp, why in bad)


def test_maps_are_written_compactly_within_float16_precision(tmp_path):
    """Map files keep float16's precision in float32 NIfTI (every reader as before): the dropped mantissa
    bits compress, the values stay within 2**-11 relative (issue 22 item 11)."""
    from napari_ppii.io.writers import round_mantissa

    rng = np.random.default_rng(0)
    vol = (smooth_image((40, 64, 64), seed=2) * 0.6 + rng.random((40, 64, 64)) * 0.01).astype(np.float32)
    r = round_mantissa(vol, 10)
    assert r.dtype == np.float32 and np.all(np.abs(r - vol) <= np.abs(vol) * 2.0**-11)
    assert not np.array_equal(r, vol)
    scan = Scan(vol, (1, 1, 1), (0, 0, 0), np.eye(3), "CT")
    full = write_array(vol, tmp_path / "full", like=scan)
    compact = write_array(vol, tmp_path / "compact", like=scan, mantissa_bits=10)
    assert compact.stat().st_size < 0.8 * full.stat().st_size
    back = read_scan(compact).array
    assert np.all(np.abs(back - vol) <= np.abs(vol) * 2.0**-11)


def _train_tiny(tmp, *extra):
    from napari_ppii.training import train

    cfg = PPIIConfig().with_overrides(
        TINY + [f"training.out_dir={tmp}", "training.steps=2", "training.val_every=2", *extra]
    )
    train(cfg, images=np.stack([smooth_image((32, 32), seed=s) for s in range(6)]))
    return tmp / "last.pt"


def test_an_ensemble_averages_its_members_and_adds_their_spread_to_the_variance(tmp_path, checkpoint):
    from napari_ppii.predict import Predictor

    other = _train_tiny(tmp_path / "seed1", "seed=1")
    a, b, both = Predictor(checkpoint), Predictor(other), Predictor([checkpoint, other])
    assert both.steps == [a.step, b.step] and both.stochastic and not a.stochastic
    x = np.stack([smooth_image((32, 32), seed=s) for s in (7, 8, 9)])
    (ma, va), (mb, vb), (m, v) = a.predict_images(x), b.predict_images(x), both.predict_images(x)
    assert np.abs(ma - mb).max() > 1e-3  # two seeds: two different maps, or the test shows nothing
    np.testing.assert_allclose(m, (ma + mb) / 2, atol=1e-6)
    # deterministic members: the total variance is the spread between them
    np.testing.assert_allclose(v, va / 2 + vb / 2 + ((ma - mb) / 2) ** 2, atol=1e-6)
    assert v.max() > 0
    # in the scan's geometry too: the variance map is written for an ensemble
    scan = Scan((smooth_image((40, 36), seed=3) * 1000 - 900).astype(np.float32), (0.7, 0.7), (0, 0), np.eye(2), "DX")
    amap = both.predict_scan(scan)
    assert amap.mean.shape == amap.variance.shape == (40, 36) and amap.variance.max() > 0
    # one checkpoint in a list is the single model
    np.testing.assert_array_equal(Predictor([checkpoint]).predict_images(x)[0], ma)


def test_an_ensemble_of_models_taking_other_inputs_is_refused(tmp_path, checkpoint):
    from napari_ppii.errors import InputError
    from napari_ppii.predict import Predictor

    large = _train_tiny(tmp_path / "large", "data.image_size=48")
    with pytest.raises(InputError, match="48 px images, not 32") as err:
        Predictor([checkpoint, large])
    assert "large" in str(err.value)
    with pytest.raises(InputError, match="no checkpoint"):
        Predictor([])


def test_cli_predicts_with_an_ensemble_and_records_its_members(tmp_path, checkpoint):
    import json

    other = _train_tiny(tmp_path / "seed1", "seed=1")
    out = tmp_path / "out"
    img = str(RESOURCES / "nih-cxr" / "00000002_000.png")
    # scans may follow the checkpoints directly (a repeated option, not a list that would swallow them)
    rc = main(
        ["predict", "--checkpoint", str(checkpoint), "--checkpoint", str(other), "--out", str(out), "--quiet", img]
    )
    assert rc == 0
    rec = json.loads((out / "predict.json").read_text())
    assert rec["checkpoint"] == [str(checkpoint), str(other)] and len(rec["step"]) == 2
    var = read_scan(out / "00000002_000_variance.tif").array
    assert var.max() > 0  # the members disagree somewhere
    rc = main(["predict", "--out", str(tmp_path / "one"), "--quiet", "--checkpoint", str(checkpoint), img])
    assert rc == 0 and json.loads((tmp_path / "one" / "predict.json").read_text())["checkpoint"] == str(checkpoint)


def test_an_ensemble_file_predicts_as_its_members_and_cannot_be_resumed(tmp_path, checkpoint):
    from napari_ppii.checkpoint import export_ensemble, load_checkpoint
    from napari_ppii.errors import InputError
    from napari_ppii.predict import Predictor
    from napari_ppii.training import train
    from napari_ppii.training.loop import config_from_checkpoint

    other = _train_tiny(tmp_path / "seed1", "seed=1")
    ens = export_ensemble([checkpoint, other], tmp_path / "ens.pt", provenance={"why": "two seeds"})
    ck = load_checkpoint(ens)
    assert ck["provenance"] == {"why": "two seeds"} and "model" not in ck  # the weights are in the members' files
    members = [tmp_path / name for name in ck["member_files"]]
    assert [load_checkpoint(m)["exported_from"] for m in members] == [str(checkpoint), str(other)]
    x = np.stack([smooth_image((32, 32), seed=s) for s in (7, 8)])
    one_file, two_files = Predictor(ens), Predictor([checkpoint, other])
    assert one_file.steps == two_files.steps and one_file.stochastic
    for got, want in zip(one_file.predict_images(x), two_files.predict_images(x)):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(InputError, match="at least two"):
        export_ensemble([checkpoint], tmp_path / "one.pt")
    with pytest.raises(InputError, match="cannot hold another ensemble"):
        export_ensemble([ens, other], tmp_path / "nested.pt")
    # a member used alone is a plain model
    np.testing.assert_array_equal(Predictor(members[1]).predict_images(x)[0], Predictor(other).predict_images(x)[0])
    with pytest.raises(InputError, match="can predict, not resume"):
        cfg = config_from_checkpoint(ens).with_overrides([f"training.out_dir={tmp_path / 'again'}"])
        train(cfg, resume=ens, images=np.stack([smooth_image((32, 32), seed=s) for s in range(6)]))


def test_cli_evaluates_an_ensemble_and_its_report_names_every_member(tmp_path, checkpoint):
    import json

    from conftest import nih_all_test_csv

    other = _train_tiny(tmp_path / "seed1", "seed=1")
    out = tmp_path / "eval"
    data = str(nih_all_test_csv(tmp_path))
    args = ["evaluate", "--checkpoint", str(checkpoint), "--checkpoint", str(other), "--data", data]
    rc = main(args + ["--labels", "Nodule,Mass", "--out", str(out), "--n-boot", "5", "--no-floors", "--quiet"])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["checkpoint"] == [str(checkpoint), str(other)] and len(metrics["step"]) == 2
    report = (out / "report.md").read_text()
    assert f"- checkpoint: {checkpoint}, {other}" in report


def test_an_ensemble_file_without_its_member_files_says_which_is_missing(tmp_path, checkpoint):
    from napari_ppii.checkpoint import export_ensemble
    from napari_ppii.errors import InputError
    from napari_ppii.predict import Predictor

    other = _train_tiny(tmp_path / "seed1", "seed=1")
    ens = export_ensemble([checkpoint, other], tmp_path / "ens.pt")
    (tmp_path / "ens_member1.pt").unlink()
    with pytest.raises(InputError, match="member file ens_member1.pt is missing"):
        Predictor(ens)


def test_mirror_tta_averages_the_map_with_the_mirrored_images_map(tmp_path, checkpoint):
    from napari_ppii.errors import InputError
    from napari_ppii.predict import Predictor

    plain, mirror = Predictor(checkpoint, tta="none"), Predictor(checkpoint, tta="mirror")
    assert mirror.tta == "mirror" and mirror.stochastic and not plain.stochastic
    x = np.stack([smooth_image((32, 32), seed=s) for s in (7, 8)])
    x[:, :, :10] += 0.5  # not left-right symmetric: the mirrored image's map differs
    (m0, _), (mf, _) = plain.predict_images(x), plain.predict_images(np.ascontiguousarray(x[..., ::-1]))
    mf = mf[..., ::-1]
    assert np.abs(m0 - mf).max() > 1e-3  # or the test shows nothing
    m, v = mirror.predict_images(x)
    np.testing.assert_allclose(m, (m0 + mf) / 2, atol=1e-6)
    np.testing.assert_allclose(v, ((m0 - mf) / 2) ** 2, atol=1e-6)  # the spread of the two views
    # with an ensemble: every member in both views
    other = _train_tiny(tmp_path / "seed1", "seed=1")
    both = Predictor([checkpoint, other], tta="mirror")
    mb0 = Predictor(other, tta="mirror").predict_images(x)[0]
    np.testing.assert_allclose(both.predict_images(x)[0], (m + mb0) / 2, atol=1e-6)
    with pytest.raises(InputError, match="test-time augmentation"):
        Predictor(checkpoint, tta="flip")


def test_mirror_zoom_adds_mirrors_two_views_of_the_enlarged_input(checkpoint):
    import torch
    import torch.nn.functional as F

    from napari_ppii.predict import Predictor
    from napari_ppii.tta import ZOOM

    def resize(a, side):
        return F.interpolate(torch.as_tensor(a)[:, None].float(), size=(side, side), mode="bilinear")[:, 0].numpy()

    x = np.stack([smooth_image((32, 32), seed=s) for s in (7, 8)])
    x[:, :, :10] += 0.5
    mirror, zoomed = Predictor(checkpoint, tta="mirror"), Predictor(checkpoint, tta="mirror_zoom")
    assert zoomed.tta == "mirror_zoom" and zoomed.stochastic
    side = round(32 * ZOOM)
    m1 = mirror.predict_images(x)[0]
    # mirror's two views of the enlarged image, averaged, then brought back (resizing is linear)
    mz = resize(mirror.predict_images(resize(x, side))[0], 32)
    assert np.abs(mz - m1).max() > 1e-4  # the enlarged views differ, or the test shows nothing
    m, v = zoomed.predict_images(x)
    assert m.shape == v.shape == x.shape
    np.testing.assert_allclose(m, (m1 + mz) / 2, atol=2e-6)
    assert v.min() >= 0 and v.max() > 0


def test_tta_auto_follows_the_models_modality(checkpoint, monkeypatch):
    from napari_ppii import predict

    for modality, expected in [("radiograph", predict.DEFAULT_TTA["radiograph"]), ("CT", predict.DEFAULT_TTA["CT"])]:
        real = predict._load_members

        def fake(path, device, modality=modality, real=real):
            return [(cfg, model, step, {**ins, "modality": modality}) for cfg, model, step, ins in real(path, device)]

        monkeypatch.setattr(predict, "_load_members", fake)
        assert predict.Predictor(checkpoint).tta == expected
        monkeypatch.setattr(predict, "_load_members", real)
    assert predict.Predictor(checkpoint).modality is None and predict.Predictor(checkpoint).tta == "none"
    assert predict.DEFAULT_TTA == {"radiograph": "mirror", "CT": "mirror"}


def test_cli_records_the_tta_it_predicted_with(tmp_path, checkpoint):
    import json

    img = str(RESOURCES / "nih-cxr" / "00000002_000.png")
    for tta in ("none", "mirror"):
        out = tmp_path / tta
        assert main(["predict", "--checkpoint", str(checkpoint), "--tta", tta, "--out", str(out), "--quiet", img]) == 0
        assert json.loads((out / "predict.json").read_text())["tta"] == tta
    # mirror: a variance map of the two views' spread; none: a deterministic U-Net's zero variance
    assert read_scan(tmp_path / "mirror" / "00000002_000_variance.tif").array.max() > 0
    assert read_scan(tmp_path / "none" / "00000002_000_variance.tif").array.max() == 0
