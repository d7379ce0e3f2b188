"""Prediction from the viewer: a checkpoint + an image or volume layer -> anomaly map (and, for
MC-dropout U-Net and PHiSeg, an uncertainty layer) over the scan, with the scan's scale and translate so
they line up with the ground-truth boxes.  A threshold turns the map into candidate detections, shown
as boxes beside the ground truth, with hits and false positives counted for the current image / slice.
"""

from __future__ import annotations


import numpy as np
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt import QLabeledDoubleSlider

from .._layers import layer_to_scan, set_image_layer
from ._common import last_run_checkpoint, report_error
from ..errors import InputError
from ..io.boxes import Box

MAP = "anomaly map"
VAR = "uncertainty"
DET = "detections"


def shapes_to_boxes(layer) -> list[Box]:
    """Rectangles of a Shapes layer back to inclusive boxes (the inverse of boxes_shapes_data)."""
    out = []
    for verts in layer.data:
        v = np.asarray(verts)
        lo, hi = v.min(0), v.max(0)
        if v.shape[1] == 3:
            out.append(Box((lo[0], lo[1] + 0.5, lo[2] + 0.5), (hi[0], hi[1] - 0.5, hi[2] - 0.5)))
        else:
            out.append(Box((lo[0] + 0.5, lo[1] + 0.5), (hi[0] - 0.5, hi[1] - 0.5)))
    return out


def detect(amap: np.ndarray, threshold: float) -> list[Box]:
    """Connected components of ``map > threshold`` (2D) as boxes, with their peak value."""
    from skimage.measure import label, regionprops

    out = []
    for r in regionprops(label(amap > threshold), intensity_image=amap):
        y0, x0, y1, x1 = r.bbox
        peak = np.unravel_index(int(np.argmax(r.image_intensity * r.image)), r.image.shape)
        out.append(Box((y0, x0), (y1 - 1, x1 - 1), label="detection",
                       properties={"peak": float(r.intensity_max), "peak_y": y0 + peak[0], "peak_x": x0 + peak[1]}))
    return out


def count_hits(dets: list[Box], truth: list[Box]) -> tuple[int, int, int]:
    """(lesions hit, false-positive detections, lesions): a detection hits a lesion when its peak lies
    in the lesion's box; each lesion counts once (the evaluation's hit rule)."""
    hit, fp = set(), 0
    for d in sorted(dets, key=lambda b: -b.properties.get("peak", 0)):
        p = (d.properties["peak_y"], d.properties["peak_x"])
        inside = [i for i, t in enumerate(truth) if t.contains(p)]
        if not inside:
            fp += 1
            continue
        fresh = [i for i in inside if i not in hit]
        if fresh:
            hit.add(fresh[0])
    return len(hit), fp, len(truth)


