"""Training from the viewer: configure with the one configuration object, run ``ppii train`` in its own
process, follow its log live (progress, ETA, loss and validation-Dice plot), stop, resume.

* Start writes ``config.yaml`` to the run folder and launches ``ppii train`` as a separate process
  group: the viewer stays responsive and Stop (SIGTERM, then SIGKILL after 4 s) frees all GPU memory.
* Training data: a folder / annotations CSV on disk, or the checked image layers (pre-processed and
  written to ``layers.npy`` in the run folder).
* A crashed run shows its error text here and as a notification; nothing fails silently.
* Closing the widget or the viewer while a run is going asks first, then stops the run.
"""

from __future__ import annotations

from pathlib import Path
import typing
from typing import Callable

import numpy as np
from qtpy.QtCore import QEvent, QObject, QTimer, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from qtpy.QtCore import Qt

from ..config import Method, PPIIConfig
from ..errors import InputError
from ._common import LAST_RUN, cuda_devices, report_error
from ._plots import CurvePlot

class _CloseGuard(QObject):
    """Event filter on the main window: ask before closing while a run is going."""

    def __init__(self, widget):
        super().__init__(widget)
        self.widget = widget

    def eventFilter(self, obj, event):
        if event.type() == QEvent.Type.Close and self.widget.running:
            if not self.widget.confirm_stop():
                event.ignore()
                return True
            self.widget.stop()
        return False


