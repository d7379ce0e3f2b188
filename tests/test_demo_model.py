# SPDX-License-Identifier: BSD-3-Clause
"""The pretrained models shipped in resources/models (scripts/make_demo_model.sh): what the demo and the
README say of them holds -- they never trained on the scans the demo scores them on, and on those scans
they still score as measured when they were shipped."""

import pytest

from napari_ppii._sample_data import RESOURCES

CT = RESOURCES / "models" / "lidc_unet_demo.pt"
CXR = RESOURCES / "models" / "nih_unet_demo.pt"
#: LIDC-IDRI-0001 series slices of the bundled slab, and LIDC-IDRI-0002's nodule slices (its README)
SLAB = set(range(78, 102))
NODULE_0002 = set(range(171, 199))
BUNDLED_NODULES = {"00013751_003.png", "00020774_000.png"}


@pytest.mark.skipif(not CT.exists(), reason="no pretrained CT model in resources/models")
def test_the_ct_model_never_trained_on_the_slab_or_the_second_patients_nodule():
    from napari_ppii.checkpoint import load_checkpoint

    ck = load_checkpoint(CT)
    prov = ck["provenance"]
    by = {s["series"].rstrip("/").split("/")[-2]: s for s in prov["sources"]}
    assert set(by) == {"lidc-idri-0001", "lidc-idri-0002"}
    assert not SLAB & set(by["lidc-idri-0001"]["slices"])
    assert not NODULE_0002 & set(by["lidc-idri-0002"]["slices"])
    assert sum(s["n_slices"] for s in prov["sources"]) == len(by["lidc-idri-0001"]["slices"]) + len(
        by["lidc-idri-0002"]["slices"]
    )
    assert ck["config"]["training"]["select"] != "reference"  # nothing labelled chose it
    assert prov["step"] == ck["step"]


@pytest.mark.skipif(not CXR.exists(), reason="no pretrained radiograph model in resources/models")
def test_the_radiograph_model_never_trained_on_the_bundled_nodules():
    from napari_ppii.checkpoint import load_checkpoint, load_members
    from napari_ppii.config import PPIIConfig

    ck = load_checkpoint(CXR)
    prov = ck["provenance"]
    assert len(prov["train_images"]) >= 60 and not BUNDLED_NODULES & set(prov["train_images"])
    # an ensemble of two seeds of one configuration, each chosen on the NIH boxes without the bundled radiographs
    members = load_members(CXR)  # each member a file of its own beside CXR, under the size of one model
    assert [m["config"]["seed"] for m in members] == [p["seed"] for p in prov["members"]] == [0, 1]
    assert [m["step"] for m in members] == [p["step"] for p in prov["members"]]
    same = ("preprocess", "synthesis", "model", "data")  # what the model learns from: one configuration
    first = PPIIConfig.from_dict(members[0]["config"]).to_dict()
    for m in members:
        assert m["config"]["training"]["select"] in ("reference", "val_dice", "heldout")
        cfg = PPIIConfig.from_dict(m["config"]).to_dict()
        assert {k: cfg[k] for k in same} == {k: first[k] for k in same}


@pytest.mark.skipif(not CT.exists(), reason="no pretrained CT model in resources/models")
def test_the_ct_model_still_scores_the_unseen_slab_as_measured():
    """The shipped model on the 24 slab slices it never saw, through the same evaluation code and default
    prior as ``scripts/demo.sh``; the figures measured when it was shipped are in benchmarks/README.md.  This
    guards, with a margin, that the model file and the whole pre-processing path still reproduce them."""
    from napari_ppii.evaluation import EvalOptions, evaluate, load_volume_test_set
    from napari_ppii.predict import Predictor
    from napari_ppii.prior import DEFAULT_PRIOR

    slab = RESOURCES / "lidc-idri-0001"
    items = load_volume_test_set(
        slab / "LIDC-IDRI-0001_slab_fov256.nii.gz", slab / "LIDC-IDRI-0001_slab_fov256_boxes.csv"
    )
    pred = Predictor(CT, device="cpu")
    assert pred.tta == "mirror"  # the default for a CT model, as the demo runs it
    ev = evaluate(
        pred,
        items,
        EvalOptions(n_boot=20, prior=DEFAULT_PRIOR),
        floors=["random", "lung_field", "blob"],
    )
    per_slice = ev.metrics["per_slice"]
    assert len(per_slice["first_hit"]) == 9  # the nodule's slices
    # a margin of one slice (another CPU's kernels round differently); still over half of the 9 slices
    assert per_slice["top1_hits"][0] >= SHIPPED_CT_TOP1 - 1
    assert ev.metrics["per_lesion_3d"]["top1_hits"] == [SHIPPED_CT_VOLUME_TOP1, 1]  # the volume's strongest
    ranks = [r for r in per_slice["first_hit"].values() if r is not None]  # the nodule among each slice's candidates
    assert len(ranks) >= SHIPPED_CT_SLICES_FOUND - 1, per_slice["first_hit"]
    assert max(ranks) <= SHIPPED_CT_WORST_RANK + 5, per_slice["first_hit"]
    assert per_slice["pixel_auroc"] >= SHIPPED_CT_AUROC - 0.03
    assert all(per_slice["pixel_auroc"] > f["pixel_auroc"] for f in ev.metrics["floors"].values())
    assert ev.metrics["raw"]["top1_hits"][1] == 9  # the raw map's row is reported beside it
    assert ev.metrics["raw"]["top1_hits"][0] >= SHIPPED_CT_RAW_TOP1 - 1