class PredictWidget(QWidget):
    prediction_done = Signal(object)
    progress_changed = Signal(int, int)  # images / slices done, total

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.predictor = None
        self._predictor_key = None
        self.map_layer = None
        self.worker = None
        self.last_error: str | None = None
        self.last_counts: tuple[int, int, int] | None = None
        outer = QVBoxLayout(self)
        form = QFormLayout()
        self.checkpoint = QLineEdit()
        self.checkpoint.setPlaceholderText("best.pt / last.pt of a run")
        b1 = QPushButton("...")
        b1.clicked.connect(self._browse)
        b2 = QPushButton("Last run")
        b2.clicked.connect(self._last_run)
        row = QHBoxLayout()
        row.addWidget(self.checkpoint)
        row.addWidget(b1)
        row.addWidget(b2)
        self.image_combo = QComboBox()
        self.truth_combo = QComboBox()
        self.samples = QSpinBox()
        self.samples.setRange(1, 200)
        self.samples.setValue(10)
        self.device = QComboBox()
        from .training import cuda_devices

        self.device.addItems(["cpu"] + cuda_devices())
        form.addRow("Checkpoint", row)
        form.addRow("Scan layer", self.image_combo)
        form.addRow("Ground truth", self.truth_combo)
        form.addRow("Samples (MC / PHiSeg)", self.samples)
        form.addRow("Device", self.device)
        outer.addLayout(form)
        self.predict_button = QPushButton("Predict")
        self.predict_button.clicked.connect(self.predict)
        outer.addWidget(self.predict_button)
        self.progress = QProgressBar()
        outer.addWidget(self.progress)
        self.progress_changed.connect(lambda i, n: (self.progress.setRange(0, n), self.progress.setValue(i)))
        self.threshold = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.threshold.setRange(0.0, 1.0)
        self.threshold.setDecimals(2)
        self.threshold.setValue(0.5)
        self.threshold.valueChanged.connect(self.update_detections)
        form2 = QFormLayout()
        form2.addRow("Threshold", self.threshold)
        outer.addLayout(form2)
        self.counts = QLabel("")
        outer.addWidget(self.counts)
        outer.addStretch(1)
        ev = self.viewer.layers.events
        ev.inserted.connect(self._refresh)
        ev.removed.connect(self._refresh)
        self.viewer.dims.events.current_step.connect(self.update_detections)
        self._refresh()

    def _browse(self):
        path, _ = QFileDialog.getOpenFileName(self, "Checkpoint", "", "Checkpoints (*.pt)")
        if path:
            self.checkpoint.setText(path)

    def _last_run(self):
        p = last_run_checkpoint()
        if p is None:
            self._fail("no run from the training widget has written a checkpoint yet")
        else:
            self.checkpoint.setText(str(p))

    def _refresh(self, *_):
        from napari.layers import Image, Shapes

        for combo, kind, extra in ((self.image_combo, Image, []), (self.truth_combo, Shapes, ["(none)"])):
            cur = combo.currentText()
            names = [ly.name for ly in self.viewer.layers if isinstance(ly, kind)
                     and ly.name not in (MAP, VAR, DET) and not ly.name.startswith("P-PII")]
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(extra + names)
            if cur in extra + names:
                combo.setCurrentText(cur)
            combo.blockSignals(False)

    def _fail(self, msg: str):
        report_error(self, msg, self.counts)

    @property
    def busy(self) -> bool:
        return self.worker is not None

    def predict(self):
        from napari.qt.threading import create_worker

        from ..predict import Predictor

        name = self.image_combo.currentText()
        if not name:
            self._fail("open a scan first")
            return
        try:
            layer = self.viewer.layers[name]
            scan = layer_to_scan(layer)
            key = (self.checkpoint.text(), self.device.currentText())
            if self._predictor_key != key:
                self.predictor = Predictor(self.checkpoint.text(), device=self.device.currentText())
                self._predictor_key = key
        except (InputError, KeyError) as exc:
            self._fail(str(exc))
            return
        pred, samples = self.predictor, self.samples.value()
        geo = {"scale": tuple(layer.scale), "translate": tuple(layer.translate)}

        def job():  # the progress signal crosses threads as a queued connection
            return pred.predict_scan(scan, samples=samples, progress=self.progress_changed.emit)

        self.progress.setRange(0, 0)  # busy until the first batch of slices is done
        self.last_error = None
        worker = create_worker(job, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(lambda amap: self._show(amap, geo))
        worker.errored.connect(lambda e: self._fail(str(e) if isinstance(e, InputError) else f"prediction failed: {type(e).__name__}: {e}"))
        worker.finished.connect(self._finished)
        self.worker = worker
        self.predict_button.setEnabled(False)
        worker.start()

    def _finished(self):
        self.worker = None
        self.predict_button.setEnabled(True)
        if self.progress.maximum() == 0:  # failed before any progress: leave no busy bar
            self.progress.setRange(0, 1)
            self.progress.setValue(0)

    def _show(self, amap, geo):
        self.map_layer = set_image_layer(self.viewer, MAP, amap.mean, geo, colormap="hot", opacity=0.5, blending="translucent",
                                         contrast_limits=(0.0, 1.0))
        if amap.samples > 1:
            set_image_layer(self.viewer, VAR, amap.variance, geo, colormap="viridis", opacity=0.5, blending="additive", visible=False,
                            contrast_limits=(0.0, max(float(amap.variance.max()), 1e-6)))
        elif VAR in self.viewer.layers:
            self.viewer.layers.remove(VAR)
        self._geo = geo
        self.update_detections()
        self.prediction_done.emit(amap)

    def _current_map(self):
        if self.map_layer is None or MAP not in self.viewer.layers:
            return None, None
        data = np.asarray(self.map_layer.data)
        if data.ndim == 3:
            z = int(np.clip(round(float(self.map_layer.world_to_data(self.viewer.dims.point)[0])), 0, data.shape[0] - 1))
            return data[z], z
        return data, None

    def update_detections(self, *_):
        from .._layers import boxes_shapes_data

        amap, z = self._current_map()
        if amap is None:
            return
        dets = detect(amap, self.threshold.value())
        truth_name = self.truth_combo.currentText()
        truth = []
        if truth_name and truth_name != "(none)" and truth_name in self.viewer.layers:
            truth = shapes_to_boxes(self.viewer.layers[truth_name])
            if z is not None:
                truth = [b.to_2d() for b in truth if b.ndim == 3 and b.lo[0] <= z <= b.hi[0]]
        boxes3 = [Box((z, *b.lo), (z, *b.hi), label=b.label, properties=b.properties) for b in dets] if z is not None else dets
        data, kw, _ = boxes_shapes_data(boxes3, 3 if z is not None else 2, name=DET, edge_color="yellow", **self._geo)
        if DET in self.viewer.layers and self.viewer.layers[DET].ndim == kw["ndim"]:
            ly = self.viewer.layers[DET]
            ly.data = []
            if data:
                ly.add_rectangles(data, edge_color="yellow", face_color="transparent", edge_width=2)
        else:
            if DET in self.viewer.layers:
                self.viewer.layers.remove(DET)
            self.viewer.add_shapes(data, **{k: v for k, v in kw.items() if k != "features"})
        hits, fps, n = count_hits(dets, truth)
        self.last_counts = (hits, fps, n)
        where = "" if z is None else f" (slice {z})"
        self.counts.setText(f"{len(dets)} detection(s){where}: {hits}/{n} lesion(s) hit, {fps} false positive(s)")