class TrainingWidget(QWidget):
    run_finished = Signal(int)  # return code
    record_received = Signal(dict)
    batch_shown = Signal()

    def __init__(self, napari_viewer, parent=None, confirm: Callable[[], bool] | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.base_config = PPIIConfig()
        self.process = None
        self.follower = None
        self.last_error: str | None = None
        self.steps_total = 0
        self._confirm = confirm
        self._build()
        self.timer = QTimer(self)
        self.timer.setInterval(300)
        self.timer.timeout.connect(self.poll)
        self._guard = None
        try:
            qt_window = self.viewer.window._qt_window
            self._guard = _CloseGuard(self)
            qt_window.installEventFilter(self._guard)
        except AttributeError:
            pass
        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self._refresh_layers()

    # ------------------------------------------------------------------ UI
    def _build(self):
        c = self.base_config
        outer = QVBoxLayout(self)
        form = QFormLayout()
        self.backbone = QComboBox()
        self.backbone.addItems(["unet", "mc_unet", "phiseg"])
        self.method = QComboBox()
        self.method.addItems(list(typing.get_args(Method)))
        self.steps = QSpinBox()
        self.steps.setRange(1, 10_000_000)
        self.steps.setValue(2000)
        self.batch = QSpinBox()
        self.batch.setRange(1, 1024)
        self.batch.setValue(8)
        self.size = QSpinBox()
        self.size.setRange(32, 2048)
        self.size.setSingleStep(32)
        self.size.setValue(256)
        self.base_channels = QSpinBox()
        self.base_channels.setRange(2, 256)
        self.base_channels.setValue(16)
        self.lr = QDoubleSpinBox()
        self.lr.setDecimals(5)
        self.lr.setRange(1e-6, 1.0)
        self.lr.setSingleStep(1e-4)
        self.lr.setValue(c.training.lr)
        self.val_every = QSpinBox()
        self.val_every.setRange(1, 1_000_000)
        self.val_every.setValue(250)
        self.device = QComboBox()
        self.device.addItems(["cpu"] + cuda_devices())
        self.aug_scaling = QCheckBox("scaling")
        self.aug_rotation = QCheckBox("rotation ±10°")
        self.aug_elastic = QCheckBox("elastic")
        aug = QHBoxLayout()
        for w in (self.aug_scaling, self.aug_rotation, self.aug_elastic):
            aug.addWidget(w)
        self.confidence = QCheckBox("confidence-weighted loss (rater variance)")
        self.data_path = QLineEdit()
        self.data_path.setPlaceholderText("folder of radiographs, annotations CSV, or CT series")
        browse = QPushButton("...")
        browse.clicked.connect(self._browse_data)
        drow = QHBoxLayout()
        drow.addWidget(self.data_path)
        drow.addWidget(browse)
        self.use_layers = QCheckBox("train on the checked image layers instead")
        self.layer_list = QListWidget()
        self.layer_list.setMaximumHeight(80)
        self.out_dir = QLineEdit(str(Path("runs") / "napari"))
        obrowse = QPushButton("...")
        obrowse.clicked.connect(self._browse_out)
        orow = QHBoxLayout()
        orow.addWidget(self.out_dir)
        orow.addWidget(obrowse)
        for label, w in (("Backbone", self.backbone), ("Synthesis", self.method), ("Steps", self.steps),
                         ("Batch size", self.batch), ("Image size", self.size), ("Base channels", self.base_channels),
                         ("Learning rate", self.lr), ("Validate every", self.val_every), ("Device", self.device)):
            form.addRow(label, w)
        form.addRow("Augment", aug)
        form.addRow(self.confidence)
        form.addRow("Data", drow)
        form.addRow(self.use_layers)
        form.addRow(self.layer_list)
        form.addRow("Run folder", orow)
        outer.addLayout(form)
        cfg_row = QHBoxLayout()
        self.save_button = QPushButton("Save config...")
        self.load_button = QPushButton("Load config...")
        cfg_row.addWidget(self.save_button)
        cfg_row.addWidget(self.load_button)
        outer.addLayout(cfg_row)
        run_row = QHBoxLayout()
        self.start_button = QPushButton("Start")
        self.stop_button = QPushButton("Stop")
        self.resume_button = QPushButton("Resume")
        self.batch_button = QPushButton("Show a batch")
        for b in (self.start_button, self.stop_button, self.resume_button, self.batch_button):
            run_row.addWidget(b)
        outer.addLayout(run_row)
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m steps")
        outer.addWidget(self.progress)
        self.eta = QLabel("")
        outer.addWidget(self.eta)
        self.plot = CurvePlot()
        outer.addWidget(self.plot)
        self.errors = QPlainTextEdit()
        self.errors.setReadOnly(True)
        self.errors.setMaximumHeight(90)
        self.errors.setVisible(False)
        outer.addWidget(self.errors)
        self.start_button.clicked.connect(lambda: self.start())
        self.stop_button.clicked.connect(lambda: self.stop())
        self.resume_button.clicked.connect(lambda: self.start(resume=True))
        self.batch_button.clicked.connect(self.show_batch)
        self.save_button.clicked.connect(self._save_clicked)
        self.load_button.clicked.connect(self._load_clicked)
        self._update_buttons()

    def _browse_data(self):
        path, _ = QFileDialog.getOpenFileName(self, "Annotations CSV or an image", "", "CSV (*.csv);;All files (*)")
        if not path:
            path = QFileDialog.getExistingDirectory(self, "Folder of radiographs or a DICOM series")
        if path:
            self.data_path.setText(path)

    def _browse_out(self):
        path = QFileDialog.getExistingDirectory(self, "Run folder")
        if path:
            self.out_dir.setText(path)

    def _refresh_layers(self, *_):
        from napari.layers import Image

        checked = {self.layer_list.item(i).text() for i in range(self.layer_list.count())
                   if self.layer_list.item(i).checkState() == Qt.CheckState.Checked}
        self.layer_list.clear()
        for ly in self.viewer.layers:
            if isinstance(ly, Image) and not ly.name.startswith("P-PII"):
                item = QListWidgetItem(ly.name)
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                item.setCheckState(Qt.CheckState.Checked if ly.name in checked else Qt.CheckState.Unchecked)
                self.layer_list.addItem(item)

    def _update_buttons(self):
        running = self.running
        self.start_button.setEnabled(not running)
        self.resume_button.setEnabled(not running)
        self.stop_button.setEnabled(running)

    # ------------------------------------------------------------------ config
    def config(self) -> PPIIConfig:
        data = self.base_config.to_dict()
        data["model"].update(backbone=self.backbone.currentText(), base_channels=self.base_channels.value())
        data["synthesis"]["method"] = self.method.currentText()
        data["training"].update(steps=self.steps.value(), batch_size=self.batch.value(), lr=self.lr.value(),
                                val_every=self.val_every.value(), device=self.device.currentText(),
                                out_dir=self.out_dir.text(), confidence_weighting=self.confidence.isChecked(),
                                lr_min=min(data["training"]["lr_min"], self.lr.value()))
        data["data"].update(image_size=self.size.value(), train=self.data_path.text() or None)
        data["data"]["augment"].update(scaling=self.aug_scaling.isChecked(), rotation=self.aug_rotation.isChecked(),
                                       elastic=self.aug_elastic.isChecked())
        return PPIIConfig.from_dict(data)

    def set_config(self, cfg: PPIIConfig) -> None:
        self.base_config = cfg
        self.backbone.setCurrentText(cfg.model.backbone)
        self.base_channels.setValue(cfg.model.base_channels)
        self.method.setCurrentText(cfg.synthesis.method)
        self.steps.setValue(cfg.training.steps)
        self.batch.setValue(cfg.training.batch_size)
        self.lr.setValue(cfg.training.lr)
        self.val_every.setValue(cfg.training.val_every)
        if self.device.findText(cfg.training.device) >= 0:
            self.device.setCurrentText(cfg.training.device)
        self.out_dir.setText(cfg.training.out_dir)
        self.confidence.setChecked(cfg.training.confidence_weighting)
        self.size.setValue(cfg.data.image_size)
        self.data_path.setText(cfg.data.train or "")
        self.aug_scaling.setChecked(cfg.data.augment.scaling)
        self.aug_rotation.setChecked(cfg.data.augment.rotation)
        self.aug_elastic.setChecked(cfg.data.augment.elastic)

    def _save_clicked(self):
        path, _ = QFileDialog.getSaveFileName(self, "Save configuration", "ppii.yaml", "YAML (*.yaml *.yml)")
        if path:
            try:
                self.config().save(path)
            except InputError as exc:
                self._fail(str(exc))

    def _load_clicked(self):
        path, _ = QFileDialog.getOpenFileName(self, "Load configuration", "", "YAML (*.yaml *.yml);;JSON (*.json)")
        if path:
            try:
                self.set_config(PPIIConfig.load(path))
            except InputError as exc:
                self._fail(str(exc))

    # ------------------------------------------------------------------ run
    @property
    def running(self) -> bool:
        return self.process is not None and self.process.running

    def _fail(self, msg: str) -> None:

        self.errors.setVisible(True)
        report_error(self, msg, self.errors)

    def _layer_stack(self, cfg: PPIIConfig, out: Path) -> Path:
        from .._layers import layer_to_scan
        from ..preprocess import model_input

        names = [self.layer_list.item(i).text() for i in range(self.layer_list.count())
                 if self.layer_list.item(i).checkState() == Qt.CheckState.Checked]
        if not names:
            raise InputError("no image layer is checked to train on")
        stack = np.concatenate([model_input(layer_to_scan(self.viewer.layers[n]), cfg) for n in names])
        out.mkdir(parents=True, exist_ok=True)
        np.save(out / "layers.npy", stack)
        return out / "layers.npy"

    def _with_layer_data(self, cfg: PPIIConfig, out: Path) -> PPIIConfig:
        """``cfg`` training on the checked layers (``layers.npy`` in ``out``) with their placement masks."""
        cfg = cfg.with_values({"data.train": self._layer_stack(cfg, out)})
        if cfg.synthesis.placement != "anywhere":  # the preview's placement mask (or the lungs)
            cfg = cfg.with_values({"data.mask": self._mask_stack(cfg, out), "synthesis.placement": "mask"})
        return cfg

    def _checked_layers(self) -> list[str]:
        return [self.layer_list.item(i).text() for i in range(self.layer_list.count())
                if self.layer_list.item(i).checkState() == Qt.CheckState.Checked]

    def _mask_stack(self, cfg: PPIIConfig, out: Path) -> Path:
        """Placement masks aligned with ``layers.npy``: a layer's painted placement mask (the preview's
        Labels layer made for it), else its lung fields; resized like the images.  Written to
        ``masks.npy`` so training from the viewer and from ``ppii train --set data.mask=...`` use one mask."""
        from napari.layers import Labels

        from .._layers import layer_to_scan
        from ..anatomy import lung_mask
        from ..preprocess import resize

        s = cfg.data.image_size
        stacks = []
        for name in self._checked_layers():
            layer = self.viewer.layers[name]
            painted = [ly for ly in self.viewer.layers if isinstance(ly, Labels)
                       and ly.metadata.get("ppii_mask_for") == name and tuple(ly.data.shape) == tuple(layer.data.shape)]
            m = np.asarray(painted[0].data) > 0 if painted else lung_mask(layer_to_scan(layer))
            m = m if m.ndim == 3 else m[None]
            stacks.append(np.stack([resize(a.astype(np.float32), (s, s)) >= 0.5 for a in m]))
        np.save(out / "masks.npy", np.concatenate(stacks).astype(np.uint8))
        return out / "masks.npy"

    def start(self, resume: bool = False) -> bool:
        from ..training.process import LogFollower, TrainingProcess

        if self.running:
            return False
        from napari.utils.notifications import show_info

        from ..training.rundir import plan_run_dir

        try:
            cfg = self.config()
            ckpt = Path(cfg.training.out_dir) / "last.pt"
            # a folder in use is refused; a new run never overwrites an earlier run's checkpoints: it goes
            # to the next free folder, shown in the run-folder field
            out, note = plan_run_dir(cfg.training.out_dir, ckpt if resume else None)
            if note:
                self.out_dir.setText(str(out))
                cfg = cfg.with_values({"training.out_dir": out})
                show_info(note)
            if self.use_layers.isChecked():
                cfg = self._with_layer_data(cfg, out)
            elif not cfg.data.train:
                raise InputError("choose training data (a folder or CSV), or check image layers to train on")
            if resume and not ckpt.exists():
                raise InputError("nothing to resume: no last.pt in the run folder", ckpt.parent)
        except InputError as exc:
            self._fail(str(exc))
            return False
        self.errors.setVisible(False)
        self.last_error = None
        log = Path(cfg.training.out_dir) / "log.jsonl"
        if not resume:
            log.unlink(missing_ok=True)
            self.plot.clear()
        self.process = TrainingProcess(cfg, resume=ckpt if resume else None)
        self.follower = LogFollower(log)
        if resume:
            self.follower.poll()  # skip what was already shown
        self.steps_total = cfg.training.steps
        self.progress.setRange(0, cfg.training.steps)
        self.process.start()
        LAST_RUN["checkpoint"] = Path(cfg.training.out_dir) / "best.pt"
        LAST_RUN["last"] = Path(cfg.training.out_dir) / "last.pt"
        self.timer.start()
        self._update_buttons()
        self.eta.setText("starting...")
        return True

    def stop(self) -> int | None:
        if self.process is None:
            return None
        rc = self.process.stop(grace=4.0)
        self.poll()
        self.timer.stop()
        self._update_buttons()
        self.eta.setText(f"stopped (checkpoint in {self.process.out})")
        return rc

    def poll(self):
        """Read new log records; notice the end of the process."""
        if self.follower is None:
            return
        recs = self.follower.poll()
        for r in recs:
            self._on_record(r)
        if recs:
            self.plot.redraw()
        if self.process is not None and not self.process.running and self.timer.isActive():
            self.timer.stop()
            rc = self.process.returncode
            self._update_buttons()
            if rc not in (0, None):
                self._fail(self.process.failure_text())
            elif rc == 0:
                self.eta.setText(self.eta.text().replace("ETA", "finished; was ETA"))
            self.run_finished.emit(rc if rc is not None else -1)

    def _on_record(self, r: dict):
        step = int(r.get("step", 0))
        if r.get("event") in ("step", "val"):
            self.progress.setValue(step)
            if "loss" in r and r.get("event") == "step":
                self.plot.loss.append((step, float(r["loss"])))
            eta = r.get("eta_s")
            ips = r.get("images_per_s")
            if eta is not None:
                self.eta.setText(f"step {step}/{self.steps_total}  loss {r.get('loss', float('nan')):.4f}  "
                                 f"{ips or 0:.1f} img/s  ETA {int(eta) // 60} min {int(eta) % 60} s")
        if r.get("event") == "val":
            self.plot.dice.append((step, float(r["val_dice"])))
        if r.get("event") == "error":
            self._fail(r.get("error", "training error"))
        self.record_received.emit(r)

    # ------------------------------------------------------------------ batch preview
    def show_batch(self) -> bool:
        """Draw one synthetic batch with the current settings and show it as image layers.  The layers'
        model inputs are taken here; loading the data and synthesising run in a worker thread
        (``batch_shown`` when the layers are there)."""
        import tempfile

        from napari.qt.threading import create_worker

        try:
            cfg = self.config()
            if self.use_layers.isChecked():  # never into the run folder: a training may be using it
                cfg = self._with_layer_data(cfg, Path(tempfile.mkdtemp(prefix="ppii-batch-")))
        except InputError as exc:
            self._fail(str(exc))
            return False

        def job():
            import torch

            from ..training.data import SyntheticBatches, load_training_set

            images, masks = load_training_set(cfg)
            b = SyntheticBatches(images, cfg, torch.device("cpu"), masks=masks).draw(
                np.random.default_rng(), min(cfg.training.batch_size, 8))
            return b.image[:, 0].numpy(), b.label[:, 0].numpy()

        w = create_worker(job, _start_thread=False, _ignore_errors=True)
        w.returned.connect(self._show_batch_layers)
        w.errored.connect(lambda e: self._fail(str(e) if isinstance(e, InputError) else f"batch failed: {type(e).__name__}: {e}"))
        w.finished.connect(lambda: setattr(self, "_batch_worker", None))
        self._batch_worker = w
        w.start()
        return True

    def _show_batch_layers(self, arrays):
        for name, data, kw in (("batch image", arrays[0], {"colormap": "gray"}),
                               ("batch label", arrays[1], {"colormap": "inferno", "blending": "additive", "opacity": 0.7})):
            full = f"P-PII {name}"
            if full in self.viewer.layers:
                self.viewer.layers[full].data = data
            else:
                self.viewer.add_image(data, name=full, **kw)
        self.batch_shown.emit()

    # ------------------------------------------------------------------ closing
    def confirm_stop(self) -> bool:
        if self._confirm is not None:
            return bool(self._confirm())
        answer = QMessageBox.question(self, "Training is running", "A training run is going. Stop it and close?",
                                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def closeEvent(self, event):
        if self.running:
            if not self.confirm_stop():
                event.ignore()
                return
            self.stop()
        super().closeEvent(event)