#: measured with the CT prior default and mirror TTA of the eighth session (benchmarks/README.md; the same model
#: before them: 2 of 9 x prior, 5 of 9 raw, worst rank 5, AUROC 0.959, the volume's strongest detection off the
#: nodule; the model before it: 0 of 9 x prior, 1 of 9 raw, AUROC 0.919); the test allows a margin
SHIPPED_CT_TOP1 = 8  # of the 9 nodule slices, the map x prior
SHIPPED_CT_RAW_TOP1 = 8  # ... the raw map
SHIPPED_CT_VOLUME_TOP1 = 1  # the whole slab's strongest detection lies on the nodule
SHIPPED_CT_SLICES_FOUND = 9  # slices where one of the candidates lies on the nodule
SHIPPED_CT_WORST_RANK = 3  # ... and there it is among the first 3
SHIPPED_CT_AUROC = 0.966  # pixel AUROC x prior (lung-field floor 0.866)


@pytest.mark.skipif(not CXR.exists(), reason="no pretrained radiograph model in resources/models")
def test_the_radiograph_model_still_scores_the_bundled_nodules_as_measured():
    """The shipped radiograph model (an ensemble of two seeds) on the two bundled NIH radiographs with a
    nodule (never trained on, never chose it), as ``scripts/demo.sh`` scores it (the radiographs' default
    mirror TTA): its strongest detection lands on the nodule in 1 of 2 and the other nodule is among its
    first few candidates, and its pixel AUROC x prior stays above every floor's."""
    from napari_ppii.evaluation import EvalOptions, evaluate, load_csv_test_set
    from napari_ppii.predict import Predictor
    from napari_ppii.prior import DEFAULT_PRIOR

    items = load_csv_test_set(RESOURCES / "nih-cxr" / "annotations.csv", labels=["Nodule", "Mass"])
    pred = Predictor(CXR, device="cpu")
    assert pred.tta == "mirror"  # the default for a radiograph model, as the demo runs it
    ev = evaluate(pred, items, EvalOptions(n_boot=20, prior=DEFAULT_PRIOR), floors=["lung_field", "blob"])
    m = ev.metrics
    assert m["top1_hits"] == [SHIPPED_CXR_TOP1, 2]
    assert max(m["first_hit"].values()) <= SHIPPED_CXR_WORST_RANK + 3, m["first_hit"]  # both among the first few
    assert m["froc_at_10fp"] >= SHIPPED_CXR_FROC
    assert m["pixel_auroc"] >= SHIPPED_CXR_AUROC - 0.03
    assert all(m["pixel_auroc"] > f["pixel_auroc"] for f in m["floors"].values())


#: measured with mirror TTA (benchmarks/README.md, eighth session; the ensemble without it, seventh session: ranks
#: 2 and 1, AUROC 0.912; the single model before it: 1 of 2, ranks 22 and 1, FROC 0.5, AUROC 0.804)
SHIPPED_CXR_TOP1 = 1  # of the 2 bundled radiographs with a nodule
SHIPPED_CXR_WORST_RANK = 4  # the other one's nodule is the fourth candidate (second without mirror TTA)
SHIPPED_CXR_FROC = 1.0  # FROC@10FP x prior
SHIPPED_CXR_AUROC = 0.908  # pixel AUROC x prior, mirror TTA (0.912 without; lung-field floor 0.768)
