# SPDX-License-Identifier: BSD-3-Clause
"""Evaluation in the viewer: pick a checkpoint and test data, score in a background worker, see the
metrics table (with bootstrap CIs) and the FROC curve in the dock, and browse the test images with
their anomaly map, ground-truth boxes and FROC candidates."""

from __future__ import annotations

from pathlib import Path

from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from ..errors import InputError
from ..evaluation.summary import below_floor_lines, fmt_ci
from ._common import checkpoint_row, report_error, scroll_layout
from ._config import FormsMixin

ROWS = (
    ("pixel_auroc", "Pixel AUROC"),
    ("sample_auroc", "Sample AUROC"),
    ("sample_ap", "Sample AP"),
    ("froc_at_10fp", "FROC @ 10 FP/image"),
    ("pixel_auroc_lung", "Pixel AUROC in lungs"),
    ("froc_centre_at_10fp", "FROC @ 10 FP (centre rule)"),
)


class EvaluationWidget(FormsMixin, QWidget):
    """Metrics with CIs beside the floors, the FROC curve, and a browser over the test scans.

    Only what is shown is kept: the evaluation keeps no scan and no map (a JSRT run at full size would
    hold gigabytes); browsing to a test scan reads and predicts that one in the background."""

    evaluation_done = Signal(object)
    progress_changed = Signal(int, int)  # test scans done, total
    item_shown = Signal(int)

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.evaluation = None
        self.items = []  # the test items (paths and boxes; no scans, no maps)
        self._predictor = None
        self._shown = None  # (index, scan, map) of the scan on show: the only one kept
        self._prior = (None, None)  # (PriorSettings, painted mask) of the last run
        self._item_worker = None
        self.worker = None
        self.last_error: str | None = None
        outer = scroll_layout(self)
        form = QFormLayout()
        row = checkpoint_row(self)
        self.data = QLineEdit()
        self.data.setPlaceholderText("annotations CSV (split=test rows) or a CT series folder")
        self.boxes = QLineEdit()
        self.boxes.setPlaceholderText("CT only: LIDC XML or box CSV")
        self.labels = QLineEdit()
        self.labels.setPlaceholderText("optional: box labels to count, e.g. Nodule,Mass")
        self.n_boot = QSpinBox()
        self.n_boot.setRange(10, 10000)
        self.n_boot.setValue(1000)
        from ..evaluation.metrics import DEFAULT_DETECT_SCALE

        self.detect_scale = QDoubleSpinBox()
        self.detect_scale.setRange(0.0, 0.1)
        self.detect_scale.setDecimals(3)
        self.detect_scale.setSingleStep(0.005)
        self.detect_scale.setValue(DEFAULT_DETECT_SCALE)
        self.detect_scale.setToolTip(
            "candidates (FROC, strongest detection) from the map smoothed by a Gaussian of this fraction of the "
            "image side (in-plane); 0: the raw map's peaks"
        )
        form.addRow("Checkpoint", row)
        form.addRow("Test data", self.data)
        form.addRow("Boxes", self.boxes)
        form.addRow("Labels", self.labels)
        form.addRow("Bootstrap", self.n_boot)
        form.addRow("Detection scale", self.detect_scale)
        outer.addLayout(form)
        from ._config import inference_form

        outer.addWidget(inference_form(self, napari_viewer).native)
        from ._common import PriorControls

        self.prior = PriorControls(napari_viewer)
        outer.addWidget(self.prior.container.native)
        self.run_button = QPushButton("Evaluate")
        self.run_button.clicked.connect(self.run)
        outer.addWidget(self.run_button)
        self.progress = QProgressBar()
        outer.addWidget(self.progress)
        self.progress_changed.connect(lambda i, n: (self.progress.setRange(0, n), self.progress.setValue(i)))
        self.table = QTableWidget(len(ROWS), 3)
        self.table.setHorizontalHeaderLabels(["value", "95% CI", "raw map (no prior)"])
        self.table.setVerticalHeaderLabels([r[1] for r in ROWS])
        outer.addWidget(self.table)
        # the non-learned floors scored in the same run (same metric code and CIs): the model is only
        # useful where it beats them
        outer.addWidget(QLabel("Non-learned floors (same metrics, same run):"))
        self.floors_table = QTableWidget(len(ROWS), 0)
        self.floors_table.setVerticalHeaderLabels([r[1] for r in ROWS])
        outer.addWidget(self.floors_table)
        self.notes = QLabel("")  # figures not above a floor, floors left out (and why)
        self.notes.setWordWrap(True)
        self.notes.setVisible(False)
        outer.addWidget(self.notes)
        from ._plots import CurvePlot

        self.froc_plot = CurvePlot()
        outer.addWidget(self.froc_plot)
        brow = QHBoxLayout()
        brow.addWidget(QLabel("Test image"))
        self.index = QSpinBox()
        self.index.setRange(0, 0)
        self.index.valueChanged.connect(self.show_item)
        brow.addWidget(self.index)
        self.item_label = QLabel("")
        brow.addWidget(self.item_label)
        outer.addLayout(brow)

    def _fail(self, msg):
        report_error(self, msg, self.item_label)

    @property
    def busy(self) -> bool:
        return self.worker is not None

    def run(self):
        from ._common import launch

        from ..evaluation import EvalOptions, evaluate
        from ..predict import Predictor
        from ..workflows import atlas_floor, open_test_set

        ckpt, data, boxes, labels = self.checkpoint.text(), self.data.text(), self.boxes.text(), self.labels.text()
        try:
            if not ckpt:
                raise InputError("choose a checkpoint (best.pt / last.pt of a run)")
            if not Path(ckpt).is_file():
                raise InputError("checkpoint not found", ckpt)
            if not data:
                raise InputError("choose test data (an annotations CSV or a CT series)")
            prior, painted = self.prior.settings(), self.prior.mask()
        except InputError as exc:
            self._fail(str(exc))
            return
        opts = EvalOptions(
            n_boot=self.n_boot.value(),
            samples=self.shared.config.model.samples,
            prior=prior,
            detect_scale=self.detect_scale.value(),
        )
        self._prior = (prior, painted)
        device, tta = self.shared.config.training.device, self.prior.tta.value

        def job():  # off the GUI thread: model load, test-set listing, floors, evaluation
            pred = Predictor(ckpt, device=device, tta=tta)
            items = open_test_set(data, boxes or None, labels=labels)
            atlas, why = atlas_floor(pred.cfg, checkpoint=ckpt, recorded=pred.inputs.get("train_data"))
            ev = evaluate(
                pred, items, opts, progress=self.progress_changed.emit, keep_maps=0, atlas=atlas, prior_mask=painted
            )
            if why:
                ev.metrics.setdefault("floors_left_out", {})["atlas"] = why
            return items, pred, ev

        def done(result):
            self.items, self._predictor, self._shown = result[0], result[1], None
            self._show(result[2])

        self.items, self._predictor, self._shown = [], None, None

        self.progress.setRange(0, 0)
        self.last_error = None
        self.run_button.setEnabled(False)
        self.worker = launch(
            job,
            returned=done,
            finished=self._finished,
            errored=lambda e: self._fail(
                str(e) if isinstance(e, InputError) else f"evaluation failed: {type(e).__name__}: {e}"
            ),
        )

    def _finished(self):
        self.worker = None
        self.run_button.setEnabled(True)
        if self.progress.maximum() == 0:  # failed before any progress: leave no busy bar
            self.progress.setRange(0, 1)
            self.progress.setValue(0)

    def _show(self, ev):
        self.evaluation = ev
        m = ev.metrics
        for i, (key, _) in enumerate(ROWS):
            value, _, ci = fmt_ci(m, key).partition(" ")
            self.table.setItem(i, 0, QTableWidgetItem(value))
            self.table.setItem(i, 1, QTableWidgetItem(ci))
            self.table.setItem(
                i, 2, QTableWidgetItem(fmt_ci(m.get("raw", {}), key).partition(" ")[0] if m.get("raw") else "")
            )
        floors = m.get("floors", {})
        self.floors_table.setColumnCount(len(floors))
        self.floors_table.setHorizontalHeaderLabels(list(floors))
        for j, f in enumerate(floors.values()):
            for i, (key, _) in enumerate(ROWS):
                self.floors_table.setItem(i, j, QTableWidgetItem(fmt_ci(f, key, ci_digits=2)))
        notes = below_floor_lines(m) + [
            f"floor {k} left out: {v}" for k, v in m.get("floors_left_out", {}).items() if v
        ]
        self.notes.setText("\n".join(notes))
        self.notes.setVisible(bool(notes))
        curve = m.get("per_slice", m)["froc_curve"]
        p = self.froc_plot
        p.ax.clear()
        p.ax2.clear()
        p.ax.step(curve["fps_per_image"], curve["sensitivity"], where="post", color="C1")
        p.ax.set_xscale("symlog", linthresh=0.125)
        p.ax.set_xlabel("false positives per image", fontsize=8)
        p.ax.set_ylabel("sensitivity", fontsize=8)
        p.ax.set_ylim(0, 1.02)
        p.ax2.set_yticks([])
        p.canvas.draw_idle()
        self.index.setRange(0, max(0, len(self.items) - 1))
        self.show_item(self.index.value())
        self.evaluation_done.emit(ev)

    def show_item(self, i: int):
        """Show test item ``i``: the scan, its map, its boxes and its candidates as layers (the scan is
        read and predicted in a worker; only this one is kept)."""
        from ._common import launch

        if self.evaluation is None or not (0 <= i < len(self.items)):
            return
        if self._shown is not None and self._shown[0] == i:
            self._display(*self._shown)
            return
        it, pred = self.items[i], self._predictor

        def job():
            from ..io import read_scan

            from ..prior import weigh_map

            scan = it.scan if it.scan is not None else read_scan(it.path)
            return i, scan, weigh_map(pred.predict_scan(scan, samples=samples).mean, scan, prior, painted)

        samples = self.shared.config.model.samples
        prior, painted = self._prior
        self.item_label.setText(f"{it.name}: predicting...")
        self._item_worker = launch(
            job,
            returned=lambda r: self._display(*r),
            finished=lambda: setattr(self, "_item_worker", None),
            errored=lambda e: self._fail(f"cannot show test scan {i}: {e}"),
        )

    def _display(self, i: int, scan, amap):
        from .._layers import geometry_kwargs, set_boxes_layer, set_image_layer
        from ..evaluation.metrics import extract_candidates

        if i != self.index.value():
            return  # the user has moved on: a newer request shows its own scan
        self._shown = (i, scan, amap)
        it = self.items[i]
        geo = geometry_kwargs(scan)
        set_image_layer(self.viewer, "eval scan", scan.array, geo, colormap="gray").reset_contrast_limits()
        from .predict import overlay_style

        set_image_layer(self.viewer, "eval map", amap, geo, **overlay_style())  # the scan stays readable
        if "eval candidates" in self.viewer.layers:
            self.viewer.layers.remove("eval candidates")
        set_boxes_layer(self.viewer, "eval boxes", it.boxes, scan.ndim, geo)
        # the candidates as the evaluation took them (its detection scale)
        settings = self.evaluation.metrics.get("settings", {}) if self.evaluation is not None else {}
        cands = extract_candidates(
            amap, max_candidates=10, scale=settings.get("detect_scale", self.detect_scale.value())
        )
        self.viewer.add_points(cands.points, name="eval candidates", symbol="cross", face_color="lime", size=8, **geo)
        self.item_label.setText(f"{it.name}: {len(it.boxes)} lesion(s)")
        self.item_shown.emit(i)
