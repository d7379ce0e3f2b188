# SPDX-License-Identifier: BSD-3-Clause
"""``ppii view``: napari with a scan (or bundled sample) and the P-PII preview docked.

With a display it opens the viewer and runs napari's event loop.  Without one (or with
``--screenshot``), it runs the same steps on a virtual X display (Xvfb through pyvirtualdisplay), waits
for the preview, saves a screenshot of the whole window and exits.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

SAMPLES = {"nih": "nih_nodule", "normals": "nih_normals", "ct": "lidc_ct", "ct-full": "lidc_ct_full_view"}


def _wait_for(app, predicate, timeout: float) -> bool:
    t0 = time.time()
    while time.time() - t0 < timeout:
        app.processEvents()
        if predicate():
            return True
        time.sleep(0.01)
    return False


class _VirtualDisplay:
    """Xvfb (through pyvirtualdisplay) when there is no display; nothing otherwise."""

    def __init__(self, size):
        self.size = size
        self.display = None
        self.headless = not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY")

    def __enter__(self):
        if self.headless:
            from pyvirtualdisplay import Display

            self.display = Display(visible=False, size=self.size)
            self.display.start()
        return self

    def __exit__(self, *exc):
        if self.display is not None:
            self.display.stop()
        return False


def run_viewer(
    inputs: list[str], sample: str | None, screenshot: str | None, seed: int = 0, timeout: float = 120.0
) -> int:
    with _VirtualDisplay((1600, 1000)) as vd:
        if vd.headless and screenshot is None:
            screenshot = "out/demo/viewer.png"
        return _run_viewer(inputs, sample, screenshot, seed, timeout)


def _run_viewer(inputs, sample, screenshot, seed, timeout) -> int:
    import napari
    from qtpy.QtWidgets import QApplication

    from . import _sample_data
    from ._layers import scan_layer_data
    from ._reader import get_boxes_reader
    from ._widgets.preview import PreviewWidget
    from .io import read_scan

    viewer = napari.Viewer(show=True, title="napari-ppii")
    layers = []
    for p in inputs:
        box_reader = get_boxes_reader(p)
        layers += box_reader(p) if box_reader else [scan_layer_data(read_scan(p))]
    if sample or not inputs:
        layers += getattr(_sample_data, SAMPLES[sample or "nih"])()
    for data, kw, kind in layers:
        getattr(viewer, f"add_{kind}")(data, **kw)
    widget = PreviewWidget(viewer)
    viewer.window.add_dock_widget(widget, name="P-PII synthesis preview", area="right")
    widget.set_value("seed", seed)
    app = QApplication.instance()
    ok = _wait_for(app, lambda: not widget.busy and widget.last_result is not None, timeout)
    # ground truth boxes on top, the synthetic label visible over the scan
    for ly in viewer.layers:
        if ly.name.endswith("boxes") and not ly.name.startswith("P-PII"):
            viewer.layers.move(viewer.layers.index(ly), len(viewer.layers) - 1)
    if screenshot is None:
        napari.run()
        return 0
    viewer.reset_view()
    _wait_for(app, lambda: False, 0.5)
    Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(path=screenshot, canvas_only=False, flash=False)
    status = widget.status.text() if ok else (widget.last_error or "preview did not finish")
    print(f"{'preview: ' + status}; screenshot: {screenshot}")
    viewer.close()
    return 0 if ok else 1


#: The small pretrained demo model (configs/demo_lidc_unet.yaml; trained only on the normal slices of
#: LIDC-IDRI-0001, never on the bundled slab's 24 slices).
PRETRAINED = "lidc_unet_demo.pt"


def run_demo(out_dir: str = "out/demo", steps: int = 150, size: int = 128, timeout: float = 900.0) -> int:
    """The whole loop on the bundled sample: open, preview synthesis, train briefly (subprocess),
    predict, overlay with the ground-truth box.  Headless: the same, saving a screenshot per stage."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with _VirtualDisplay((1700, 1100)) as vd:
        return _run_demo(out, steps, size, timeout, vd.headless)


