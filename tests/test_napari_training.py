# SPDX-License-Identifier: BSD-3-Clause
"""Training and prediction from the viewer (real Qt under Xvfb; training in a real subprocess)."""

import time

import numpy as np
import pytest
import torch

from conftest import smooth_image
from napari_ppii.config import PPIIConfig

napari = pytest.importorskip("napari")


def _write_pngs(folder, n=4, size=48):
    import imageio.v3 as iio

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        iio.imwrite(folder / f"img{i}.png", (smooth_image((size, size), seed=i) * 255).astype(np.uint8))
    return folder


@pytest.fixture
def train_widget(make_napari_viewer, qtbot):
    from napari_ppii._widgets.training import TrainingWidget

    v = make_napari_viewer()
    w = TrainingWidget(v, confirm=lambda: True)
    qtbot.addWidget(w)
    w.set_value("data.image_size", 32)
    w.set_value("training.batch_size", 2)
    w.set_value("model.base_channels", 4)
    yield w
    if w.running:
        w.stop()


def _tiny(w, tmp_path, steps, val_every):
    w.set_value("data.train", str(_write_pngs(tmp_path / "data")))
    w.set_value("training.out_dir", str(tmp_path / "run"))
    w.set_value("training.steps", steps)
    w.set_value("training.val_every", val_every)


def test_training_widget_runs_a_subprocess_and_follows_the_log(train_widget, tmp_path, qtbot):
    w = train_widget
    _tiny(w, tmp_path, steps=20, val_every=10)
    assert w.start()
    assert w.running and w.process.proc.pid != __import__("os").getpid()
    with qtbot.waitSignal(w.run_finished, timeout=120000) as blocker:
        pass
    assert blocker.args == [0], w.process.error_text()
    assert w.progress.value() == 20 and w.progress.maximum() == 20
    assert len(w.plot.loss) >= 2 and [s for s, _ in w.plot.dice] == [10, 20]
    assert "ETA" in w.eta.text()
    assert (tmp_path / "run" / "best.pt").exists() and (tmp_path / "run" / "config.yaml").exists()
    # the saved configuration is the widget's
    from napari_ppii.config import PPIIConfig

    saved = PPIIConfig.load(tmp_path / "run" / "config.yaml")
    assert saved.training.steps == 20 and saved.data.image_size == 32 and saved.model.base_channels == 4


def test_stop_ends_the_process_quickly_and_resume_continues(train_widget, tmp_path, qtbot):
    w = train_widget
    _tiny(w, tmp_path, steps=100000, val_every=100000)
    assert w.start()
    qtbot.waitUntil(lambda: w.progress.value() >= 3, timeout=120000)
    t0 = time.time()
    w.stop()
    assert time.time() - t0 < 5.0
    assert not w.running and w.process.proc.poll() is not None
    from napari_ppii.training import load_checkpoint

    stopped_at = load_checkpoint(tmp_path / "run" / "last.pt")["step"]
    assert stopped_at >= 3
    assert w.start(resume=True)
    qtbot.waitUntil(lambda: w.progress.value() >= stopped_at + 2, timeout=120000)
    w.stop()
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] >= stopped_at + 2


def test_failing_run_shows_its_error(train_widget, tmp_path, qtbot):
    w = train_widget
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    w.set_value("data.train", str(tmp_path / "empty"))
    w.set_value("training.out_dir", str(tmp_path / "run"))
    w.set_value("training.steps", 5)
    assert w.start()
    with qtbot.waitSignal(w.run_finished, timeout=120000) as blocker:
        pass
    assert blocker.args[0] != 0
    assert "no image files" in w.last_error and w.errors.isVisibleTo(w)
    assert "no image files" in w.errors.toPlainText()


def test_start_without_data_is_refused_with_a_message(train_widget):
    assert not train_widget.start()
    assert "training data" in train_widget.last_error
    assert train_widget.process is None


