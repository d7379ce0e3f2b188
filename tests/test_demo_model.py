"""The small pretrained CT model shipped in resources/models (scripts/make_demo_model.sh): what the demo
claims of it holds -- it was trained with the bundled slab's slices kept out, and its strongest response in
those 24 slices lies on the readers' nodule."""

import numpy as np
import pytest

from napari_ppii._sample_data import RESOURCES

MODEL = RESOURCES / "models" / "lidc_unet_demo.pt"
pytestmark = pytest.mark.skipif(not MODEL.exists(), reason="no pretrained demo model in resources/models")


def test_the_demo_model_never_trained_on_the_bundled_slab():
    """The slab is series slices 78-101 and the nodule lies on 86-94: a lesion margin of 9 or more keeps
    every slab slice out of the normal training slices."""
    from napari_ppii.predict import Predictor

    cfg = Predictor(MODEL, device="cpu").cfg
    assert cfg.data.train.rstrip("/").endswith("lidc-idri-0001/dicom")
    assert cfg.data.boxes and cfg.data.lesion_margin >= 9
    assert cfg.training.select != "reference"  # nothing labelled chose it


def test_the_demo_models_strongest_response_in_the_unseen_slab_is_on_the_nodule():
    from napari_ppii.io import read_boxes, read_scan
    from napari_ppii.predict import Predictor

    scan = read_scan(RESOURCES / "lidc-idri-0001" / "LIDC-IDRI-0001_slab_fov256.nii.gz")
    boxes = read_boxes(RESOURCES / "lidc-idri-0001" / "LIDC-IDRI-0001_slab_fov256_boxes.csv")
    amap = Predictor(MODEL, device="cpu").predict_scan(scan).mean
    assert amap.shape == scan.shape and np.isfinite(amap).all()
    peak = np.unravel_index(int(np.argmax(amap)), amap.shape)
    assert any(b.contains(peak) for b in boxes), (peak, [(b.lo, b.hi) for b in boxes])