def _run_demo(out: Path, steps: int, size: int, timeout: float, headless: bool) -> int:
    import napari
    from qtpy.QtWidgets import QApplication

    from . import _sample_data
    from ._widgets.predict import PredictWidget
    from ._widgets.preview import PreviewWidget
    from ._widgets.training import TrainingWidget

    viewer = napari.Viewer(show=True, title="napari-ppii demo")
    viewer.window.resize(1600, 1050)  # the default window leaves the canvas a narrow strip between the docks
    app = QApplication.instance()
    for data, kw, kind in _sample_data.nih_normals() + _sample_data.nih_nodule():
        getattr(viewer, f"add_{kind}")(data, **kw)
    shots = []

    def shot(name):
        viewer.reset_view()
        _wait_for(app, lambda: False, 0.3)
        p = out / name
        viewer.screenshot(path=str(p), canvas_only=False, flash=False)
        shots.append(str(p))

    # 1. preview synthesis on a normal radiograph
    preview = PreviewWidget(viewer)
    dock = viewer.window.add_dock_widget(preview, name="P-PII preview", area="right")
    preview.target_combo.value = "NIH 00000002_000"
    _wait_for(app, lambda: not preview.busy and preview.last_result is not None, 60)
    for ly in viewer.layers:
        ly.visible = ly.name.startswith("P-PII") and ly.name != "P-PII variance" or ly.name == "NIH 00000002_000"
    shot("1_preview.png")
    preview.close()  # it stops following the viewer's layers
    viewer.window.remove_dock_widget(dock)
    for name in [ly.name for ly in viewer.layers if ly.name.startswith("P-PII")]:
        viewer.layers.remove(name)

    # 2. train briefly on the four normal layers, in a subprocess
    trainer = TrainingWidget(viewer, confirm=lambda: True)
    train_dock = viewer.window.add_dock_widget(trainer, name="Training", area="right")
    trainer.layer_list.value = [n for n in trainer.layer_list.choices if "0013751" not in n]
    trainer.use_layers.setChecked(True)
    trainer.set_value("data.image_size", size)
    trainer.set_value("training.steps", steps)
    trainer.set_value("training.val_every", max(1, steps // 3))
    trainer.set_value("training.batch_size", 8)
    trainer.set_value("model.base_channels", 8)
    trainer.set_value("training.out_dir", str(out / "run"))
    if not trainer.start():
        print(f"training did not start: {trainer.last_error}")
        return 1
    _wait_for(app, lambda: not trainer.running and not trainer.timer.isActive(), timeout)
    trainer.poll()
    if trainer.process.returncode != 0:
        print(f"training failed: {trainer.last_error}")
        return 1
    shot("2_training.png")

    # 3. predict on the radiograph with a nodule, overlay with its box
    for ly in viewer.layers:
        ly.visible = "00013751" in ly.name
    predictor = PredictWidget(viewer)
    viewer.window.add_dock_widget(predictor, name="Prediction", area="right")
    # the run's own folder (a new run never overwrites an earlier one: it may have gone to run-2, ...)
    predictor.checkpoint.setText(str(Path(trainer.config().training.out_dir) / "best.pt"))
    predictor.image_combo.value = "NIH 00013751_003"
    predictor.truth_combo.value = "NIH 00013751_003 boxes"
    predictor.predict()
    _wait_for(app, lambda: not predictor.busy and "anomaly map" in viewer.layers, 120)
    # after a brief training the map is poorly calibrated: show the top half-percent as detections
    amap = viewer.layers["anomaly map"].data
    predictor.threshold.setValue(float(min(0.99, np.percentile(amap, 99.5))))
    box_layer = viewer.layers["NIH 00013751_003 boxes"]
    viewer.layers.move(viewer.layers.index(box_layer), len(viewer.layers) - 1)
    shot("3_prediction.png")
    summary = (
        f"demo: trained {steps} steps ({trainer.eta.text()}) to show the mechanism; its map is no detector, so "
        f"its thresholded boxes ({predictor.counts.text()}) are not a detection result (the pretrained models "
        "are measured at the end of scripts/demo.sh)"
    )
    # 4. the small pretrained CT model (normal slices of two LIDC patients) on the 24 slices it never saw
    pretrained = Path(_sample_data.RESOURCES.joinpath("models", PRETRAINED))
    if pretrained.exists():
        ct, ct_boxes = "LIDC-IDRI-0001 CT full view", "LIDC-IDRI-0001 full view boxes"
        # the radiographs and their maps make way (the view fits every layer, hidden ones too)
        viewer.layers.clear()
        viewer.window.remove_dock_widget(train_dock)
        for data, kw, kind in _sample_data.lidc_ct_full_view():
            getattr(viewer, f"add_{kind}")(data, **kw)
        predictor.checkpoint.setText(str(pretrained))
        predictor.image_combo.value = ct
        predictor.truth_combo.value = ct_boxes
        predictor.predict()
        _wait_for(app, lambda: not predictor.busy and "anomaly map" in viewer.layers, 120)
        amap = viewer.layers["anomaly map"].data
        box_layer = viewer.layers[ct_boxes]
        # the slice through the middle of the readers' boxes (ground truth, for display only)
        z = int(round(float(np.mean([r[:, 0].mean() for r in box_layer.data]))))
        viewer.dims.set_current_step(0, z)
        predictor.threshold.setValue(float(min(0.99, np.percentile(amap, 99.9))))
        viewer.layers.move(viewer.layers.index(box_layer), len(viewer.layers) - 1)
        shot("4_pretrained.png")
        print(
            f"demo: pretrained CT model ({pretrained.name}) on the LIDC-IDRI-0001 slices it never saw, slice {z} "
            f"(middle of the nodule), detections above the top 0.1% of the map: {predictor.counts.text()}"
        )
    print(f"{summary}; screenshots: " + ", ".join(shots))
    if not headless:
        napari.run()
    else:
        viewer.close()
    return 0
