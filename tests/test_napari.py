# SPDX-License-Identifier: BSD-3-Clause
"""napari plugin: readers, sample data and the live preview widget (real Qt under Xvfb)."""

import json

import numpy as np
import pytest

from conftest import make_dicom, smooth_image
from napari_ppii.io import Scan, write_array

napari = pytest.importorskip("napari")


# ------------------------------------------------------------------------------------------------
# readers (through npe2, as napari calls them)
# ------------------------------------------------------------------------------------------------
def _read(path):
    """What napari does with a path: ask the plugin's reader contributions, call the first that accepts."""
    from napari_ppii._reader import get_boxes_reader, get_reader

    reader = get_reader(str(path)) or get_boxes_reader(str(path))
    assert reader is not None, path
    return reader(str(path))


def test_manifest_is_valid_and_lists_contributions():
    from importlib.resources import files

    from npe2 import PluginManifest

    mf = PluginManifest.from_file(files("napari_ppii") / "napari.yaml")
    # one reader contribution for scans and box files: napari needs no plugin named to open either
    assert {r.command for r in mf.contributions.readers} == {"napari-ppii.get_reader"}
    assert {s.key for s in mf.contributions.sample_data} == {
        "lidc_ct",
        "lidc_ct_full_view",
        "nih_nodule",
        "nih_normals",
    }
    assert len(mf.contributions.widgets) >= 1
    for cmd in mf.contributions.commands:
        mod, attr = cmd.python_name.split(":")
        assert hasattr(__import__(mod, fromlist=[attr]), attr), cmd.python_name


def test_reader_dicom_series_geometry(dicom_series):
    ((data, kw, kind),) = _read(dicom_series)
    assert kind == "image" and data.shape == (6, 20, 24)
    np.testing.assert_array_equal(data[:, 5, 5], [0, 100, 200, 300, 400, 500])
    assert kw["scale"] == pytest.approx((2.5, 0.7, 0.7))
    assert kw["translate"] == pytest.approx((-10.0, -60.0, -50.0))
    assert kw["contrast_limits"] == (-1350.0, 150.0)  # CT opens in the lung window


def test_reader_nifti_anisotropic(tmp_path):
    arr = (smooth_image((5, 30, 20), seed=1) * 1000 - 1000).astype(np.float32)
    scan = Scan(arr, (3.0, 0.5, 0.8), (10.0, -4.0, 2.5), np.eye(3), "CT")
    p = write_array(arr, tmp_path / "v", like=scan, fmt="nifti")
    ((data, kw, _),) = _read(p)
    np.testing.assert_allclose(data, arr)
    assert kw["scale"] == pytest.approx((3.0, 0.5, 0.8)) and kw["translate"] == pytest.approx((10.0, -4.0, 2.5))


def test_reader_png16(tmp_path):
    import imageio.v3 as iio

    a = (np.arange(40 * 30).reshape(40, 30) * 50).astype(np.uint16)
    iio.imwrite(tmp_path / "a.png", a)
    ((data, kw, _),) = _read(tmp_path / "a.png")
    np.testing.assert_array_equal(data, a)
    assert kw["scale"] == (1.0, 1.0) and kw["translate"] == (0.0, 0.0)


def test_reader_box_csv_2d_and_3d(tmp_path):
    p = tmp_path / "boxes.csv"
    p.write_text("image,label,x0,y0,x1,y1,subtlety\na.png,nodule,10,20,30,40,3\n")
    ((rects, kw, kind),) = _read(p)
    assert kind == "shapes" and len(rects) == 1
    np.testing.assert_allclose(rects[0], [[19.5, 9.5], [19.5, 30.5], [40.5, 30.5], [40.5, 9.5]])
    assert kw["features"]["subtlety"] == [3] and kw["features"]["label"] == ["nodule"]
    q = tmp_path / "b3.csv"
    q.write_text("image,label,x0,y0,x1,y1,z0,z1\nv,nodule,1,2,3,4,5,7\n")
    ((rects, kw, _),) = _read(q)
    assert len(rects) == 3 and sorted(r[0, 0] for r in rects) == [5, 6, 7]  # one rectangle per slice


