# SPDX-License-Identifier: BSD-3-Clause
"""Small pieces the dock widgets share."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def cuda_devices() -> list[str]:
    try:
        import torch

        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    except Exception:  # torch missing or broken: CPU only
        return []


def report_error(widget, msg: str, label=None) -> None:
    """Keep ``msg`` as the widget's ``last_error``, show it in ``label`` and as a napari notification."""
    from napari.utils.notifications import show_error

    widget.last_error = msg
    if label is not None:
        (label.setPlainText if hasattr(label, "setPlainText") else label.setText)(msg)
        label.setToolTip(msg)
    show_error(msg)


def last_run_checkpoint(shared) -> Path | None:
    """The best (else last) checkpoint of the latest run started from the training dock of the viewer whose
    shared configuration is ``shared`` (a ``_config.SharedConfig``), if written."""
    for key in ("checkpoint", "last"):
        p = shared.last_run.get(key)
        if p is not None and Path(p).exists():
            return Path(p)
    return None


def button_row(outer, *labels: str) -> list:
    """A row of push buttons added to the layout ``outer``; returns the buttons in order."""
    from qtpy.QtWidgets import QHBoxLayout, QPushButton

    row = QHBoxLayout()
    buttons = [QPushButton(text) for text in labels]
    for b in buttons:
        row.addWidget(b)
    outer.addLayout(row)
    return buttons


def checkpoint_row(widget):
    """A checkpoint path field with "..." (choose a file) and "Last run" (the training widget's latest
    checkpoint) buttons; sets ``widget.checkpoint`` and returns the row's layout."""
    from qtpy.QtWidgets import QFileDialog, QHBoxLayout, QLineEdit, QPushButton

    widget.checkpoint = field = QLineEdit()
    field.setPlaceholderText("best.pt / last.pt of a run")

    def browse():
        path, _ = QFileDialog.getOpenFileName(widget, "Checkpoint", "", "Checkpoints (*.pt)")
        if path:
            field.setText(path)

    def last_run():
        p = last_run_checkpoint(widget.shared)
        if p is None:
            widget._fail("no run from the training widget has written a checkpoint yet")
        else:
            field.setText(str(p))

    row = QHBoxLayout()
    row.addWidget(field)
    for text, slot in (("...", browse), ("Last run", last_run)):
        button = QPushButton(text)
        button.clicked.connect(slot)
        row.addWidget(button)
    return row


def launch(job, *args, returned=None, errored=None, finished=None, yielded=None):
    """Run ``job(*args)`` in a napari worker thread (a generator's yields go to ``yielded``); the
    callbacks run on the GUI thread.  Errors never propagate into napari's handler: ``errored`` gets them."""
    from napari.qt.threading import create_worker

    worker = create_worker(job, *args, _start_thread=False, _ignore_errors=True)
    for signal, slot in (("returned", returned), ("errored", errored), ("finished", finished), ("yielded", yielded)):
        if slot is not None:
            getattr(worker, signal).connect(slot)
    worker.start()
    return worker


def layer_picker(
    viewer,
    kinds,
    *,
    extra: tuple[str, ...] = (),
    exclude=lambda layer: False,
    label: str = "",
    tooltip: str = "",
    multiple: bool = False,
):
    """A magicgui ``ComboBox`` (``multiple``: a multi-selection ``Select``) of the viewer's layer names of
    ``kinds`` (plus ``extra`` entries first), kept current as layers come and go; the chosen names
    survive while their layers exist."""
    from magicgui.widgets import ComboBox, Select

    def names(_widget=None):
        return list(extra) + [ly.name for ly in viewer.layers if isinstance(ly, kinds) and not exclude(ly)]

    combo = (Select if multiple else ComboBox)(choices=names, label=label, tooltip=tooltip)
    events = (viewer.layers.events.inserted, viewer.layers.events.removed)

    def refresh(*_):
        try:
            combo.reset_choices()
        except RuntimeError:  # the dock was closed and its Qt widget deleted: stop following the viewer
            for e in events:
                e.disconnect(refresh)

    for e in events:
        e.connect(refresh)
    return combo


class PriorControls:
    """The prior choice of the prediction and evaluation docks (:mod:`napari_ppii.prior`): ``none``,
    ``lungs`` (computed from the scan) or ``mask`` (a Labels layer, e.g. a painted mask).  ``container``
    is the magicgui widget to add; ``settings()`` and ``mask()`` read it on the GUI thread."""

    def __init__(self, viewer):
        from magicgui.widgets import ComboBox, Container
        from napari.layers import Labels

        from ..prior import DEFAULT_PRIOR, PRIOR_KINDS

        self.viewer = viewer
        self.kind = ComboBox(
            choices=list(PRIOR_KINDS),
            value=DEFAULT_PRIOR.kind,
            label="Prior",
            tooltip="weight the map by a soft organ prior: none = the raw map; lungs = lung fields "
            "computed from the scan; mask = the Labels layer below (e.g. painted)",
        )
        self.layer = layer_picker(viewer, Labels, label="Prior mask", tooltip="prior 'mask': this Labels layer")
        from ..tta import TTA_KINDS, describe_auto

        self.tta = ComboBox(
            choices=["auto", *TTA_KINDS],
            value="auto",
            label="Test-time aug.",
            tooltip="mirror: the map averaged with the mirrored image's map; mirror_zoom: also both at 1.25x; "
            f"auto: {describe_auto()}",
        )
        self.container = Container(widgets=[self.kind, self.layer, self.tta], labels=True)

    def settings(self):
        from dataclasses import replace

        from ..prior import DEFAULT_PRIOR

        return replace(DEFAULT_PRIOR, kind=self.kind.value)

    def mask(self):
        """The chosen Labels layer's data (a copy) for kind ``mask``, else None; an InputError when missing."""
        if self.kind.value != "mask":
            return None
        name = self.layer.value
        if not name or name not in self.viewer.layers:
            from ..errors import InputError

            raise InputError("prior 'mask' needs a Labels layer (paint one, or open a mask)")
        return np.array(self.viewer.layers[name].data)


def scroll_layout(widget):
    """The dock's content layout inside a vertical scroll area filling ``widget``: a dock taller than the
    screen scrolls instead of stretching the window past it.  Returns the layout to add controls to."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QFrame, QScrollArea, QVBoxLayout, QWidget

    area = QScrollArea(widget)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    inner = QWidget()
    area.setWidget(inner)
    outer = QVBoxLayout(widget)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(area)
    widget.scroll_area = area
    return QVBoxLayout(inner)