def test_train_on_layers(make_napari_viewer, qtbot, tmp_path):
    from napari_ppii._widgets.training import TrainingWidget

    v = make_napari_viewer()
    for i in range(3):
        v.add_image(smooth_image((40, 40), seed=i), name=f"normal {i}", scale=(0.5, 0.5), translate=(10, 20))
    from napari_ppii._layers import set_image_layer

    # a dock's output (the prediction dock's map) is never offered as training data (issue 22 item 6)
    set_image_layer(v, "anomaly map", np.zeros((40, 40), np.float32), {"scale": (0.5, 0.5), "translate": (10, 20)})
    w = TrainingWidget(v, confirm=lambda: True)
    qtbot.addWidget(w)
    assert list(w.layer_list.choices) == ["normal 0", "normal 1", "normal 2"]
    w.layer_list.value = list(w.layer_list.choices)  # every image layer
    w.use_layers.setChecked(True)
    w.set_value("data.image_size", 32)
    w.set_value("training.batch_size", 2)
    w.set_value("model.base_channels", 4)
    w.set_value("training.steps", 3)
    w.set_value("training.val_every", 3)
    w.set_value("training.out_dir", str(tmp_path / "run"))
    with qtbot.waitSignal(w.batch_shown, timeout=120000):
        assert w.show_batch()  # in a worker: the viewer stays responsive
    batch = v.layers["P-PII batch image"]
    assert batch.data.shape == (2, 32, 32)

    # laid over the scan's field of view (40 px x 0.5 mm = 20 mm), not 32 px in a corner of it
    def edges(layer):  # world coordinates of the outer pixel edges (extent.world holds pixel centres)
        lo, hi = np.asarray(layer.extent.world)[:, -2:]
        half = np.asarray(layer.scale)[-2:] / 2
        return lo - half, hi + half

    for got, want in zip(edges(batch), edges(v.layers["normal 0"])):
        np.testing.assert_allclose(got, want, atol=1e-6)
    # a placement mask painted for "normal 0" (as the preview's Labels layer is): training uses it
    painted = np.zeros((40, 40), np.uint8)
    painted[5:25, 10:30] = 1
    v.add_labels(painted, name="P-PII placement mask", metadata={"ppii_mask_for": "normal 0"})
    assert w.start()
    with qtbot.waitSignal(w.run_finished, timeout=120000) as blocker:
        pass
    assert blocker.args == [0], w.process.error_text()
    assert np.load(tmp_path / "run" / "layers.npy").shape == (3, 32, 32)
    masks = np.load(tmp_path / "run" / "masks.npy")
    assert masks.shape == (3, 32, 32)
    assert masks[0, 8, 16] == 1 and masks[0, 28, 4] == 0 and 0.2 < masks[0].mean() < 0.35  # 20x20 of 40x40
    saved = PPIIConfig.load(tmp_path / "run" / "config.yaml")
    assert saved.synthesis.placement == "mask" and saved.data.mask.endswith("masks.npy")


# ------------------------------------------------------------------------------------------------
# prediction
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lesion_model(tmp_path_factory):
    """A tiny U-Net over-fitted to find bright discs implanted in smooth images; its checkpoint and a
    test image with one implanted lesion (and its box)."""
    from napari_ppii.config import PPIIConfig
    from napari_ppii.io import Box
    from napari_ppii.models import build_model
    from napari_ppii.training import save_checkpoint
    from napari_ppii.training.losses import segmentation_loss

    rng = np.random.default_rng(0)
    size = 64

    def implant(img, cy, cx, r=6):
        yy, xx = np.mgrid[:size, :size]
        disc = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).astype(np.float32)
        return np.clip(img + 0.6 * disc, 0, 1), disc

    xs, ys = [], []
    for i in range(16):
        img = smooth_image((size, size), seed=100 + i) * 0.5
        cy, cx = rng.integers(10, size - 10, 2)
        x, y = implant(img, cy, cx)
        xs.append(x)
        ys.append(y)
    x = torch.tensor(np.stack(xs))[:, None]
    y = torch.tensor(np.stack(ys))[:, None]
    cfg = PPIIConfig().with_overrides(
        [
            "model.backbone=mc_unet",
            "model.base_channels=8",
            "model.levels=3",
            "model.dropout=0.1",
            f"data.image_size={size}",
            "preprocess.equalise=false",
            "preprocess.normalise=minmax",
        ]
    )
    torch.manual_seed(0)
    model = build_model(cfg.model)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(250):
        model.train()
        loss = segmentation_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    folder = tmp_path_factory.mktemp("lesion_model")
    save_checkpoint({"model": model.state_dict(), "config": cfg.to_dict(), "step": 250}, folder / "m.pt")
    test_img, disc = implant(smooth_image((size, size), seed=999) * 0.5, 40, 22)
    box = Box((34, 16), (46, 28))
    return folder / "m.pt", test_img, box