def test_reader_ignores_other_csv(tmp_path):
    from napari_ppii._reader import get_boxes_reader

    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    assert get_boxes_reader(str(tmp_path / "other.csv")) is None


def test_reader_lidc_xml_finds_its_series(tmp_path):
    from test_io import LIDC_XML

    folder = tmp_path / "case"
    folder.mkdir()
    for k, z in enumerate([-5.0, -2.5, 0.0]):
        make_dicom(folder / f"{k}.dcm", np.full((100, 100), 1024, np.int16), position=(-50.0, -60.0, z))
    (folder / "read.xml").write_text(LIDC_XML)
    ((rects, kw, _),) = _read(folder / "read.xml")
    assert kw["scale"] == pytest.approx((2.5, 0.7, 0.7)) and kw["translate"] == pytest.approx((-5.0, -60.0, -50.0))
    assert {r[0, 0] for r in rects} == {0.0, 1.0, 2.0}  # z mapped to slice indices


def test_viewer_opens_box_files_without_naming_the_plugin_and_shows_reader_warnings(make_napari_viewer, tmp_path):
    """An LIDC XML opens as boxes wherever napari lets the plugin be chosen (File > Open, drag-and-drop,
    ``viewer.open(path, plugin=None)``): one reader contribution, no ambiguity (issue 22 item 8); a
    reader's warning (irregular slice spacing) reaches the viewer as a notification worded for the user."""
    from napari.utils.notifications import notification_manager

    from test_io import LIDC_XML

    folder = tmp_path / "case"
    folder.mkdir()
    for k, z in enumerate([-5.0, -2.5, 0.0, 4.0]):  # one gap of 4 mm among 2.5 mm ones: irregular
        make_dicom(folder / f"{k}.dcm", np.full((100, 100), 1024, np.int16), position=(-50.0, -60.0, z))
    (folder / "read.xml").write_text(LIDC_XML)
    viewer = make_napari_viewer()
    before = len(notification_manager.records)
    (scan,) = viewer.open(str(folder), plugin="napari-ppii")  # a folder: napari's own reader would stack files
    assert scan.data.shape[0] == 4
    texts = [str(n.message) for n in notification_manager.records[before:]]
    assert any("irregular slice spacing" in t for t in texts), texts
    assert not any("readers.py" in t for t in texts)
    # what File > Open and drag-and-drop do (napari's own viewer.open(path) defaults to plugin="napari",
    # its built-in reader; viewer.open(path, plugin=None) lets napari choose, as the GUI does)
    (boxes,) = viewer._open_or_raise_error([str(folder / "read.xml")])
    assert type(boxes).__name__ == "Shapes" and len(boxes.data) > 0
    (again,) = viewer.open(str(folder / "read.xml"), plugin=None)
    assert len(again.data) == len(boxes.data)


def test_sample_data_layers_line_up():
    from napari_ppii._sample_data import lidc_ct, nih_nodule, nih_normals

    (img, ikw, _), (rects, bkw, kind) = lidc_ct()
    assert img.shape == (24, 256, 256) and kind == "shapes" and len(rects) > 0
    assert bkw["scale"] == ikw["scale"] and bkw["translate"] == ikw["translate"]
    assert img.min() < -900  # HU
    (cxr, _, _), (boxes, _, _) = nih_nodule()
    assert cxr.shape == (512, 512) and len(boxes) == 1
    assert len(nih_normals()) == 4


