# SPDX-License-Identifier: BSD-3-Clause
"""Live P-PII preview: pick a scan layer and the generator's parameters; every change recomputes the
synthetic sample in a background worker and updates the preview layers in place.

Only wiring: the work is :class:`napari_ppii.preview.PreviewEngine` (Qt-free) on the core's
pre-processing and synthesis; its caches are keyed on a token per layer and data version, renewed on
the layer's data event (a replaced or edited layer never shows an old result).
Stale results are dropped (a generation counter), at most one worker runs, and the newest request runs
next.  Bad input becomes a napari notification; the viewer and the user's layers stay as they were.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QFileDialog,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QWidget,
)
from superqt import QCollapsible

from .._layers import LAYER_PREFIX, is_own_layer, layer_to_scan, set_boxes_layer, write_image_data
from ._common import button_row, report_error, scroll_layout
from ._config import FormsMixin
from ..config import PPIIConfig
from ..errors import InputError
from ..preview import PreviewEngine, PreviewRequest, PreviewResult, realism_text

PREFIX = LAYER_PREFIX
SAME = "(same image)"
NONE = "(none)"
MASK_LAYER = f"{PREFIX} placement mask"

#: The preview's controls: configuration keys, generated from the fields (``_config.ConfigForm``).
MAIN_FIELDS = (
    "synthesis.method",
    "seed",
    "synthesis.patch_size",
    "synthesis.n_anomalies",
    "synthesis.n_raters",
    "synthesis.gradient_scale",
    "synthesis.alpha",
    "synthesis.mixed_gradients",
    "synthesis.pairwise",
    "preprocess.window",
    "preprocess.equalise",
)
#: Synthesis fields of the "Anatomy and realism" group.
REALISM_FIELDS = (
    "placement",
    "placement_min_inside",
    "placement_margin_share",
    "placement_margin_min_inside",
    "source_in_mask",
    "mask_blend",
    "patch_distribution",
    "patch_gamma",
    "source_rescale",
    "gradient_scale_distribution",
    "source_smoothing",
    "clip",
    "label_mode",
    "label_scale",
    "label_k",
    "label_x0",
    "nsa_patches",
    "label_median_radius",
)


def _advanced_fields() -> tuple[str, ...]:
    """Every other synthesis and pre-processing field (none is left without a control)."""
    from ._config import leaf_keys

    shown = set(MAIN_FIELDS) | {f"synthesis.{n}" for n in REALISM_FIELDS}
    return tuple(k for k in leaf_keys() if k.startswith(("synthesis.", "preprocess.")) and k not in shown)


ADVANCED_FIELDS = _advanced_fields()


class PreviewWidget(FormsMixin, QWidget):
    """Dock widget: target/source layers, method, parameters, seed; live preview layers; export."""

    preview_updated = Signal(object)  # PreviewResult, after the layers changed
    preview_failed = Signal(str)

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self._generation = 0
        self._closed = False  # set by closeEvent: the widget then follows the viewer no more
        self._worker = None
        self._pending: PreviewRequest | None = None
        self.last_result: PreviewResult | None = None
        self.last_error: str | None = None
        self._deferred: dict[str, Any] = {}  # data for hidden preview layers, applied when shown
        self._buffers: dict[str, np.ndarray] = {}  # float32 arrays the preview layers display (updated in place)
        self._mask_for: str | None = None  # the target layer the placement-mask Labels layer belongs to
        self.engine = PreviewEngine()
        from ._config import shared_config

        self.shared = shared_config(napari_viewer)
        self._tokens: dict[int, tuple[Any, int]] = {}  # id(layer) -> (layer, data version)
        self._building = True
        self._build()
        self._building = False
        ev = self.viewer.layers.events
        ev.inserted.connect(self._refresh_layer_choices)
        ev.removed.connect(self._layer_removed)
        self.viewer.dims.events.current_step.connect(self._on_slice_change)
        self.request_update()

    # ------------------------------------------------------------------ data tokens
    def _token(self, layer):
        """The token of ``layer``'s current data: cached work is keyed on it."""
        ent = self._tokens.get(id(layer))
        if ent is None or ent[0] is not layer:
            ent = (layer, 0)
            self._tokens[id(layer)] = ent
            layer.events.data.connect(lambda *_, ly=layer: self._data_changed(ly))
        return (id(layer), ent[1])

    def _data_changed(self, layer):
        ent = self._tokens.get(id(layer))
        if ent is not None and ent[0] is layer:
            self.engine.forget((id(layer), ent[1]))
            self._tokens[id(layer)] = (layer, ent[1] + 1)
            if layer.name in (self.target_combo.value, self.source_combo.value):
                self.request_update()  # the scan changed under the preview

    def _layer_removed(self, event):
        layer = event.value
        ent = self._tokens.pop(id(layer), None)
        if ent is not None and ent[0] is layer:
            self.engine.forget((id(layer), ent[1]))

    def _scan(self, layer):
        """The layer's Scan (validated once per data version: no finite check of a volume per change)."""
        return self.engine.cached("scan", self._token(layer), None, lambda: layer_to_scan(layer))

    # ------------------------------------------------------------------ UI
    def _build(self):
        from napari.layers import Image, Shapes

        from ._common import layer_picker
        from ._config import ConfigForm

        outer = scroll_layout(self)
        own = is_own_layer  # the docks' own layers (preview, batch, maps) are no scans to preview
        self.target_combo = layer_picker(self.viewer, Image, exclude=own, label="Target")
        self.source_combo = layer_picker(self.viewer, Image, extra=(SAME,), exclude=own, label="Source")
        self.reference_combo = layer_picker(
            self.viewer,
            Shapes,
            extra=(NONE,),
            exclude=own,
            label="Reference lesions",
            tooltip="a Shapes layer of real lesion boxes: the realism figures compare with them "
            "(reference lesions for tuning come from NIH or LIDC, never from JSRT test rows)",
        )
        from magicgui.widgets import Container

        pickers = Container(widgets=[self.target_combo, self.source_combo], labels=True)
        outer.addWidget(pickers.native)
        # the generated controls of the viewer's shared configuration: what the preview shows is what trains
        self.form = ConfigForm(self.shared, MAIN_FIELDS, on_error=self._notify)
        self.new_button = QPushButton("New sample")
        outer.addWidget(self.form.native)
        outer.addWidget(self.new_button)

        self.realism_box = QCollapsible("Anatomy and realism")
        self.realism_form = ConfigForm(self.shared, [f"synthesis.{n}" for n in REALISM_FIELDS], on_error=self._notify)
        self.realism_box.addWidget(self.realism_form.native)
        self.realism_box.addWidget(Container(widgets=[self.reference_combo], labels=True).native)
        self.lungs_button = QPushButton("Lung mask -> placement mask layer")
        self.lungs_button.setToolTip(
            "compute the lung fields of the target into the editable placement-mask Labels layer"
        )
        self.realism_box.addWidget(self.lungs_button)
        outer.addWidget(self.realism_box)
        self.realism_label = QLabel("")
        self.realism_label.setWordWrap(True)
        self.realism_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.realism_label.setMinimumHeight(self.realism_label.fontMetrics().height() * 2 + 4)

        self.advanced = QCollapsible("Advanced")
        self.advanced_form = ConfigForm(self.shared, ADVANCED_FIELDS, on_error=self._notify)
        self.advanced.addWidget(self.advanced_form.native)
        self.forms = [self.form, self.realism_form, self.advanced_form]
        self.show_applicable_controls()
        outer.addWidget(self.advanced)

        self.volume_button, self.next_button, self.export_button = button_row(
            outer, "Whole volume", "Next anomaly", "Export..."
        )
        self.next_button.setToolTip("whole-volume sample: go to the slice of the next anomaly")
        self.next_button.setEnabled(False)
        self.anomaly_slices: list[int] = []  # the centre slice of each anomaly of a whole-volume sample
        self.progress = QProgressBar()
        self.progress.setRange(0, 3)
        self.progress.setVisible(False)
        outer.addWidget(self.progress)
        # One line that never resizes the dock: a word-wrapped label re-lays out the whole dock on every
        # preview (its text changes each time), which costs the preview's frame time.  Errors also go to
        # napari notifications, and the full text is the tooltip.
        self.status = QLabel("")
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        outer.addWidget(self.status)
        outer.addWidget(self.realism_label)
        outer.addStretch(1)

        for picker in (self.target_combo, self.source_combo, self.reference_combo):
            picker.changed.connect(self._picker_changed)
        self.shared.changed.connect(self._config_changed)
        self.lungs_button.clicked.connect(self.reset_mask_to_lungs)
        self.new_button.clicked.connect(self.new_sample)
        self.volume_button.clicked.connect(self.run_whole_volume)
        self.next_button.clicked.connect(self.goto_next_anomaly)
        self.export_button.clicked.connect(self._export_clicked)

    def new_sample(self):
        self.shared.update({"seed": (self.shared.config.seed + 1) % (2**31 - 1)})

    # ------------------------------------------------------------------ state
    def _picker_changed(self, *_):
        if not self._building:
            self.request_update()

    def show_applicable_controls(self, cfg: PPIIConfig | None = None) -> None:
        """Only the chosen method's parameters (and only those its modes use, e.g. the label scale of the
        scaled label) have visible controls: a control that changes nothing is not shown."""
        from ..synthesis import applicable

        cfg = cfg or self.shared.config
        for form in self.forms:
            for key, ctl in form.controls.items():
                ctl.widget.visible = applicable(key, cfg)

    def _config_changed(self, cfg, keys):
        if self._closed:
            return
        if "synthesis.method" in keys or "synthesis.label_mode" in keys:
            self.show_applicable_controls(cfg)
        if "preprocess.window" in keys:
            self.apply_window_to_target()
        if any(k == "seed" or k.startswith(("synthesis.", "preprocess.")) for k in keys):
            self.request_update()

    def _refresh_layer_choices(self, *_):
        if not self._building and self.last_result is None:
            self.request_update()

    def config(self) -> PPIIConfig:
        """The viewer's shared configuration (validated; the preview renders exactly this)."""
        return self.shared.config

    def set_config(self, cfg: PPIIConfig) -> None:
        """Make ``cfg`` the shared configuration: every widget shows it, the preview redraws once."""
        self.shared.set(cfg)

    def _layer(self, name):
        ly = [x for x in self.viewer.layers if x.name == name]
        return ly[0] if ly else None

    def _current_slice(self, layer) -> int | None:
        if layer.ndim != 3:
            return None
        data_pt = layer.world_to_data(self.viewer.dims.point)
        return int(np.clip(round(float(data_pt[0])), 0, layer.data.shape[0] - 1))

    def _on_slice_change(self, *_):
        target = self._layer(self.target_combo.value)
        if (
            target is not None
            and target.ndim == 3
            and self.last_result is not None
            and self.last_result.slice_index is not None
        ):
            if self._current_slice(target) != self.last_result.slice_index:
                self.request_update()

    # ------------------------------------------------------------------ work
    def _set_status(self, text: str) -> None:
        """The one-line status, with the full text as its tooltip."""
        self.status.setText(text)
        self.status.setToolTip(text)

    def _notify(self, msg: str) -> None:

        report_error(self, msg, self.status)
        self.preview_failed.emit(msg)

    def apply_window_to_target(self, *_):
        """The CT window preset also sets the target CT layer's display window."""
        from ..preprocess import is_ct, window_limits

        layer = self._layer(self.target_combo.value)
        if layer is None:
            return
        try:
            scan = layer_to_scan(layer)
            window = self.shared.config.preprocess.window
            if is_ct(scan) and window is not None:
                layer.contrast_limits = window_limits(window, scan)
        except InputError as exc:
            self._notify(str(exc))

    def _make_request(self, whole_volume: bool = False) -> PreviewRequest | None:
        name = self.target_combo.value
        layer = self._layer(name)
        if layer is None:
            self._set_status("Open a scan (File > Open, or File > Open Sample > napari-ppii) to preview.")
            return None
        try:
            cfg = self.config()
            target = self._scan(layer)
            src_layer = None if self.source_combo.value == SAME else self._layer(self.source_combo.value)
            source = self._scan(src_layer) if src_layer is not None and src_layer is not layer else None
        except InputError as exc:
            self._notify(str(exc))
            return None
        mask = None
        mlayer = self._layer(MASK_LAYER)
        if cfg.synthesis.placement != "anywhere" and mlayer is not None and self._mask_for == layer.name:
            if tuple(mlayer.data.shape) == tuple(layer.data.shape[: target.ndim]):
                mask = mlayer.data  # as it is: the engine thresholds the previewed slice only
        refs = None
        ref_layer = self._layer(self.reference_combo.value)
        if ref_layer is not None:
            from .._layers import shapes_to_boxes

            refs = shapes_to_boxes(ref_layer, layer)
        self._generation += 1
        key = (self._token(layer), None if source is None else self._token(src_layer))
        return PreviewRequest(
            self._generation, target, source, cfg, None if whole_volume else self._current_slice(layer), key, mask, refs
        )

    def reset_mask_to_lungs(self):
        """Compute the target's lung fields into the placement-mask Labels layer (editable)."""
        from ..anatomy import lung_mask

        layer = self._layer(self.target_combo.value)
        if layer is None:
            return
        try:
            m = lung_mask(layer_to_scan(layer))
        except InputError as exc:
            self._notify(str(exc))
            return
        self._show_mask(layer, m)
        self.request_update()

    def _show_mask(self, target_layer, mask) -> None:
        """The placement mask as a Labels layer over the target (painting it re-runs the preview)."""
        data = np.asarray(mask).astype(np.uint8)
        mlayer = self._layer(MASK_LAYER)
        self._mask_for = target_layer.name
        geo = {"scale": tuple(target_layer.scale), "translate": tuple(target_layer.translate)}
        if mlayer is not None and tuple(mlayer.data.shape) == data.shape:
            with mlayer.events.data.blocker():
                mlayer.data[...] = data
            mlayer.metadata["ppii_mask_for"] = target_layer.name
            mlayer.refresh()
            return
        if mlayer is not None:
            self.viewer.layers.remove(mlayer)
        new = self.viewer.add_labels(
            data, name=MASK_LAYER, opacity=0.25, metadata={"ppii_mask_for": target_layer.name}, **geo
        )
        for ev in ("paint", "data"):
            if hasattr(new.events, ev):
                getattr(new.events, ev).connect(self.request_update)

    def request_update(self, *_):
        """Schedule a recompute with the current settings (coalesced; stale results are dropped)."""
        if self._building or self._closed:
            return
        req = self._make_request()
        if req is None:
            return
        self._pending = req
        if self._worker is None:
            self._start_next()

    def _start_next(self):
        from ._common import launch

        req, self._pending = self._pending, None
        if req is None:
            return
        self._worker = launch(
            self.engine.compute, req, returned=self._on_result, errored=self._on_error, finished=self._on_finished
        )

    def _on_finished(self):
        self._worker = None
        if self._pending is not None:
            self._start_next()

    def _on_error(self, exc):
        if isinstance(exc, InputError):
            self._notify(str(exc))
        else:
            self._notify(f"preview failed: {type(exc).__name__}: {exc}")

    @property
    def busy(self) -> bool:
        return self._worker is not None or self._pending is not None

    def closeEvent(self, event):
        self._closed = True
        self._pending = None
        super().closeEvent(event)

    def _on_result(self, res: PreviewResult):
        if self._closed:
            return
        if res.generation != self._generation:
            return  # a newer request exists: drop this stale result
        self._show(res)

    def _show(self, res: PreviewResult):
        if self._closed:
            return
        r = res.result
        geo = {"scale": tuple(res.target.spacing), "translate": tuple(res.target.origin)}
        created = False
        specs = [
            ("image", r.image, {"colormap": "gray", "contrast_limits": (0.0, 1.0)}),
            (
                "label",
                r.label,
                {"colormap": "inferno", "blending": "additive", "opacity": 0.7, "contrast_limits": (0.0, 1.0)},
            ),
            (
                "variance",
                r.variance,
                {
                    "colormap": "viridis",
                    "blending": "additive",
                    "opacity": 0.6,
                    "visible": False,
                    "contrast_limits": (0.0, max(float(np.max(r.variance)), 1e-6)),
                },
            ),
        ]
        for key, data, kw in specs:
            name = f"{PREFIX} {key}"
            layer = self._layer(name)
            if layer is not None and layer.ndim == data.ndim:
                # in place; geometry and limits only when they changed (each set re-computes the extent)
                if tuple(layer.scale) != geo["scale"] or tuple(layer.translate) != geo["translate"]:
                    layer.scale, layer.translate = geo["scale"], geo["translate"]
                if not layer.visible:  # a hidden layer gets its data when it is shown
                    self._deferred[name] = data
                    continue
                self._deferred.pop(name, None)
                write_image_data(layer, data, self._buffers)
                if key == "variance" and tuple(layer.contrast_limits) != kw["contrast_limits"]:
                    layer.contrast_limits = kw["contrast_limits"]
            else:
                if layer is not None:
                    self.viewer.layers.remove(layer)
                self._deferred.pop(name, None)
                new = self.viewer.add_image(np.array(data, dtype=np.float32), name=name, **geo, **kw)
                created = True
                self._buffers[name] = new.data
                new.events.visible.connect(lambda e, n=name: self._apply_deferred(n))
        set_boxes_layer(self.viewer, f"{PREFIX} boxes", r.boxes, r.image.ndim, geo, edge_color="#00ff88", quiet=True)
        if created:
            self._keep_user_annotations_on_top()
        target_layer = self._layer(self.target_combo.value)
        if (
            res.mask is not None
            and target_layer is not None
            and (self._layer(MASK_LAYER) is None or self._mask_for != target_layer.name)
        ):
            if tuple(np.shape(res.mask)) == tuple(target_layer.data.shape[: np.ndim(res.mask)]):
                self._show_mask(target_layer, res.mask)
        self.realism_label.setText(realism_text(res.realism))
        self.last_result = res
        self.last_error = None
        n = len(r.boxes)
        where = f" (slice {res.slice_index})" if res.slice_index is not None else ""
        volume = res.slice_index is None and r.image.ndim == 3
        self.anomaly_slices = sorted(int(round((b.lo[0] + b.hi[0]) / 2)) for b in r.boxes) if volume else []
        self.next_button.setEnabled(bool(self.anomaly_slices))
        if volume and r.boxes:
            spans = ", ".join(
                f"{int(b.lo[0])}-{int(b.hi[0])}" if int(b.lo[0]) != int(b.hi[0]) else f"{int(b.lo[0])}"
                for b in sorted(r.boxes, key=lambda b: b.lo[0])
            )
            where = f" on slices {spans} (Next anomaly: go there)"
        self._set_status(
            f"{res.config.synthesis.method}: {n} anomal{'y' if n == 1 else 'ies'}{where} in {res.seconds * 1e3:.0f} ms"
        )
        self.preview_updated.emit(res)

    def _keep_user_annotations_on_top(self) -> None:
        """The user's boxes, points and labels stay visible above the (opaque) preview image layers."""
        from napari.layers import Labels, Points, Shapes

        user = [
            ly
            for ly in self.viewer.layers
            if isinstance(ly, (Shapes, Points, Labels)) and not ly.name.startswith(PREFIX) and ly.name != MASK_LAYER
        ]
        for ly in user:
            self.viewer.layers.move(self.viewer.layers.index(ly), len(self.viewer.layers))

    def _apply_deferred(self, name):
        layer = self._layer(name)
        if layer is not None and layer.visible and name in self._deferred:
            data = self._deferred.pop(name)
            write_image_data(layer, data, self._buffers)
            if name.endswith("variance"):
                layer.contrast_limits = (0.0, max(float(np.max(data)), 1e-6))

    # ------------------------------------------------------------------ whole volume, export
    def goto_next_anomaly(self) -> int | None:
        """Move the viewer to the next anomaly's centre slice (after the one in view, wrapping round);
        returns that slice index."""
        layer = self._layer(f"{PREFIX} image")
        if not self.anomaly_slices or layer is None or layer.ndim != 3:
            return None
        here = int(round(float(layer.world_to_data(self.viewer.dims.point)[0])))
        z = next((s for s in self.anomaly_slices if s > here), self.anomaly_slices[0])
        world = np.asarray(layer.data_to_world([z, 0, 0]))
        self.viewer.dims.set_point(0, float(world[0]))
        return z

    def run_whole_volume(self):
        from ._common import launch

        req = self._make_request(whole_volume=True)
        if req is None:
            return
        if req.target.ndim != 3:
            self._notify("the target is a 2D image: the preview already covers all of it")
            return

        def job():
            yield 1
            res = self.engine.compute(req)
            yield 3
            return res

        self.progress.setVisible(True)
        self.progress.setValue(0)
        self._volume_worker = launch(
            job,
            yielded=self.progress.setValue,
            returned=self._show,
            errored=self._on_error,
            finished=lambda: self.progress.setVisible(False),
        )

    def export(self, folder) -> dict | None:
        """Write the shown sample like ``ppii synthesize`` does; returns the record."""
        from ..synthesis import make_synthesizer
        from ..workflows import export_sample

        res = self.last_result
        if res is None:
            self._notify("nothing to export yet: no preview has been computed")
            return None
        resolved = make_synthesizer(res.config.synthesis).config.model_dump(mode="json")
        return export_sample(
            folder,
            res.target,
            res.result,
            res.config,
            resolved=resolved,
            command="napari-preview",
            input=self.target_combo.value or "",
            slice_index=res.slice_index,
        )

    def _export_clicked(self):
        folder = QFileDialog.getExistingDirectory(self, "Export the synthetic sample to")
        if folder:
            try:
                self.export(folder)
                self._set_status(f"exported to {folder}")
            except (InputError, OSError) as exc:
                self._notify(f"export failed: {exc}")
