"""``ppii view``: napari with a scan (or bundled sample) and the P-PII preview docked.

With a display it opens the viewer and runs napari's event loop.  Without one (or with
``--screenshot``), it runs the same steps on a virtual X display (Xvfb through pyvirtualdisplay), waits
for the preview, saves a screenshot of the whole window and exits.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

SAMPLES = {"nih": "nih_nodule", "normals": "nih_normals", "ct": "lidc_ct"}


def _wait_for(app, predicate, timeout: float) -> bool:
    t0 = time.time()
    while time.time() - t0 < timeout:
        app.processEvents()
        if predicate():
            return True
        time.sleep(0.01)
    return False


def run_viewer(inputs: list[str], sample: str | None, screenshot: str | None, seed: int = 0,
               timeout: float = 120.0) -> int:
    display = None
    headless = not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY")
    if headless:
        from pyvirtualdisplay import Display

        display = Display(visible=False, size=(1600, 1000))
        display.start()
        if screenshot is None:
            screenshot = "out/demo/viewer.png"
    try:
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
        widget.seed_spin.setValue(seed)
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
    finally:
        if display is not None:
            display.stop()