def test_full_view_ct_slab_is_the_crop_slab_downsampled_in_place():
    """The full-field-of-view slab (the pretrained CT model's grid) holds the same slices as the crop
    slab: its voxels there are 2x2 means of the crop's, and each reader's box has the same physical
    centre in both."""
    from napari_ppii._sample_data import lidc_ct, lidc_ct_full_view

    (crop, ckw, _), (crects, _, _) = lidc_ct()
    (full, fkw, _), (frects, fbkw, _) = lidc_ct_full_view()
    assert full.shape == (24, 256, 256) and fbkw["scale"] == fkw["scale"]
    assert fkw["scale"] == pytest.approx((2.5, 1.40625, 1.40625))
    # voxel (z, i, j) of the full view covers crop pixels 2i-k.., 2j-m.. where (k, m) is the crop offset / 2
    off = [(ft - ct) / fs for ft, ct, fs in zip(fkw["translate"], ckw["translate"], fkw["scale"])]
    k, m = int(round(-off[1] - 0.25)), int(round(-off[2] - 0.25))  # the crop starts at full-view voxel (k, m)
    block = crop[:, :64, :64].reshape(24, 32, 2, 32, 2).mean((2, 4))
    assert np.abs(full[:, k : k + 32, m : m + 32] - block).max() <= 0.5 + 1e-6  # rounded to int16 HU

    def centres(rects, kw):
        return sorted(
            tuple(np.round(np.asarray(kw["translate"]) + np.asarray(kw["scale"]) * r.mean(0), 2)) for r in rects
        )

    assert len(frects) == len(crects) > 0
    assert np.allclose(centres(frects, fbkw), centres(crects, ckw), atol=0.01)


# ------------------------------------------------------------------------------------------------
# preview widget
# ------------------------------------------------------------------------------------------------
def _wait(qtbot, widget, timeout=60000):
    qtbot.waitUntil(lambda: not widget.busy, timeout=timeout)


@pytest.fixture
def viewer_with_cxr(make_napari_viewer):
    from napari_ppii._sample_data import nih_normals

    viewer = make_napari_viewer()
    for data, kw, _ in nih_normals()[:2]:
        viewer.add_image(data, **kw)
    return viewer


@pytest.fixture
def widget(viewer_with_cxr, qtbot):
    from napari_ppii._widgets.preview import PreviewWidget

    w = PreviewWidget(viewer_with_cxr)
    qtbot.addWidget(w)
    _wait(qtbot, w)
    yield w
    _wait(qtbot, w)


def test_preview_layers_created_and_updated_on_change(widget, viewer_with_cxr, qtbot):
    v = viewer_with_cxr
    assert widget.last_result is not None, widget.last_error
    for name in ("P-PII image", "P-PII label", "P-PII variance", "P-PII boxes"):
        assert name in v.layers
    n_layers = len(v.layers)
    before = v.layers["P-PII label"].data.copy()
    widget.set_value("seed", 5)
    _wait(qtbot, widget)
    after = v.layers["P-PII label"].data
    assert not np.array_equal(before, after)
    assert len(v.layers) == n_layers  # updated in place, not added
    widget.set_value("synthesis.n_raters", (4, 4))
    _wait(qtbot, widget)
    assert all(len(s.radii) == 4 for s in widget.last_result.result.plan)
    assert widget.config().synthesis.n_raters == (4, 4)
    # the hidden variance layer gets the current variance when it is shown
    v.layers["P-PII variance"].visible = True
    np.testing.assert_allclose(
        v.layers["P-PII variance"].data, widget.last_result.result.variance, rtol=1e-6, atol=1e-9
    )
    # user's layers untouched
    assert v.layers[0].data.shape == (512, 512) and v.layers[0].name.startswith("NIH")


def test_a_closed_preview_stops_following_the_viewer(widget, viewer_with_cxr, qtbot):
    """After its dock is closed, new layers and setting changes start no synthesis and touch no layer
    (the demo's CT stage once got P-PII layers from a preview closed two stages earlier)."""
    v = viewer_with_cxr
    label = v.layers["P-PII label"].data.copy()
    widget.close()
    for name in [ly.name for ly in v.layers if ly.name.startswith("P-PII")]:
        v.layers.remove(name)
    v.add_image(np.random.default_rng(0).random((64, 64)).astype(np.float32), name="another scan")
    widget.set_value("seed", 9)
    widget.request_update()  # what a layer's data or visibility event calls
    assert not widget.busy  # nothing was started
    qtbot.wait(300)
    assert not [ly.name for ly in v.layers if ly.name.startswith("P-PII")]
    assert label.any()