@pytest.fixture
def predict_setup(make_napari_viewer, qtbot, lesion_model):
    from napari_ppii._layers import boxes_shapes_data
    from napari_ppii._widgets.predict import PredictWidget

    ck, img, box = lesion_model
    v = make_napari_viewer(show=True)
    v.add_image(img, name="scan", scale=(0.5, 0.7), translate=(10.0, 20.0))
    data, kw, _ = boxes_shapes_data([box], 2, name="truth", scale=(0.5, 0.7), translate=(10.0, 20.0))
    v.add_shapes(data, **{k: val for k, val in kw.items() if k != "features"})
    w = PredictWidget(v)
    qtbot.addWidget(w)
    w.checkpoint.setText(str(ck))
    w.image_combo.value = "scan"
    w.truth_combo.value = "truth"
    w.set_value("model.samples", 4)
    return v, w, box


def _predict(w, qtbot):
    with qtbot.waitSignal(w.prediction_done, timeout=60000):
        w.predict()
    qtbot.waitUntil(lambda: not w.busy, timeout=10000)


def test_prediction_layers_line_up_and_detections_count(predict_setup, qtbot):
    v, w, box = predict_setup
    _predict(w, qtbot)
    assert w.last_error is None
    assert w.progress.maximum() == 1 and w.progress.value() == 1  # the worker reported the one image done
    for name in ("anomaly map", "uncertainty"):
        ly = v.layers[name]
        assert tuple(ly.scale) == (0.5, 0.7) and tuple(ly.translate) == (10.0, 20.0)
        assert ly.data.shape == (64, 64)
    assert float(v.layers["uncertainty"].data.max()) > 0  # MC dropout: several samples differ
    w.threshold.setValue(0.5)
    hits, fps, n = w.last_counts
    assert n == 1 and hits == 1, w.counts.text()
    assert "detections" in v.layers and tuple(v.layers["detections"].scale) == (0.5, 0.7)
    w.threshold.setValue(1.0)
    assert w.last_counts[:2] == (0, 0)  # nothing exceeds the top of the map's range


def test_screenshot_shows_the_map_over_the_implanted_lesion(predict_setup, qtbot):
    v, w, box = predict_setup
    _predict(w, qtbot)
    for ly in v.layers:
        ly.visible = ly.name == "anomaly map"
    ly = v.layers["anomaly map"]
    ly.colormap, ly.opacity = "gray", 1.0
    v.reset_view()
    shot = v.screenshot(canvas_only=True, flash=False)[..., :3].astype(float).mean(-1)
    h, wd = shot.shape
    ys, xs = np.nonzero(shot > 128)
    assert len(ys) > 20
    # screen -> world -> data
    ext = ly.extent.world
    zoom = min(h / (ext[1][0] - ext[0][0]), wd / (ext[1][1] - ext[0][1]))
    wy = (ys - h / 2) / zoom + (ext[0][0] + ext[1][0]) / 2
    wx = (xs - wd / 2) / zoom + (ext[0][1] + ext[1][1]) / 2
    dy = (wy - 10.0) / 0.5
    dx = (wx - 20.0) / 0.7
    inside = (dy >= box.lo[0] - 3) & (dy <= box.hi[0] + 3) & (dx >= box.lo[1] - 3) & (dx <= box.hi[1] + 3)
    assert inside.mean() > 0.9, inside.mean()


def test_threshold_follows_each_new_map_until_the_user_moves_it(predict_setup, qtbot):
    """A model whose map never reaches 0.5 still shows detections: the threshold starts at each new map's
    99.9th percentile; moving the slider turns that off and the next map keeps the user's threshold."""
    v, w, box = predict_setup
    assert w.auto_threshold.isChecked()
    _predict(w, qtbot)
    amap = v.layers["anomaly map"].data
    want = min(0.99, float(np.percentile(amap, 99.9)))
    assert w.threshold.value() == pytest.approx(want, abs=0.006)
    assert w.last_counts[0] + w.last_counts[1] >= 1  # something is shown
    w.threshold.setValue(0.9)  # as the user drags it
    assert not w.auto_threshold.isChecked()
    _predict(w, qtbot)
    assert w.threshold.value() == pytest.approx(0.9)
    w.auto_threshold.setChecked(True)
    assert w.threshold.value() == pytest.approx(want, abs=0.006)


