# SPDX-License-Identifier: BSD-3-Clause
"""Prediction from the viewer: a checkpoint + an image or volume layer -> anomaly map (and, for
MC-dropout U-Net and PHiSeg, an uncertainty layer) over the scan, with the scan's scale and translate so
they line up with the ground-truth boxes.  A threshold turns the map into candidate detections, shown
as boxes beside the ground truth, with hits and false positives counted for the current image / slice.
"All layers" predicts every image layer; "Folder..." predicts a folder of scans to disk (maps named after
the scans, an index CSV, unreadable scans skipped with their reason).  Loading the model and predicting
run in the background; the model stays loaded between runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QLabel,
    QProgressBar,
    QWidget,
)
from superqt import QLabeledDoubleSlider

from .._layers import LAYER_PREFIX, is_own_layer, layer_to_scan, set_boxes_layer, set_image_layer, shapes_to_boxes
from ._common import button_row, checkpoint_row, report_error, scroll_layout
from ._config import FormsMixin
from ..errors import InputError
from ..io.boxes import Box

MAP = "anomaly map"
RAW = "anomaly map (raw)"
VAR = "uncertainty"
DET = "detections"


def overlay_style() -> dict:
    """How an anomaly map sits over the scan: a hot colormap that starts at exact black (matplotlib's
    ``hot`` starts at a dark red, which would tint every pixel) with additive blending, so map values at
    or below the threshold (the low contrast limit) add nothing -- the scan keeps its grey values -- and
    only the values above it tint the scan, red to yellow to white."""
    from napari.utils.colormaps import Colormap

    cmap = Colormap(
        [[0, 0, 0, 1], [1, 0, 0, 1], [1, 1, 0, 1], [1, 1, 1, 1]], controls=[0, 0.4, 0.8, 1], name="ppii anomaly"
    )
    return {"colormap": cmap, "opacity": 0.9, "blending": "additive", "contrast_limits": (0.0, 1.0)}


def detect(
    amap: np.ndarray,
    threshold: float,
    min_distance: int = 8,
    max_candidates: int = 50,
    scale: float | None = None,
) -> list[Box]:
    """The evaluation's candidates (:func:`~napari_ppii.evaluation.metrics.extract_candidates`: local maxima
    of the 2D map -- smoothed at the detection ``scale``, default the evaluation's -- >= ``min_distance`` px
    apart, strongest first) whose map value exceeds ``threshold``, the first ``max_candidates`` of them, each
    as a small box around its peak (``2 min_distance + 1`` px a side) -- never a box around a whole
    thresholded region, which on a diffuse map spans the image.  ``peak``: the map's value there; ``score``:
    the candidate's score (its order).  The threshold is applied before the count: a peak above it is shown
    however many broader candidates below it outrank it."""
    from ..evaluation.metrics import DEFAULT_DETECT_SCALE, extract_candidates

    a = np.asarray(amap)
    scale = DEFAULT_DETECT_SCALE if scale is None else scale
    c = extract_candidates(a, min_distance=min_distance, max_candidates=np.inf, scale=scale)
    out = []
    for (y, x), score in zip(c.points, c.scores):
        peak = float(a[int(y), int(x)])
        if peak <= threshold:
            continue
        if len(out) >= max_candidates:
            break
        lo = (max(0, int(y) - min_distance), max(0, int(x) - min_distance))
        hi = (min(a.shape[0] - 1, int(y) + min_distance), min(a.shape[1] - 1, int(x) + min_distance))
        props = {"peak": peak, "score": float(score), "peak_y": int(y), "peak_x": int(x)}
        out.append(Box(lo, hi, label="detection", properties=props))
    return out


def count_hits(dets: list[Box], truth: list[Box]) -> tuple[int, int, int]:
    """(lesions hit, false-positive detections, lesions) by the evaluation's hit rule
    (:func:`~napari_ppii.evaluation.metrics.match_candidates`: a detection's peak inside a lesion's box,
    strongest first, each lesion once, repeats ignored)."""
    from ..evaluation.metrics import Candidates, match_candidates

    dets = sorted(dets, key=lambda b: -b.properties.get("score", b.properties.get("peak", 0)))
    pts = np.array([[d.properties["peak_y"], d.properties["peak_x"]] for d in dets], dtype=float).reshape(-1, 2)
    h = match_candidates(Candidates(pts, np.array([d.properties["peak"] for d in dets], dtype=float)), truth)
    return int((h.lesion >= 0).sum()), int((h.lesion == -1).sum()), h.n_lesions


def truth_lesions(boxes: list[Box]) -> list[Box]:
    """Ground-truth boxes as lesions by the evaluation's rule (:func:`~napari_ppii.evaluation.evaluate.
    lesion_boxes`: the LIDC readers' boxes of one >= 3 mm nodule are one lesion, their < 3 mm point marks
    none)."""
    from ..evaluation.evaluate import lesion_boxes

    return lesion_boxes(boxes)


class PredictWidget(FormsMixin, QWidget):
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
        self.last_warning: str | None = None  # of the map on show (e.g. another modality than trained on)
        self.last_counts: tuple[int, int, int] | None = None
        outer = scroll_layout(self)
        form = QFormLayout()
        row = checkpoint_row(self)
        from napari.layers import Image, Shapes

        from ._common import layer_picker
        from ._config import inference_form

        mine = lambda ly: ly.name in (MAP, RAW, VAR, DET) or ly.name.startswith(MAP) or is_own_layer(ly)  # noqa: E731
        self.image_combo = layer_picker(self.viewer, Image, exclude=mine, label="Scan layer")
        self.truth_combo = layer_picker(self.viewer, Shapes, extra=("(none)",), exclude=mine, label="Ground truth")
        form.addRow("Checkpoint", row)
        outer.addLayout(form)
        from magicgui.widgets import Container

        outer.addWidget(Container(widgets=[self.image_combo, self.truth_combo], labels=True).native)
        outer.addWidget(inference_form(self, napari_viewer).native)
        from ._common import PriorControls

        self.prior = PriorControls(napari_viewer)
        outer.addWidget(self.prior.container.native)
        self.predict_button, self.all_button, self.folder_button = button_row(
            outer, "Predict", "All layers", "Folder..."
        )
        self.predict_button.clicked.connect(self.predict)
        self.all_button.setToolTip("predict every image layer (a map layer each)")
        self.all_button.clicked.connect(self.predict_all)
        self.folder_button.setToolTip("predict every scan of a folder into an output folder (maps + index.csv)")
        self.folder_button.clicked.connect(self._folder_clicked)
        self.last_batch = None
        self.progress = QProgressBar()
        outer.addWidget(self.progress)
        self.progress_changed.connect(lambda i, n: (self.progress.setRange(0, n), self.progress.setValue(i)))
        self.threshold = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.threshold.setRange(0.0, 1.0)
        self.threshold.setDecimals(2)
        self.threshold.setValue(0.5)
        self.threshold.valueChanged.connect(self._threshold_moved)
        from qtpy.QtWidgets import QCheckBox

        # a map's range depends on the model (some models never reach 0.5 on a scan): by default the
        # threshold follows each new map, at its top 0.1 % of pixels; moving the slider takes over
        self.auto_threshold = QCheckBox("auto: the map's top 0.1%")
        self.auto_threshold.setChecked(True)
        self.auto_threshold.setToolTip(
            "set the threshold from each new map (its 99.9th percentile); moving the slider turns this off"
        )
        self.auto_threshold.toggled.connect(lambda on: on and self._auto_set_threshold())
        self._setting_threshold = False
        form2 = QFormLayout()
        form2.addRow("Threshold", self.threshold)
        form2.addRow("", self.auto_threshold)
        outer.addLayout(form2)
        self.counts = QLabel("")
        outer.addWidget(self.counts)
        outer.addStretch(1)
        self.truth_combo.changed.connect(self.update_detections)
        self.viewer.dims.events.current_step.connect(self.update_detections)

    def _fail(self, msg: str):
        report_error(self, msg, self.counts)

    def _threshold_moved(self, *_):
        if not self._setting_threshold:
            self.auto_threshold.setChecked(False)
        self.update_detections()

    def _auto_set_threshold(self) -> None:
        """The threshold at the current map's 99.9th percentile (at most 0.99)."""
        if self.map_layer is None or MAP not in self.viewer.layers:
            return
        data = np.asarray(self.map_layer.data)
        thr = float(np.clip(np.percentile(data, 99.9), 0.0, 0.99))
        self._setting_threshold = True
        try:
            self.threshold.setValue(round(thr, 2) if round(thr, 2) > 0 else thr)
        finally:
            self._setting_threshold = False
        self.update_detections()

    @property
    def busy(self) -> bool:
        return self.worker is not None

    def _loader(self):
        """A function returning the loaded model for the current checkpoint and device; it loads (in the
        worker thread, never blocking the viewer) only when they changed."""
        key = (self.checkpoint.text(), self.shared.config.training.device, self.prior.tta.value)
        if not key[0]:
            raise InputError("choose a checkpoint (best.pt / last.pt of a run)")

        def get():
            if self._predictor_key != key:
                from ..predict import Predictor

                self.predictor = Predictor(key[0], device=key[1], tta=key[2])
                self._predictor_key = key
            return self.predictor

        return get

    def _launch(self, prepare, on_result) -> bool:
        """``prepare(get_model, samples)`` checks the inputs on the GUI thread (an :class:`InputError` is
        shown and nothing starts) and returns the job; the job runs in a worker thread and ``on_result``
        gets its value on the GUI thread."""
        from ._common import launch

        try:
            job = prepare(self._loader(), self.shared.config.model.samples)
        except (InputError, KeyError) as exc:
            self._fail(str(exc))
            return False
        self.progress.setRange(0, 0)  # busy until the first progress report
        self.last_error = None
        for b in (self.predict_button, self.all_button, self.folder_button):
            b.setEnabled(False)
        self.worker = launch(
            job,
            returned=on_result,
            finished=self._finished,
            errored=lambda e: self._fail(
                str(e) if isinstance(e, InputError) else f"prediction failed: {type(e).__name__}: {e}"
            ),
        )
        return True

    def _prior_job(self, scan):
        """On the GUI thread: check the prior choice (a Labels mask of the scan's shape); returns the
        function the worker applies to the predicted :class:`~napari_ppii.predict.AnomalyMap`: the map
        weighted by the prior, the raw map kept as ``amap.raw``."""
        from dataclasses import replace

        from ..prior import prior_mask, weigh_map

        settings, painted = self.prior.settings(), self.prior.mask()
        if painted is not None:
            prior_mask(scan, settings, painted)  # shape and values checked now, not in the worker

        def weigh(amap):
            if settings.kind == "none":
                return amap
            return replace(amap, mean=weigh_map(amap.mean, scan, settings, painted), raw=amap.mean)

        return weigh

    def _image_layers(self) -> list[str]:
        from napari.layers import Image

        return [
            ly.name
            for ly in self.viewer.layers
            if isinstance(ly, Image) and not ly.name.startswith((MAP, VAR, LAYER_PREFIX)) and ly.name not in (DET, RAW)
        ]

    def _scan_of(self, name: str):
        layer = self.viewer.layers[name]
        return layer_to_scan(layer), {"scale": tuple(layer.scale), "translate": tuple(layer.translate)}

    def predict(self) -> bool:
        name = self.image_combo.value
        if not name:
            self._fail("open a scan first")
            return False
        geo = {}

        def prepare(get, samples):
            scan, g = self._scan_of(name)
            geo.update(g)
            weigh = self._prior_job(scan)
            # the progress signal crosses threads as a queued connection
            return lambda: weigh(get().predict_scan(scan, samples=samples, progress=self.progress_changed.emit))

        return self._launch(prepare, lambda amap: self._show(amap, geo))

    def predict_all(self) -> bool:
        """Every image layer, one after the other in the background: a map layer ``anomaly map: <name>``
        each (the current scan's map is also the main ``anomaly map`` layer)."""
        names = self._image_layers()
        if not names:
            self._fail("open a scan first")
            return False

        def prepare(get, samples):
            items = [(n, *self._scan_of(n)) for n in names]
            weighs = [self._prior_job(scan) for _, scan, _ in items]

            def job():
                pred, out = get(), []
                for i, (name, scan, geo) in enumerate(items):
                    out.append((name, weighs[i](pred.predict_scan(scan, samples=samples)), geo))
                    self.progress_changed.emit(i + 1, len(items))
                return out

            return job

        return self._launch(prepare, self._show_all)

    def _show_all(self, results):
        current = self.image_combo.value
        for name, amap, geo in results:
            set_image_layer(self.viewer, f"{MAP}: {name}", amap.mean, geo, **overlay_style())
        for name, amap, geo in results:
            if name == current or len(results) == 1:
                self._show(amap, geo)

    def _folder_clicked(self):
        folder = QFileDialog.getExistingDirectory(self, "Folder of scans")
        if not folder:
            return
        out = QFileDialog.getExistingDirectory(self, "Write the maps to")
        if out:
            self.predict_folder(folder, out)

    def predict_folder(self, folder, out) -> bool:
        """Every scan of ``folder`` (radiographs, volumes, DICOM series, or an annotations CSV) to ``out``."""
        from ..predict import expand_inputs, predict_batch

        def prepare(get, samples):
            def job():
                sources, bad = expand_inputs([str(folder)])
                return predict_batch(
                    get(),
                    sources,
                    out,
                    samples=samples,
                    skipped=bad,
                    progress=lambda i, n, name, status: self.progress_changed.emit(i, n),
                )

            return job

        return self._launch(prepare, self._batch_done)

    def _batch_done(self, res):
        self.last_batch = res
        ok = sum(r["status"] == "ok" for r in res.rows)
        text = f"{ok} scan(s) predicted to {res.index.parent} (index.csv)"
        if res.skipped:
            text += f"; {len(res.skipped)} skipped: " + "; ".join(f"{Path(i).name}: {r}" for i, r in res.skipped[:3])
        self.counts.setText(text)
        self.counts.setToolTip("\n".join(f"{i}: {r}" for i, r in res.skipped))
        if self.progress.maximum() == 0:
            self.progress.setRange(0, 1)
            self.progress.setValue(1)

    def _finished(self):
        self.worker = None
        for b in (self.predict_button, self.all_button, self.folder_button):
            b.setEnabled(True)
        if self.progress.maximum() == 0:  # failed before any progress: leave no busy bar
            self.progress.setRange(0, 1)
            self.progress.setValue(0)

    def _show(self, amap, geo):
        self.last_warning = amap.warning
        if amap.warning:  # e.g. a CT model on a radiograph: shown, never silent
            from napari.utils.notifications import show_warning

            show_warning(amap.warning)
        raw = amap.raw
        if raw is not None:  # the map before the prior, hidden, for comparison
            set_image_layer(self.viewer, RAW, raw, geo, **overlay_style(), visible=False)
        elif RAW in self.viewer.layers:
            self.viewer.layers.remove(RAW)
        self.map_layer = set_image_layer(self.viewer, MAP, amap.mean, geo, **overlay_style())
        if amap.samples > 1:
            set_image_layer(
                self.viewer,
                VAR,
                amap.variance,
                geo,
                colormap="viridis",
                opacity=0.5,
                blending="additive",
                visible=False,
                contrast_limits=(0.0, max(float(amap.variance.max()), 1e-6)),
            )
        elif VAR in self.viewer.layers:
            self.viewer.layers.remove(VAR)
        self._geo = geo
        if self.auto_threshold.isChecked():
            self._auto_set_threshold()
        else:
            self.update_detections()
        self.prediction_done.emit(amap)

    def _current_map(self):
        if self.map_layer is None or MAP not in self.viewer.layers:
            return None, None
        data = np.asarray(self.map_layer.data)
        if data.ndim == 3:
            z = int(
                np.clip(round(float(self.map_layer.world_to_data(self.viewer.dims.point)[0])), 0, data.shape[0] - 1)
            )
            return data[z], z
        return data, None

    def _check_truth(self, layer, boxes) -> None:
        """Warn once per layer about ground truth that cannot belong to the scan: 2D boxes over a volume
        (napari draws them on every slice) or boxes outside the scan."""
        from ..io.boxes import boxes_outside

        shape = self.map_layer.data.shape
        msg = None
        if layer.ndim == 2 and len(shape) == 3:
            msg = (
                f"the ground truth '{layer.name}' holds 2D boxes, shown on every slice of this volume: give the "
                "box file a z (or z0/z1, z_index) column"
            )
        elif boxes and len(boxes_outside(boxes, shape)) == len(boxes):
            msg = f"none of the boxes of '{layer.name}' lies within this scan: do they belong to it?"
        key = (layer.name, len(layer.data), shape)
        if msg and getattr(self, "_truth_warned", None) != key:
            from napari.utils.notifications import show_warning

            self._truth_warned = key
            self.last_warning = msg
            show_warning(msg)

    def update_detections(self, *_):
        amap, z = self._current_map()
        if amap is None:
            return
        thr = self.threshold.value()
        # the threshold is visible: map values below it are black, which additive blending leaves out
        self.map_layer.contrast_limits = (min(thr, 0.999), 1.0)
        dets = detect(amap, thr)
        truth_name = self.truth_combo.value
        truth = []
        if truth_name and truth_name != "(none)" and truth_name in self.viewer.layers:
            truth_layer = self.viewer.layers[truth_name]
            truth = shapes_to_boxes(truth_layer, self.map_layer)
            self._check_truth(truth_layer, truth)
            if z is not None:
                truth = [b.to_2d() for b in truth if b.ndim == 3 and b.lo[0] <= z <= b.hi[0]]
            truth = truth_lesions(truth)
        boxes3 = (
            [Box((z, *b.lo), (z, *b.hi), label=b.label, properties=b.properties) for b in dets]
            if z is not None
            else dets
        )
        set_boxes_layer(self.viewer, DET, boxes3, 3 if z is not None else 2, self._geo, edge_color="yellow")
        hits, fps, n = count_hits(dets, truth)
        self.last_counts = (hits, fps, n)
        where = "" if z is None else f" (slice {z})"
        self.counts.setText(f"{len(dets)} detection(s){where}: {hits}/{n} lesion(s) hit, {fps} false positive(s)")