def test_preview_updates_in_place_without_touching_results(widget, viewer_with_cxr, qtbot):
    v = viewer_with_cxr
    layer = v.layers["P-PII label"]
    buffer = layer.data
    old = widget.last_result.result
    old_label = old.label.copy()
    data_events, redraws = [], []
    layer.events.data.connect(lambda e: data_events.append(e))  # each one makes napari re-check every layer's extent
    layer.events.set_data.connect(lambda e: redraws.append(np.asarray(layer._slice.image.raw).copy()))
    widget.set_value("seed", widget.config().seed + 3)
    _wait(qtbot, widget)
    new = widget.last_result.result
    assert layer.data is buffer and buffer.dtype == np.float32  # the same buffer, rewritten
    np.testing.assert_allclose(buffer, new.label, rtol=1e-6, atol=1e-7)
    # the canvas was told to redraw, from a slice that holds the new label
    assert redraws and np.allclose(redraws[-1], new.label, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(old.label, old_label)  # earlier results (e.g. for export) never aliased
    assert not np.allclose(old_label, new.label)
    assert not data_events  # a same-shape update fires no data event, so no dims/extent pass
    assert len(v.layers["P-PII boxes"].data) == len(new.boxes)


def test_preview_same_seed_same_layers(widget, viewer_with_cxr, qtbot):
    v = viewer_with_cxr
    widget.set_value("seed", 11)
    _wait(qtbot, widget)
    first = v.layers["P-PII image"].data.copy(), v.layers["P-PII label"].data.copy()
    widget.set_value("seed", 12)
    _wait(qtbot, widget)
    widget.set_value("seed", 11)
    _wait(qtbot, widget)
    np.testing.assert_array_equal(v.layers["P-PII image"].data, first[0])
    np.testing.assert_array_equal(v.layers["P-PII label"].data, first[1])


def test_preview_source_layer_and_methods(widget, viewer_with_cxr, qtbot):
    widget.source_combo.value = viewer_with_cxr.layers[1].name
    _wait(qtbot, widget)
    assert widget.last_result is not None
    for m in ("pii", "fpi", "nsa"):
        widget.set_value("synthesis.method", m)
        _wait(qtbot, widget)
        assert widget.last_result.config.synthesis.method == m
        assert widget.last_result.result.label.max() > 0


def test_preview_volume_current_slice_and_whole_volume(make_napari_viewer, qtbot):
    from napari_ppii._sample_data import lidc_ct
    from napari_ppii._widgets.preview import PreviewWidget

    v = make_napari_viewer()
    (img, kw, _), _boxes = lidc_ct()
    layer = v.add_image(img, **kw)
    w = PreviewWidget(v)
    qtbot.addWidget(w)
    _wait(qtbot, w)
    assert w.last_result.slice_index is not None and v.layers["P-PII label"].ndim == 2
    z_world = layer.data_to_world((7, 0, 0))[0]
    v.dims.set_point(0, z_world)
    _wait(qtbot, w)
    assert w.last_result.slice_index == 7
    w.set_value("preprocess.window", "mediastinum")  # the preset also switches the CT layer's display window
    assert tuple(layer.contrast_limits) == pytest.approx((-125.0, 225.0))
    _wait(qtbot, w)
    w.run_whole_volume()
    qtbot.waitUntil(lambda: v.layers["P-PII label"].ndim == 3, timeout=60000)
    assert v.layers["P-PII label"].data.shape == (24, 256, 256)
    assert tuple(v.layers["P-PII label"].scale) == pytest.approx(tuple(layer.scale))
    # the status names the anomalies' slices, and "Next anomaly" goes there (issue 22 item 4)
    boxes = w.last_result.result.boxes
    assert boxes and "on slices" in w.status.text() and w.next_button.isEnabled()
    seen = set()
    for _ in range(len(boxes)):
        z = w.goto_next_anomaly()
        assert any(b.lo[0] <= z <= b.hi[0] for b in boxes)
        assert int(round(float(layer.world_to_data(v.dims.point)[0]))) == z
        assert v.layers["P-PII label"].data[z].max() > 0  # the anomaly is on the slice now in view
        seen.add(z)
    assert seen == set(w.anomaly_slices) and v.layers["P-PII label"].ndim == 3  # still the whole volume


def test_export_matches_cli_layout(widget, tmp_path, qtbot):
    rec = widget.export(tmp_path)
    for f in ("image.tif", "label.tif", "variance.tif", "target.tif", "boxes.csv", "params.json"):
        assert (tmp_path / f).exists()
    saved = json.loads((tmp_path / "params.json").read_text())
    assert saved["seed"] == widget.config().seed and len(saved["anomalies"]) == len(rec["boxes"])
    from napari_ppii.io import read_scan

    np.testing.assert_allclose(read_scan(tmp_path / "label.tif").array, widget.last_result.result.label)


def test_screenshot_shows_label_where_boxes_are(make_napari_viewer, qtbot):
    from napari_ppii._sample_data import nih_normals
    from napari_ppii._widgets.preview import PreviewWidget

    v = make_napari_viewer(show=True)
    data, kw, _ = nih_normals()[0]
    v.add_image(data, **kw)
    w = PreviewWidget(v)
    qtbot.addWidget(w)
    w.set_value("synthesis.n_anomalies", (3, 3))
    w.set_value("synthesis.gradient_scale", (15.0, 15.0))
    _wait(qtbot, w)
    # show only the label overlay, in a plain colormap
    for ly in v.layers:
        ly.visible = ly.name == "P-PII label"
    v.layers["P-PII label"].colormap = "gray"
    v.layers["P-PII label"].blending = "translucent"
    v.layers["P-PII label"].opacity = 1.0
    v.reset_view()
    shot = v.screenshot(canvas_only=True, flash=False)[..., :3].astype(float).mean(-1)
    label = v.layers["P-PII label"].data
    inside = np.zeros(label.shape, bool)
    for b in w.last_result.result.boxes:
        inside |= b.mask(label.shape)
    # map screenshot pixels back to data coordinates through the canvas' extent
    h, wd = shot.shape
    ys, xs = np.nonzero(shot > 40)
    assert len(ys) > 0
    # bright pixels on screen correspond to data pixels inside the anomaly boxes
    ext = v.layers["P-PII label"].extent.world
    scale = min(h / (ext[1][0] - ext[0][0]), wd / (ext[1][1] - ext[0][1]))
    cy, cx = h / 2, wd / 2
    dy = ((ys - cy) / scale + (ext[0][0] + ext[1][0]) / 2).astype(int).clip(0, label.shape[0] - 1)
    dx = ((xs - cx) / scale + (ext[0][1] + ext[1][1]) / 2).astype(int).clip(0, label.shape[1] - 1)
    dilated = inside.copy()
    from scipy.ndimage import binary_dilation

    # a screen pixel maps to ~1.5 data pixels here (1024 pixels on a smaller canvas), truncated: 5 pixels
    # of tolerance around the boxes
    dilated = binary_dilation(inside, iterations=5)
    assert dilated[dy, dx].mean() > 0.95
    # and the boxes' insides are lit on screen where the label is strong
    strong = (label > 0.3) & inside
    assert strong.any()


# ------------------------------------------------------------------------------------------------
# bad input: a notification, no exception, layers intact
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["tiny", "rgb", "nan", "huge_min_patch"])
def test_bad_input_notifies_and_keeps_layers(make_napari_viewer, qtbot, kind):
    from napari_ppii._widgets.preview import PreviewWidget

    v = make_napari_viewer()
    if kind == "tiny":
        v.add_image(np.zeros((1, 1), np.float32), name="bad")
    elif kind == "rgb":
        v.add_image(np.random.default_rng(0).random((64, 64, 3)).astype(np.float32), name="bad", rgb=True)
    elif kind == "nan":
        a = smooth_image((64, 64))
        a[3, 3] = np.nan
        v.add_image(a, name="bad")
    else:
        v.add_image(smooth_image((40, 40)), name="bad")
    before = np.array(v.layers["bad"].data, copy=True)
    w = PreviewWidget(v)
    qtbot.addWidget(w)
    if kind == "huge_min_patch":
        w.set_value("synthesis.min_patch_side", 64)
    _wait(qtbot, w)
    assert w.last_error, kind
    assert [ly.name for ly in v.layers] == ["bad"]
    np.testing.assert_array_equal(np.asarray(v.layers["bad"].data), before)