def test_prediction_with_a_painted_prior_mask(predict_setup, qtbot):
    """Prior 'mask' with a Labels layer: the map is unchanged deep inside the painted region, damped to
    the floor far outside it, and the raw map is kept as a hidden layer; no Labels layer: a message."""
    from napari_ppii.prior import DEFAULT_PRIOR

    v, w, box = predict_setup
    w.prior.kind.value = "mask"
    assert not w.predict() and "Labels layer" in w.counts.text()
    painted = np.zeros((64, 64), np.uint8)
    painted[20:60, 5:40] = 1  # around the lesion (rows 34-46, columns 16-28)
    v.add_labels(painted, name="painted", scale=(0.5, 0.7), translate=(10.0, 20.0))
    w.prior.layer.value = "painted"
    _predict(w, qtbot)
    assert w.last_error is None
    weighted, raw = v.layers["anomaly map"].data, v.layers["anomaly map (raw)"].data
    assert not v.layers["anomaly map (raw)"].visible
    np.testing.assert_allclose(weighted[35:45, 15:30], raw[35:45, 15:30], rtol=1e-5)
    np.testing.assert_allclose(weighted[:5, 55:], DEFAULT_PRIOR.floor * raw[:5, 55:], rtol=1e-3, atol=1e-7)
    assert w.last_counts[0] == 1  # the lesion inside the painted region is still hit


def test_prediction_bad_checkpoint_notifies(predict_setup, tmp_path, qtbot):
    v, w, _ = predict_setup
    (tmp_path / "bad.pt").write_bytes(b"junk")
    w.checkpoint.setText(str(tmp_path / "bad.pt"))
    n_layers = len(v.layers)
    w.predict()  # the model loads in the background: the error arrives from the worker
    qtbot.waitUntil(lambda: not w.busy, timeout=20000)
    assert "checkpoint" in w.last_error and len(v.layers) == n_layers
    assert w.predict_button.isEnabled()


def test_predict_all_layers_and_a_folder_in_the_background(predict_setup, qtbot, tmp_path):
    import csv
    import shutil

    from conftest import RESOURCES

    v, w, box = predict_setup
    v.add_image(v.layers["scan"].data[::-1].copy(), name="flipped")
    assert w.predict_all()
    qtbot.waitUntil(lambda: not w.busy, timeout=60000)
    assert w.last_error is None
    assert {"anomaly map: scan", "anomaly map: flipped", "anomaly map"} <= {ly.name for ly in v.layers}
    a, b = v.layers["anomaly map: scan"].data, v.layers["anomaly map: flipped"].data
    assert a.shape == b.shape == (64, 64) and not np.array_equal(a, b)
    folder = tmp_path / "scans"
    folder.mkdir()
    shutil.copy(RESOURCES / "nih-cxr" / "00000002_000.png", folder)
    (folder / "bad.png").write_bytes(b"not a png")
    n_layers = len(v.layers)
    assert w.predict_folder(folder, tmp_path / "maps")
    qtbot.waitUntil(lambda: not w.busy, timeout=60000)
    assert w.last_error is None and len(v.layers) == n_layers  # written to disk, the viewer untouched
    rows = {r["input"].split("/")[-1]: r for r in csv.DictReader((tmp_path / "maps" / "index.csv").open())}
    assert rows["00000002_000.png"]["status"] == "ok" and rows["bad.png"]["status"] == "skipped"
    assert (tmp_path / "maps" / "00000002_000_anomaly_map.tif").exists()
    assert "1 scan(s) predicted" in w.counts.text() and "bad.png" in w.counts.text()


def test_overlay_keeps_the_scan_readable_away_from_detections(predict_setup, qtbot):
    v, w, box = predict_setup
    _predict(w, qtbot)
    for ly in v.layers:
        ly.visible = ly.name in ("scan", "anomaly map")
    w.threshold.setValue(0.5)
    assert tuple(v.layers["anomaly map"].contrast_limits) == (0.5, 1.0)  # the threshold is what shows
    v.reset_view()
    with_map = v.screenshot(canvas_only=True, flash=False)[..., :3].astype(float)
    v.layers["anomaly map"].visible = False
    scan_only = v.screenshot(canvas_only=True, flash=False)[..., :3].astype(float)
    v.layers["anomaly map"].visible = True
    diff = np.abs(with_map - scan_only).max(-1)
    changed = diff > 8
    # far from the lesion (and so from every detection) the scan keeps its grey values
    amap = v.layers["anomaly map"].data
    assert changed.any()  # the lesion is tinted
    assert changed.mean() < 0.1, changed.mean()
    far = scan_only.mean(-1) > 0  # pixels showing the scan
    assert np.median(np.abs(with_map - scan_only).max(-1)[far & ~changed]) == 0
    assert float(amap.max()) > 0.5


