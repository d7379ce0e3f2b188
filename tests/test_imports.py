"""Dependency direction: the core loads no Qt, and inference loads no part of the trainer."""

import subprocess
import sys



def _loaded_after(imports: str) -> set[str]:
    code = f"import sys; {imports}; print('\\n'.join(sorted(sys.modules)))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return set(r.stdout.split())


CORE = ["napari_ppii.io", "napari_ppii.synthesis", "napari_ppii.models", "napari_ppii.training",
        "napari_ppii.evaluation", "napari_ppii.evaluation.report", "napari_ppii.predict", "napari_ppii.preview",
        "napari_ppii.anatomy", "napari_ppii.realism", "napari_ppii.cli", "napari_ppii.training.process"]


def test_core_modules_load_no_qt():
    mods = _loaded_after("; ".join(f"import {m}" for m in CORE))
    assert set(CORE) <= mods
    qt = sorted(m for m in mods if m.split(".")[0] in ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari",
                                                       "magicgui", "superqt", "vispy"))
    assert not qt, qt


def test_inference_loads_no_training_module():
    mods = _loaded_after("import napari_ppii.predict; from napari_ppii.predict import Predictor, predict_batch")
    assert not [m for m in mods if m.startswith("napari_ppii.training")]