# ------------------------------------------------------------------------------------------------
# anatomy-aware placement and realism figures in the preview
# ------------------------------------------------------------------------------------------------
def test_preview_placement_mask_is_an_editable_labels_layer(widget, viewer_with_cxr, qtbot):
    from napari_ppii._widgets.preview import MASK_LAYER

    v = viewer_with_cxr
    assert widget.config().synthesis.placement == "lungs"
    widget.set_value("synthesis.placement_margin_share", 0.0)  # every anomaly well inside (margins: elsewhere)
    _wait(qtbot, widget)
    assert MASK_LAYER in v.layers  # the lung fields the preview computed, shown for editing
    mask = np.asarray(v.layers[MASK_LAYER].data) > 0
    assert mask.shape == v.layers[0].data.shape and 0.1 < mask.mean() < 0.5
    for spec in widget.last_result.result.plan:
        assert mask[spec.target_slices].mean() >= 0.7
    assert "Synthetic: contrast" in widget.realism_label.text()
    # the user paints a new mask: anomalies follow it
    small = np.zeros_like(v.layers[MASK_LAYER].data)
    small[300:420, 60:200] = 1
    v.layers[MASK_LAYER].data = small
    _wait(qtbot, widget)
    plan = widget.last_result.result.plan
    assert plan and all(small[s.target_slices].mean() >= 0.7 for s in plan)
    # anywhere ignores the mask
    widget.set_value("synthesis.placement", "anywhere")
    _wait(qtbot, widget)
    assert widget.config().synthesis.placement == "anywhere"
    assert any(small[s.target_slices].mean() < 0.7 for s in widget.last_result.result.plan)


