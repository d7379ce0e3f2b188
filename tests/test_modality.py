# SPDX-License-Identifier: BSD-3-Clause
"""Checkpoints record what they were trained on (modality, training data, input settings); prediction
and evaluation warn when a scan is of another modality (issue 22 item 9)."""

import numpy as np
import pytest

from conftest import RESOURCES, smooth_image
from napari_ppii.checkpoint import load_checkpoint
from napari_ppii.cli import main
from napari_ppii.config import PPIIConfig
from napari_ppii.io import Scan, write_array
from napari_ppii.predict import Predictor

TINY = [
    "model.base_channels=4",
    "model.levels=3",
    "data.image_size=32",
    "training.batch_size=4",
    "data.val_samples=4",
    "training.warmup_steps=2",
    "synthesis.placement=anywhere",
    "training.steps=2",
    "training.val_every=2",
]


@pytest.fixture(scope="module")
def ct_checkpoint(tmp_path_factory):
    """A tiny model trained on a CT volume file (modality from the scan)."""
    from napari_ppii.training import train

    tmp = tmp_path_factory.mktemp("ct")
    vol = (smooth_image((12, 32, 32), seed=1) * 1400 - 1000).astype(np.float32)
    path = write_array(vol, tmp / "ct", like=Scan(vol, (2.5, 1, 1), (0, 0, 0), np.eye(3), "CT"))
    cfg = PPIIConfig().with_overrides(
        TINY + [f"training.out_dir={tmp / 'run'}", f"data.train={path}", "data.val_fraction=0.2"]
    )
    train(cfg)
    return tmp / "run" / "last.pt", path


def test_checkpoint_records_modality_and_an_absolute_training_path(ct_checkpoint, tmp_path, monkeypatch):
    from napari_ppii.training import train

    ck = load_checkpoint(ct_checkpoint[0])
    assert ck["inputs"]["modality"] == "CT"
    assert ck["inputs"]["train_data"] == str(ct_checkpoint[1].resolve())
    assert ck["inputs"]["image_size"] == 32 and ck["inputs"]["preprocess"]["window"] == "lung"
    # radiographs from a folder, given by a relative path: recorded absolute
    from PIL import Image

    (tmp_path / "cxr").mkdir()
    for s in range(4):
        Image.fromarray((smooth_image((40, 40), seed=s) * 255).astype(np.uint8)).save(tmp_path / "cxr" / f"{s}.png")
    monkeypatch.chdir(tmp_path)
    cfg = PPIIConfig().with_overrides(TINY + ["training.out_dir=run", "data.train=cxr", "data.val_fraction=0.25"])
    train(cfg)
    inputs = load_checkpoint(tmp_path / "run" / "last.pt")["inputs"]
    assert inputs["modality"] == "radiograph" and inputs["train_data"] == str((tmp_path / "cxr").resolve())
    # images handed over directly (the viewer's layers) say what data.modality says
    cfg = PPIIConfig().with_overrides(TINY + ["training.out_dir=run2", "data.modality=CT"])
    train(cfg, images=np.stack([smooth_image((32, 32), seed=s) for s in range(6)]))
    assert load_checkpoint(tmp_path / "run2" / "last.pt")["inputs"]["modality"] == "CT"


def test_a_ct_model_on_a_radiograph_warns_in_predict_and_evaluate(ct_checkpoint, tmp_path, capsys):
    ck, ct_path = ct_checkpoint
    pred = Predictor(ck)
    radiograph = Scan(smooth_image((48, 48), seed=5), (0.5, 0.5), (0, 0), np.eye(2), "DX")
    amap = pred.predict_scan(radiograph)
    assert "trained on CT slices" in amap.warning and "radiograph" in amap.warning
    from napari_ppii.io import read_scan

    assert pred.predict_scan(read_scan(ct_path)).warning is None  # same modality: no warning
    # ppii predict: the warning in the index and on stderr, the map still written
    png = tmp_path / "cxr.png"
    from PIL import Image

    Image.fromarray((smooth_image((48, 48), seed=5) * 255).astype(np.uint8)).save(png)
    assert (
        main(["predict", str(png), "--checkpoint", str(ck), "--out", str(tmp_path / "p"), "--prior", "none", "--quiet"])
        == 0
    )
    err = capsys.readouterr().err
    assert "warning" in err and "trained on CT slices" in err
    assert "trained on CT slices" in (tmp_path / "p" / "index.csv").read_text()
    # evaluate: metrics["warnings"] and the summary line
    from napari_ppii.evaluation import EvalOptions, evaluate
    from napari_ppii.evaluation.evaluate import TestItem
    from napari_ppii.evaluation.summary import summarise
    from napari_ppii.io.boxes import Box

    item = TestItem("cxr", png, [Box((10, 10), (20, 20), label="nodule")])
    ev = evaluate(pred, [item], EvalOptions(n_boot=10), floors=False)
    assert any("trained on CT slices" in w for w in ev.metrics["warnings"])
    assert "WARNING: this model was trained on CT slices" in summarise(ev.metrics)


def test_shipped_models_say_their_modality():
    models = RESOURCES / "models"
    assert Predictor(models / "lidc_unet_demo.pt").modality == "CT"
    assert Predictor(models / "nih_unet_demo.pt").modality == "radiograph"
