# SPDX-License-Identifier: BSD-3-Clause
"""Training from the viewer: configure with the one configuration object, run ``ppii train`` in its own
process, follow its log live (progress, ETA, loss and validation-Dice plot), stop, resume.

* Start writes ``config.yaml`` to the run folder and launches ``ppii train`` as a separate process
  group: the viewer stays responsive and Stop (SIGTERM, then SIGKILL after 4 s) frees all GPU memory.
* Training data: a folder / annotations CSV on disk, or the selected image layers (pre-processed and
  written to ``layers.npy`` in the run folder).
* A crashed run shows its error text here and as a notification; nothing fails silently.
* Closing the widget or the viewer while a run is going asks first, then stops the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from qtpy.QtCore import QEvent, QObject, QTimer, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QWidget,
)

from .._layers import LAYER_PREFIX, is_own_layer
from ..config import PPIIConfig
from ._config import FormsMixin
from ..errors import InputError
from ._common import button_row, report_error, scroll_layout
from ._plots import CurvePlot

#: The training widget's first controls (configuration keys); every other model, data and training key is
#: under "Advanced", the synthesis and pre-processing keys are the preview's (one shared configuration).
MAIN_FIELDS = (
    "model.backbone",
    "synthesis.method",
    "training.steps",
    "training.batch_size",
    "data.image_size",
    "model.base_channels",
    "training.lr",
    "training.val_every",
    "training.device",
    "data.augment.scaling",
    "data.augment.rotation",
    "data.augment.elastic",
    "training.confidence_weighting",
    "data.train",
    "training.out_dir",
)


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


class TrainingWidget(FormsMixin, QWidget):
    run_finished = Signal(int)  # return code
    record_received = Signal(dict)
    batch_shown = Signal()

    def __init__(self, napari_viewer, parent=None, confirm: Callable[[], bool] | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        from ._config import shared_config

        self.shared = shared_config(napari_viewer)
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

    # ------------------------------------------------------------------ UI
    def _build(self):
        from napari.layers import Image
        from superqt import QCollapsible

        from ._common import layer_picker
        from ._config import ConfigForm, device_choices, leaf_keys

        outer = scroll_layout(self)
        devices = device_choices()
        # the viewer's shared configuration: the synthesis is what the preview shows
        self.form = ConfigForm(self.shared, MAIN_FIELDS, on_error=self._fail, extra_choices=devices)
        outer.addWidget(self.form.native)
        self.use_layers = QCheckBox("train on the selected image layers instead")
        self.layer_list = layer_picker(
            self.viewer,
            Image,
            exclude=is_own_layer,
            multiple=True,
            tooltip="the image layers to train on (select several)",
        )
        self.layer_list.native.setMaximumHeight(80)
        self.layer_list.value = []
        outer.addWidget(self.use_layers)
        outer.addWidget(self.layer_list.native)
        self.advanced = QCollapsible("Advanced")
        rest = [k for k in leaf_keys() if k.startswith(("model.", "data.", "training.")) and k not in MAIN_FIELDS]
        self.advanced_form = ConfigForm(self.shared, rest, on_error=self._fail, extra_choices=devices)
        self.advanced.addWidget(self.advanced_form.native)
        outer.addWidget(self.advanced)
        self.forms = [self.form, self.advanced_form]
        self.save_button, self.load_button = button_row(outer, "Save config...", "Load config...")
        self.start_button, self.stop_button, self.resume_button, self.batch_button = button_row(
            outer, "Start", "Stop", "Resume", "Show a batch"
        )
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

    def _update_buttons(self):
        running = self.running
        self.start_button.setEnabled(not running)
        self.resume_button.setEnabled(not running)
        self.stop_button.setEnabled(running)

    # ------------------------------------------------------------------ config
    def config(self) -> PPIIConfig:
        """The viewer's shared configuration: what the preview shows and what ``ppii train`` gets."""
        return self.shared.config

    def set_config(self, cfg: PPIIConfig) -> None:
        """Make ``cfg`` the shared configuration (every widget shows it)."""
        self.shared.set(cfg)

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

        names = self._selected_layers()
        if not names:
            raise InputError("no image layer is selected to train on")
        stack = np.concatenate([model_input(layer_to_scan(self.viewer.layers[n]), cfg) for n in names])
        out.mkdir(parents=True, exist_ok=True)
        np.save(out / "layers.npy", stack)
        return out / "layers.npy"

    def _with_layer_data(self, cfg: PPIIConfig, out: Path) -> PPIIConfig:
        """``cfg`` training on the selected layers (``layers.npy`` in ``out``) with their placement masks."""
        cfg = cfg.with_values({"data.train": self._layer_stack(cfg, out)})
        if cfg.synthesis.placement != "anywhere":  # the preview's placement mask (or the lungs)
            cfg = cfg.with_values({"data.mask": self._mask_stack(cfg, out), "synthesis.placement": "mask"})
        return cfg

    def _selected_layers(self) -> list[str]:
        return list(self.layer_list.value)

    def _mask_stack(self, cfg: PPIIConfig, out: Path) -> Path:
        """Placement masks aligned with ``layers.npy``: a layer's painted placement mask (the preview's
        Labels layer made for it), else its lung fields; resized like the images.  Written to
        ``masks.npy`` so training from the viewer and from ``ppii train --set data.mask=...`` use one mask."""
        from napari.layers import Labels

        from .._layers import layer_to_scan
        from ..workflows import placement_mask

        s = cfg.data.image_size
        stacks = []
        for name in self._selected_layers():
            layer = self.viewer.layers[name]
            painted = [
                ly
                for ly in self.viewer.layers
                if isinstance(ly, Labels)
                and ly.metadata.get("ppii_mask_for") == name
                and tuple(ly.data.shape) == tuple(layer.data.shape)
            ]
            scan = layer_to_scan(layer)
            shape = (s, s) if scan.ndim == 2 else (scan.shape[0], s, s)
            # a painted mask wins; without one, the lungs (also for placement 'mask': the preview's default)
            m = placement_mask("lungs", scan, shape, given=np.asarray(painted[0].data) if painted else None)
            stacks.append(m if m.ndim == 3 else m[None])
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
                self.shared.update({"training.out_dir": str(out)})
                cfg = self.config()
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
        self.shared.last_run.update(
            checkpoint=Path(cfg.training.out_dir) / "best.pt", last=Path(cfg.training.out_dir) / "last.pt"
        )
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
                self.eta.setText(
                    f"step {step}/{self.steps_total}  loss {r.get('loss', float('nan')):.4f}  "
                    f"{ips or 0:.1f} img/s  ETA {int(eta) // 60} min {int(eta) % 60} s"
                )
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

        from ._common import launch

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
                np.random.default_rng(), min(cfg.training.batch_size, 8)
            )
            return b.image[:, 0].numpy(), b.label[:, 0].numpy()

        self._batch_worker = launch(
            job,
            returned=self._show_batch_layers,
            finished=lambda: setattr(self, "_batch_worker", None),
            errored=lambda e: self._fail(
                str(e) if isinstance(e, InputError) else f"batch failed: {type(e).__name__}: {e}"
            ),
        )
        return True

    def _batch_geometry(self, side: int) -> dict:
        """Scale and translate that lay a batch of ``side`` x ``side`` model inputs over the field of view
        of the scan it stands for (the first image layer trained on, else the first scan in the viewer),
        not in a corner of it at one pixel per input pixel."""
        from napari.layers import Image

        names = self._selected_layers() if self.use_layers.isChecked() else []
        refs = [self.viewer.layers[n] for n in names if n in self.viewer.layers] or [
            ly for ly in self.viewer.layers if isinstance(ly, Image) and not is_own_layer(ly)
        ]
        if not refs:
            return {"scale": (1.0, 1.0, 1.0), "translate": (0.0, 0.0, 0.0)}
        ref = refs[0]
        (h, w), (sy, sx), (ty, tx) = ref.data.shape[-2:], tuple(ref.scale)[-2:], tuple(ref.translate)[-2:]
        fy, fx = h * sy / side, w * sx / side  # world size of one model-input pixel
        # pixel edges line up: the scan's first pixel edge lies at t - s/2, the batch's at t' - f/2
        return {"scale": (1.0, fy, fx), "translate": (0.0, ty - sy / 2 + fy / 2, tx - sx / 2 + fx / 2)}

    def _show_batch_layers(self, arrays):
        geo = self._batch_geometry(arrays[0].shape[-1])
        for name, data, kw in (
            ("batch image", arrays[0], {"colormap": "gray"}),
            ("batch label", arrays[1], {"colormap": "inferno", "blending": "additive", "opacity": 0.7}),
        ):
            full = f"{LAYER_PREFIX} {name}"
            if full in self.viewer.layers:
                layer = self.viewer.layers[full]
                layer.data = data
                layer.scale, layer.translate = geo["scale"], geo["translate"]
            else:
                self.viewer.add_image(data, name=full, **geo, **kw)
        self.batch_shown.emit()

    # ------------------------------------------------------------------ closing
    def confirm_stop(self) -> bool:
        if self._confirm is not None:
            return bool(self._confirm())
        answer = QMessageBox.question(
            self,
            "Training is running",
            "A training run is going. Stop it and close?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    def closeEvent(self, event):
        if self.running:
            if not self.confirm_stop():
                event.ignore()
                return
            self.stop()
        super().closeEvent(event)