def test_preview_realism_against_reference_lesions(viewer_with_cxr, qtbot):
    from napari_ppii._sample_data import nih_nodule
    from napari_ppii._widgets.preview import PreviewWidget

    v = viewer_with_cxr
    (img, ikw, _), (rects, bkw, _) = nih_nodule()
    v.add_image(img, **ikw)
    v.add_shapes(rects, **{k: val for k, val in bkw.items() if k != "features"})
    w = PreviewWidget(v)
    qtbot.addWidget(w)
    _wait(qtbot, w)
    w.target_combo.value = ikw["name"]
    w.reference_combo.value = bkw["name"]
    _wait(qtbot, w)
    ref = w.last_result.realism["reference"]
    assert ref["n"] == 1 and ref["abs_contrast"]["median"] > 0
    assert "Reference lesions: contrast" in w.realism_label.text()


def test_generated_realism_controls_round_trip(widget, qtbot):
    from napari_ppii.config import PPIIConfig
    from napari_ppii._widgets.preview import REALISM_FIELDS

    cfg = PPIIConfig().with_overrides(
        [
            "synthesis.placement=anywhere",
            "synthesis.placement_min_inside=0.55",
            "synthesis.source_in_mask=true",
            "synthesis.mask_blend=false",
            "synthesis.patch_distribution=uniform",
            "synthesis.source_rescale=[0.8, 1.2]",
            "synthesis.gradient_scale_distribution=uniform",
            "synthesis.source_smoothing=1.5",
            "synthesis.clip=none",
            "synthesis.label_mode=scaled",
            "synthesis.label_k=50",
            "synthesis.label_x0=0.02",
        ]
    )
    widget.set_config(cfg)
    _wait(qtbot, widget)
    from napari_ppii._widgets._config import value_of

    got = widget.config()
    for name in REALISM_FIELDS:  # (NSA's own fields among them: their defaults, under P-PII)
        key = f"synthesis.{name}"
        assert value_of(got, key) == pytest.approx(value_of(cfg, key)), name
    # the tooltip is the configuration's own description (P-PII's parameter model's)
    assert widget.control("synthesis.source_smoothing").widget.tooltip.startswith("Gaussian sigma")


