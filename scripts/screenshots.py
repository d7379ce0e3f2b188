# SPDX-License-Identifier: BSD-3-Clause
"""The README's screenshots of the four widgets, on the bundled NIH sample (free to ship).

    .venv/bin/python scripts/screenshots.py [--out docs/images] [--checkpoint runs/demo_nih_unet/best.pt]

One napari window (a virtual display when there is none): the preview on a normal radiograph, the
training widget after a few steps on the normals, the prediction widget with a radiograph model (default:
the NIH experiment of ``MODEL=nih bash scripts/make_demo_model.sh``, not shipped) over the radiograph with a
nodule, and the evaluation widget scoring that model on the bundled test rows.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "images"))
    ap.add_argument("--checkpoint", default=str(ROOT / "runs" / "demo_nih_unet" / "best.pt"))
    args = ap.parse_args(argv)
    from napari_ppii._app import _VirtualDisplay

    with _VirtualDisplay((1600, 1000)):
        return _shots(Path(args.out), Path(args.checkpoint))


def _shots(out: Path, checkpoint: Path) -> int:
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_ppii import _sample_data
    from napari_ppii._app import _wait_for
    from napari_ppii._widgets.evaluate import EvaluationWidget
    from napari_ppii._widgets.predict import PredictWidget
    from napari_ppii._widgets.preview import PreviewWidget
    from napari_ppii._widgets.training import TrainingWidget

    out.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(show=True, title="napari-ppii")
    viewer.window.resize(1500, 950)
    app = QApplication.instance()
    for data, kw, kind in _sample_data.nih_normals() + _sample_data.nih_nodule():
        getattr(viewer, f"add_{kind}")(data, **kw)

    def shot(name, visible):
        for ly in viewer.layers:
            ly.visible = visible(ly.name)
        viewer.reset_view()
        _wait_for(app, lambda: False, 0.5)
        viewer.screenshot(path=str(out / name), canvas_only=False, flash=False)
        print(out / name)

    preview = PreviewWidget(viewer)
    dock = viewer.window.add_dock_widget(preview, name="P-PII preview", area="right")
    preview.target_combo.value = "NIH 00000002_000"
    _wait_for(app, lambda: not preview.busy and preview.last_result is not None, 60)
    shot("preview.png", lambda n: n.startswith("P-PII") and n != "P-PII variance" or n == "NIH 00000002_000")
    viewer.window.remove_dock_widget(dock)

    trainer = TrainingWidget(viewer, confirm=lambda: True)
    dock = viewer.window.add_dock_widget(trainer, name="Training", area="right")
    trainer.layer_list.value = [n for n in trainer.layer_list.choices if "0013751" not in n]
    trainer.use_layers.setChecked(True)
    for key, value in (("data.image_size", 128), ("training.steps", 60), ("training.val_every", 20),
                       ("training.batch_size", 4), ("model.base_channels", 8),
                       ("training.out_dir", tempfile.mkdtemp(prefix="ppii-shots-"))):
        trainer.set_value(key, value)
    trainer.start()
    _wait_for(app, lambda: not trainer.running and not trainer.timer.isActive(), 600)
    trainer.poll()
    shot("training.png", lambda n: n == "NIH 00000002_000")
    viewer.window.remove_dock_widget(dock)

    if not checkpoint.exists():
        print(f"no {checkpoint}: prediction and evaluation screenshots skipped")
        return 0
    predictor = PredictWidget(viewer)
    dock = viewer.window.add_dock_widget(predictor, name="Prediction", area="right")
    predictor.checkpoint.setText(str(checkpoint))
    predictor.image_combo.value = "NIH 00013751_003"
    predictor.truth_combo.value = "NIH 00013751_003 boxes"
    predictor.predict()
    _wait_for(app, lambda: not predictor.busy and "anomaly map" in viewer.layers, 120)
    shot("prediction.png", lambda n: "00013751" in n or n in ("anomaly map", "detections"))
    viewer.window.remove_dock_widget(dock)

    evaluation = EvaluationWidget(viewer)
    viewer.window.add_dock_widget(evaluation, name="Evaluation", area="right")
    evaluation.checkpoint.setText(str(checkpoint))
    evaluation.data.setText(str(_sample_data.RESOURCES.joinpath("nih-cxr", "annotations.csv")))
    evaluation.n_boot.setValue(100)
    evaluation.run()
    _wait_for(app, lambda: not evaluation.busy and evaluation.evaluation is not None, 300)
    _wait_for(app, lambda: "eval map" in viewer.layers, 120)
    shot("evaluation.png", lambda n: n.startswith("eval"))
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
