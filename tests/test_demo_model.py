"""The small pretrained CT model shipped in resources/models (scripts/make_demo_model.sh): what the demo
and the README say of it holds -- it was trained with the bundled slab's slices kept out, and on those 24
slices it still scores as measured when it was shipped."""

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


def test_the_demo_model_still_scores_the_unseen_slab_as_measured():
    """The shipped model on the 24 slab slices it never saw, through the same evaluation code as
    ``scripts/demo.sh``.  Measured when it was shipped (benchmarks/README.md): pixel AUROC inside the lungs
    0.776 against at most 0.562 for every non-learned floor, a top-10 candidate on the nodule in 8 of its
    9 slices -- but the strongest detection of a slice never on it (vessels score higher).  This guards that
    the model file and the whole pre-processing path still reproduce that, with a margin; it fails when a
    change to reading, windowing or resizing CT breaks the shipped model."""
    from napari_ppii.evaluation import EvalOptions, evaluate, load_volume_test_set
    from napari_ppii.predict import Predictor

    slab = RESOURCES / "lidc-idri-0001"
    items = load_volume_test_set(slab / "LIDC-IDRI-0001_slab_fov256.nii.gz", slab / "LIDC-IDRI-0001_slab_fov256_boxes.csv")
    ev = evaluate(Predictor(MODEL, device="cpu"), items, EvalOptions(n_boot=20), floors=["random", "lung_field", "blob"])
    per_slice = ev.metrics["per_slice"]
    ranks = per_slice["first_hit"]
    assert len(ranks) == 9  # the nodule's slices, 8-16
    assert sum(1 <= r <= 10 for r in ranks.values()) >= 6
    floors = ev.metrics["floors"]
    assert per_slice["pixel_auroc_lung"] > 0.7
    assert all(per_slice["pixel_auroc_lung"] > f["pixel_auroc_lung"] + 0.1 for f in floors.values())