def test_preview_cache_follows_the_layer_not_its_id(widget, viewer_with_cxr, qtbot):
    # replacing the target's data renews its cached scan, pre-processing and lungs: the preview redraws
    # from the new data (a cache keyed on id(layer.data) could serve the old scan)
    v = viewer_with_cxr
    widget.set_value("synthesis.method", "ppii")
    _wait(qtbot, widget)
    layer = v.layers[widget.target_combo.value]
    before = widget.last_result.target.array.copy()
    tok = widget._token(layer)
    assert any(k[1] == tok for k in widget.engine._cache)
    layer.data = np.ascontiguousarray(layer.data[::-1])
    qtbot.waitUntil(
        lambda: widget.last_result is not None and not np.array_equal(widget.last_result.target.array, before),
        timeout=60000,
    )
    _wait(qtbot, widget)
    np.testing.assert_allclose(widget.last_result.target.array, before[::-1], atol=1e-6)
    assert not any(k[1] == tok for k in widget.engine._cache)  # the old version's entries are gone
    # a removed layer's entries go with it
    name = layer.name
    v.layers.remove(name)
    _wait(qtbot, widget)
    assert all(k[1][0] != id(layer) for k in widget.engine._cache)


def test_preview_engine_is_qt_free_and_caches_per_token():
    import subprocess
    import sys

    code = (
        "import sys, numpy as np; from napari_ppii.preview import PreviewEngine, PreviewRequest; "
        "from napari_ppii.config import PPIIConfig; from napari_ppii.io import Scan; "
        "e = PreviewEngine(); "
        "s = Scan(np.random.default_rng(0).random((64, 64)).astype('float32'), (1, 1), (0, 0), np.eye(2), 'DX'); "
        "cfg = PPIIConfig().with_overrides(['synthesis.placement=anywhere']); "
        "r = e.compute(PreviewRequest(1, s, None, cfg, None, ('t', None))); "
        "assert r.result.image.shape == (64, 64); n = len(e._cache); "
        "e.compute(PreviewRequest(2, s, None, cfg, None, ('t', None))); "
        "assert len(e._cache) == n; e.forget('t'); assert not e._cache; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('qtpy', 'PyQt6', 'PyQt5', 'napari')]; assert not bad, bad"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]


def test_preview_keeps_the_users_boxes_above_its_layers(make_napari_viewer, qtbot):
    """The user's ground-truth boxes stay on top of the opaque preview image when the preview opens."""
    from napari_ppii._sample_data import nih_normals
    from napari_ppii._widgets.preview import PreviewWidget

    v = make_napari_viewer()
    for data, kw, _ in nih_normals()[:2]:
        v.add_image(data, **kw)
    v.add_shapes([np.array([[100, 100], [140, 140]])], shape_type="rectangle", name="my boxes")
    w = PreviewWidget(v)
    qtbot.addWidget(w)
    _wait(qtbot, w)
    names = [ly.name for ly in v.layers]
    assert "P-PII image" in names
    assert names.index("my boxes") > names.index("P-PII image")
    assert names.index("my boxes") > names.index("P-PII label")