# ------------------------------------------------------------------------------------------------
# evaluation widget
# ------------------------------------------------------------------------------------------------
def test_evaluation_widget_table_froc_and_browsing(make_napari_viewer, qtbot, tmp_path):
    from conftest import nih_all_test_csv, tiny_checkpoint
    from napari_ppii._widgets.evaluate import EvaluationWidget

    test_csv = nih_all_test_csv(tmp_path)
    ckpt = tiny_checkpoint(tmp_path)
    v = make_napari_viewer()
    w = EvaluationWidget(v)
    qtbot.addWidget(w)
    w.checkpoint.setText(str(ckpt))
    w.data.setText(str(test_csv))
    w.n_boot.setValue(20)
    w.detect_scale.setValue(0.02)
    with qtbot.waitSignals([w.evaluation_done, w.item_shown], timeout=600000):
        w.run()
    assert w.last_error is None
    assert w.evaluation.metrics["settings"]["detect_scale"] == 0.02  # the dock's detection scale is used
    # only what is shown is kept: no map and no scan of the other test images
    assert w.evaluation.maps == [] and all(it.scan is None for it in w.items)
    for i in range(4):
        assert 0 <= float(w.table.item(i, 0).text()) <= 1
        assert w.table.item(i, 1).text().startswith("[")
    # the floors sit beside the model: random, lung field, darkness, blob (no atlas: tiny run's data)
    heads = [w.floors_table.horizontalHeaderItem(j).text() for j in range(w.floors_table.columnCount())]
    assert {"random", "lung_field", "darkness", "blob"} <= set(heads)
    assert 0.3 <= float(w.floors_table.item(0, heads.index("random")).text().split()[0]) <= 0.7
    assert w.froc_plot.ax.lines  # the FROC curve is drawn
    assert w.index.maximum() == 5
    first = v.layers["eval map"].data.copy()
    with qtbot.waitSignal(w.item_shown, timeout=60000):
        w.index.setValue(4)  # a test image with a nodule box
    assert not np.array_equal(first, v.layers["eval map"].data)
    from napari_ppii.evaluation.metrics import extract_candidates

    # the candidates shown are the evaluation's: taken at the run's detection scale (0.02 here, not the default)
    shown = extract_candidates(w._shown[2], max_candidates=10, scale=0.02).points
    assert np.array_equal(np.asarray(v.layers["eval candidates"].data), shown)
    # a map where it matters: a one-pixel line peaks above a lesion-sized blob; the raw peaks would put the
    # line first, the run's detection scale puts the blob first
    i, scan, amap = w._shown
    h, wd = amap.shape[-2:]
    yy, xx = np.mgrid[:h, :wd]
    crafted = 0.8 * np.exp(-((yy - h // 2) ** 2 + (xx - wd // 2) ** 2) / (2 * (0.012 * max(h, wd)) ** 2))
    crafted[h // 5, wd // 10 : wd - wd // 10] = 1.0
    w._display(i, scan, crafted.astype(np.float32).reshape(amap.shape))
    assert tuple(np.asarray(v.layers["eval candidates"].data)[0][-2:]) == (h // 2, wd // 2)
    w._display(i, scan, amap)  # the test image's own map again
    from napari_ppii.io import read_scan
    from napari_ppii.predict import Predictor

    from napari_ppii.anatomy import lung_mask
    from napari_ppii.prior import DEFAULT_PRIOR, apply_prior

    # the shown map is the model's map weighted by the default prior (lungs); the table shows both rows
    assert w.prior.kind.value == DEFAULT_PRIOR.kind == "lungs"
    scan4 = read_scan(w.items[4].path)
    want = apply_prior(Predictor(ckpt).predict_scan(scan4).mean, lung_mask(scan4), DEFAULT_PRIOR)
    np.testing.assert_allclose(v.layers["eval map"].data, want, atol=1e-6)
    raw = w.evaluation.metrics["raw"]["pixel_auroc"]
    assert float(w.table.item(0, 2).text()) == pytest.approx(raw, abs=1e-3)
    assert len(v.layers["eval boxes"].data) == 1 and len(v.layers["eval candidates"].data) >= 1


def test_evaluation_widget_bad_input(make_napari_viewer, qtbot, tmp_path):
    from napari_ppii._widgets.evaluate import EvaluationWidget

    v = make_napari_viewer()
    w = EvaluationWidget(v)
    qtbot.addWidget(w)
    w.checkpoint.setText(str(tmp_path / "missing.pt"))
    w.run()
    assert "not found" in w.last_error and len(v.layers) == 0


def test_closing_asks_then_stops_the_run(make_napari_viewer, qtbot, tmp_path):
    from napari_ppii._widgets.training import TrainingWidget

    v = make_napari_viewer()
    answers = []
    w = TrainingWidget(v, confirm=lambda: answers.pop(0))
    qtbot.addWidget(w)
    w.set_value("data.image_size", 32)
    w.set_value("training.batch_size", 2)
    w.set_value("model.base_channels", 4)
    _tiny(w, tmp_path, steps=100000, val_every=100000)
    assert w.start()
    qtbot.waitUntil(lambda: w.progress.value() >= 1, timeout=120000)
    answers.append(False)  # "keep running": the close is refused
    w.close()
    assert w.running
    answers.append(True)  # "stop and close"
    t0 = time.time()
    w.close()
    assert not w.running and time.time() - t0 < 5.0


def test_overlapping_truth_boxes_count_as_one_lesion():
    """Four readers' boxes of one nodule are one lesion to hit (as in the evaluation); a separate box is
    another; a detection on the nodule hits one of two lesions, not one of five."""
    from napari_ppii._widgets.predict import count_hits, truth_lesions
    from napari_ppii.io import Box

    readers = [Box((10, 10), (20, 20)), Box((11, 9), (21, 19)), Box((9, 11), (19, 22)), Box((12, 12), (18, 18))]
    other = Box((40, 40), (45, 45))
    lesions = truth_lesions(readers + [other])
    assert len(lesions) == 2
    union = next(b for b in lesions if b.contains((15, 15)))
    assert union.lo == (9, 9) and union.hi == (21, 22)
    det = Box((14, 14), (16, 16), label="detection", properties={"peak": 0.9, "peak_y": 15, "peak_x": 15})
    assert count_hits([det], lesions) == (1, 0, 2)


def test_detections_are_peaks_never_boxes_around_a_whole_region():
    """A diffuse map over most of the image with two peaks: the detections are the evaluation's candidates
    above the threshold (small boxes at the peaks), not one box around the thresholded region (issue 22
    item 1: one detection box spanned the whole radiograph)."""
    from napari_ppii._widgets.predict import detect

    yy, xx = np.mgrid[:128, :128]
    amap = 0.6 + 0.05 * np.exp(-((yy - 64) ** 2 + (xx - 64) ** 2) / 3000.0)  # high almost everywhere
    amap += 0.3 * np.exp(-((yy - 30) ** 2 + (xx - 40) ** 2) / 20.0)
    amap += 0.25 * np.exp(-((yy - 90) ** 2 + (xx - 100) ** 2) / 20.0)
    dets = detect(amap.astype(np.float32), 0.8)
    assert len(dets) == 2
    assert {(d.properties["peak_y"], d.properties["peak_x"]) for d in dets} == {(30, 40), (90, 100)}
    assert all(max(d.size) <= 17 for d in dets)  # small boxes around the peaks
    assert detect(amap.astype(np.float32), 0.99) == []


def test_a_peak_above_the_threshold_is_shown_however_many_broader_candidates_outrank_it():
    """Candidates are ranked on the smoothed map: 60 broad blobs below the threshold outrank a narrow
    spike above it.  The threshold is applied before the count of shown detections, so the spike is shown
    (it was not when the first 50 candidates were taken before thresholding); the count still holds."""
    from napari_ppii._widgets.predict import detect

    yy, xx = np.mgrid[:256, :256]
    amap = np.zeros((256, 256))
    centres = [(16 + 32 * (i // 8), 16 + 32 * (i % 8)) for i in range(60)]
    for cy, cx in centres:
        amap += 0.45 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 60.0)
    amap[240, 200] = 0.95  # one pixel above the threshold, away from the blobs
    dets = detect(amap.astype(np.float32), 0.5, max_candidates=50)
    assert [(d.properties["peak_y"], d.properties["peak_x"]) for d in dets] == [(240, 200)]
    many = detect(amap.astype(np.float32), 0.3, max_candidates=50)
    assert len(many) == 50  # 61 peaks above 0.3: the first 50 are shown


def test_the_prediction_docks_tta_choice_reaches_the_model(predict_setup):
    _v, w, _box = predict_setup
    assert w.prior.tta.value == "auto" and w._loader()().tta == "none"  # a model without a modality: none
    w.prior.tta.value = "mirror"
    model = w._loader()()
    assert model.tta == "mirror" and model.stochastic  # reloaded with the dock's choice
