# SPDX-License-Identifier: BSD-3-Clause
"""The README's screenshots of the four docks, on a radiograph and on a CT, with the shipped models on
scans they never saw (bundled, free to ship).

    .venv/bin/python scripts/screenshots.py [--out docs/images]

One napari window (a virtual display when there is none):

* ``preview.png`` / ``preview_ct.png``: the synthesis preview on an NIH normal / on the LIDC-IDRI-0001 slab;
* ``training.png``: the training dock after a few steps on the NIH normals;
* ``prediction.png``: ``resources/models/nih_unet_demo.pt`` on the bundled NIH radiograph with a nodule;
  ``prediction_ct.png``: ``resources/models/lidc_unet_demo.pt`` on the LIDC-IDRI-0001 slab (full view), at
  the nodule's middle slice -- the map x the default lung prior, the threshold where the map says
  something, detections as the evaluation's candidates;
* ``evaluation.png`` / ``evaluation_ct.png``: the evaluation dock scoring those models on the bundled
  NIH nodule radiographs / the slab, with the floors.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
MODELS = ROOT / "resources" / "models"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "images"))
    ap.add_argument("--skip-training", action="store_true", help="leave training.png as it is")
    args = ap.parse_args(argv)
    from napari_ppii._app import _VirtualDisplay

    with _VirtualDisplay((1600, 1000)):
        return _shots(Path(args.out), args.skip_training)


def _shots(out: Path, skip_training: bool) -> int:
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_ppii import _sample_data
    from napari_ppii._app import _wait_for
    from napari_ppii._widgets.evaluate import EvaluationWidget
    from napari_ppii._widgets.predict import PredictWidget
    from napari_ppii._widgets.preview import PreviewWidget
    from napari_ppii._widgets.training import TrainingWidget

    out.mkdir(parents=True, exist_ok=True)

    def window():
        viewer = napari.Viewer(show=True, title="napari-ppii")
        viewer.window.resize(1500, 950)
        return viewer

    def shot(viewer, name, visible, z=None):
        for ly in viewer.layers:
            ly.visible = visible(ly.name)
        viewer.reset_view()
        if z is not None:
            layer = [ly for ly in viewer.layers if ly.ndim == 3][0]
            viewer.dims.set_point(0, float(layer.data_to_world([z, 0, 0])[0]))
        _wait_for(app, lambda: False, 0.7)
        viewer.screenshot(path=str(out / name), canvas_only=False, flash=False)
        print(out / name)

    # ---- radiographs: the NIH sample
    viewer = window()
    app = QApplication.instance()
    for data, kw, kind in _sample_data.nih_normals() + _sample_data.nih_nodule():
        getattr(viewer, f"add_{kind}")(data, **kw)
    preview = PreviewWidget(viewer)
    dock = viewer.window.add_dock_widget(preview, name="P-PII preview", area="right")
    preview.target_combo.value = "NIH 00000002_000"
    _wait_for(app, lambda: not preview.busy and preview.last_result is not None, 120)
    shot(viewer, "preview.png", lambda n: n.startswith("P-PII") and n != "P-PII variance" or n == "NIH 00000002_000")
    viewer.window.remove_dock_widget(dock)

    if not skip_training:
        trainer = TrainingWidget(viewer, confirm=lambda: True)
        dock = viewer.window.add_dock_widget(trainer, name="Training", area="right")
        trainer.layer_list.value = [n for n in trainer.layer_list.choices if n.startswith("NIH") and "0013751" not in n]
        trainer.use_layers.setChecked(True)
        for key, value in (
            ("data.image_size", 128),
            ("training.steps", 60),
            ("training.val_every", 20),
            ("training.batch_size", 4),
            ("model.base_channels", 8),
            ("training.out_dir", tempfile.mkdtemp(prefix="ppii-shots-")),
        ):
            trainer.set_value(key, value)
        trainer.start()
        _wait_for(app, lambda: not trainer.running and not trainer.timer.isActive(), 900)
        trainer.poll()
        shot(viewer, "training.png", lambda n: n == "NIH 00000002_000")
        viewer.window.remove_dock_widget(dock)

    predictor = PredictWidget(viewer)
    dock = viewer.window.add_dock_widget(predictor, name="Prediction", area="right")
    predictor.checkpoint.setText(str(MODELS / "nih_unet_demo.pt"))
    predictor.image_combo.value = "NIH 00013751_003"
    predictor.truth_combo.value = "NIH 00013751_003 boxes"
    predictor.predict()
    _wait_for(app, lambda: not predictor.busy and "anomaly map" in viewer.layers, 300)
    shot(viewer, "prediction.png", lambda n: "00013751" in n or n in ("anomaly map", "detections"))
    viewer.window.remove_dock_widget(dock)

    evaluation = EvaluationWidget(viewer)
    viewer.window.add_dock_widget(evaluation, name="Evaluation", area="right")
    evaluation.checkpoint.setText(str(MODELS / "nih_unet_demo.pt"))
    evaluation.data.setText(str(_sample_data.RESOURCES.joinpath("nih-cxr", "annotations.csv")))
    evaluation.labels.setText("Nodule,Mass")
    evaluation.n_boot.setValue(100)
    evaluation.run()
    _wait_for(app, lambda: not evaluation.busy and evaluation.evaluation is not None, 600)
    _wait_for(app, lambda: "eval map" in viewer.layers, 300)
    shot(viewer, "evaluation.png", lambda n: n.startswith("eval"))
    viewer.close()

    # ---- CT: the LIDC-IDRI-0001 slab (full field of view: the CT model's grid)
    viewer = window()
    for data, kw, kind in _sample_data.lidc_ct_full_view():
        getattr(viewer, f"add_{kind}")(data, **kw)
    scan_name, boxes_name = "LIDC-IDRI-0001 CT full view", "LIDC-IDRI-0001 full view boxes"
    nodule_z = 12  # the middle of the readers' boxes (slices 8-15 of the slab)
    viewer.dims.set_point(0, float(viewer.layers[scan_name].data_to_world([nodule_z, 0, 0])[0]))
    preview = PreviewWidget(viewer)
    dock = viewer.window.add_dock_widget(preview, name="P-PII preview", area="right")
    preview.target_combo.value = scan_name
    _wait_for(app, lambda: not preview.busy and preview.last_result is not None, 120)
    shot(viewer, "preview_ct.png", lambda n: n.startswith("P-PII") and n != "P-PII variance" or n == boxes_name)
    viewer.window.remove_dock_widget(dock)
    for name in [ly.name for ly in viewer.layers if ly.name.startswith("P-PII")]:
        viewer.layers.remove(name)

    predictor = PredictWidget(viewer)
    dock = viewer.window.add_dock_widget(predictor, name="Prediction", area="right")
    predictor.checkpoint.setText(str(MODELS / "lidc_unet_demo.pt"))
    predictor.image_combo.value = scan_name
    predictor.truth_combo.value = boxes_name
    predictor.predict()
    _wait_for(app, lambda: not predictor.busy and "anomaly map" in viewer.layers, 300)
    shot(viewer, "prediction_ct.png", lambda n: n in (scan_name, boxes_name, "anomaly map", "detections"), z=nodule_z)
    viewer.window.remove_dock_widget(dock)

    evaluation = EvaluationWidget(viewer)
    viewer.window.add_dock_widget(evaluation, name="Evaluation", area="right")
    evaluation.checkpoint.setText(str(MODELS / "lidc_unet_demo.pt"))
    evaluation.data.setText(str(_sample_data.RESOURCES.joinpath("lidc-idri-0001", "LIDC-IDRI-0001_slab_fov256.nii.gz")))
    evaluation.boxes.setText(
        str(_sample_data.RESOURCES.joinpath("lidc-idri-0001", "LIDC-IDRI-0001_slab_fov256_boxes.csv"))
    )
    evaluation.n_boot.setValue(100)
    evaluation.run()
    _wait_for(app, lambda: not evaluation.busy and evaluation.evaluation is not None, 600)
    _wait_for(app, lambda: "eval map" in viewer.layers, 300)
    shot(viewer, "evaluation_ct.png", lambda n: n.startswith("eval"), z=nodule_z)
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