def test_docks_scroll_instead_of_outgrowing_the_screen(make_napari_viewer):
    """All four docks open, the preview's groups expanded: each dock's minimum height stays small (its
    content scrolls), so the window is not pushed past the screen (issue 22 item 3: 1700x1735 on an
    1100-pixel screen)."""
    from qtpy.QtWidgets import QApplication

    from napari_ppii._widgets.evaluate import EvaluationWidget
    from napari_ppii._widgets.predict import PredictWidget
    from napari_ppii._widgets.preview import PreviewWidget
    from napari_ppii._widgets.training import TrainingWidget

    viewer = make_napari_viewer(show=True)
    docks = [cls(viewer) for cls in (PreviewWidget, TrainingWidget, PredictWidget, EvaluationWidget)]
    for d in docks:
        viewer.window.add_dock_widget(d, area="right")
    QApplication.processEvents()
    height_before = viewer.window._qt_window.height()
    for box in (docks[0].realism_box, docks[0].advanced):
        box.expand(animate=False)
    QApplication.processEvents()
    for d in docks:
        content = d.scroll_area.widget().sizeHint().height()
        assert d.minimumSizeHint().height() < 300, (type(d).__name__, d.minimumSizeHint())
        assert d.scroll_area.verticalScrollBar().maximum() > 0 or content <= d.scroll_area.viewport().height()
    assert docks[0].scroll_area.widget().sizeHint().height() > 600  # the expanded preview is tall: it scrolls
    assert viewer.window._qt_window.height() == height_before  # expanding the groups did not grow the window


def test_preview_shows_only_the_chosen_methods_parameters(widget, qtbot):
    """PII ignores the number of anomalies, and the label scale applies to the scaled label only: their
    controls are hidden while they change nothing (issue 22 item 6, issue 20 item 2)."""
    form, realism = widget.form, widget.realism_form

    def shown(f, key):
        return not f[key].widget.native.isHidden()  # hidden by the dock (not merely an unshown parent)

    widget.set_value("synthesis.method", "ppii")
    widget.set_value("synthesis.label_mode", "logistic")
    assert shown(form, "synthesis.n_anomalies") and shown(form, "synthesis.n_raters")
    assert not shown(form, "synthesis.alpha") and not shown(realism, "synthesis.label_scale")
    assert shown(realism, "synthesis.label_k") and not shown(realism, "synthesis.nsa_patches")
    widget.set_value("synthesis.label_mode", "scaled")
    assert shown(realism, "synthesis.label_scale") and not shown(realism, "synthesis.label_k")
    widget.set_value("synthesis.method", "pii")
    assert not shown(form, "synthesis.n_anomalies") and not shown(form, "synthesis.n_raters")
    assert shown(form, "synthesis.alpha") and not shown(realism, "synthesis.label_scale")
    assert shown(form, "synthesis.patch_size") and shown(realism, "synthesis.placement")  # shared: always
    widget.set_value("synthesis.method", "ppii")
    from napari_ppii.config import PPIIConfig
    from napari_ppii.synthesis import applicable

    nsa = PPIIConfig().with_values({"synthesis.method": "nsa"})
    assert applicable("synthesis.nsa_patches", nsa) and applicable("synthesis.label_k", nsa)
    assert not applicable("synthesis.n_raters", nsa) and applicable("preprocess.window", nsa)
    _wait(qtbot, widget, timeout=180000)  # the redraws of the changes above (slow on a loaded machine)


def test_prediction_dock_warns_about_ground_truth_that_cannot_fit(make_napari_viewer):
    """2D boxes over a volume (napari draws them on every slice) and boxes outside the scan are named in a
    warning, not silently counted (issue 22 item 8)."""
    from napari_ppii._widgets.predict import PredictWidget
    from napari_ppii.io.boxes import Box

    v = make_napari_viewer()
    w = PredictWidget(v)
    w.map_layer = v.add_image(np.zeros((5, 32, 32), np.float32), name="anomaly map")
    flat = v.add_shapes([np.array([[2, 2], [2, 8], [8, 8], [8, 2]])], shape_type="rectangle", name="flat boxes")
    w._check_truth(flat, [])
    assert "2D boxes" in w.last_warning and "z_index" in w.last_warning
    w.last_warning = None
    deep = v.add_shapes([np.array([[1, 2, 2], [1, 2, 8], [1, 8, 8], [1, 8, 2]])], shape_type="rectangle", name="ok")
    w._check_truth(deep, [Box((1, 2, 2), (1, 8, 8))])
    assert w.last_warning is None
    w._check_truth(deep, [Box((9, 50, 50), (9, 60, 60))])
    assert "none of the boxes" in w.last_warning
