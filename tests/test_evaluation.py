# SPDX-License-Identifier: BSD-3-Clause
"""Metrics on hand-made maps with known answers, and ppii evaluate end to end."""

import numpy as np
import pytest

from napari_ppii.evaluation import EvalOptions, froc, match_candidates, score_maps
from napari_ppii.evaluation.metrics import (
    Candidates,
    auroc_from_histograms,
    extract_candidates,
    lesion_mask,
    pixel_histograms,
    sample_score,
)
from napari_ppii.io import Box


def _dataset(kind, n=12, shape=(48, 48), seed=0):
    """Half the images hold one lesion box; maps perfect / inverted / random."""
    rng = np.random.default_rng(seed)
    maps, boxes = [], []
    for i in range(n):
        b = []
        if i % 2 == 0:
            y, x = rng.integers(5, 35, 2)
            b = [Box((y, x), (y + 8, x + 8))]
        gt = lesion_mask(b, shape).astype(float)
        if kind == "perfect":
            m = 0.1 + 0.8 * gt
            if b:  # a clear peak in the lesion
                c = tuple(int(v) for v in b[0].centre)
                m[c] = 1.0
        elif kind == "inverted":
            m = 0.9 - 0.8 * gt
        else:
            m = rng.random(shape)
        maps.append(m)
        boxes.append(b)
    return maps, boxes


OPTS = EvalOptions(n_boot=50)


def test_perfect_map():
    m = score_maps(*_dataset("perfect"), OPTS)
    assert m["pixel_auroc"] == pytest.approx(1.0)
    assert m["sample_auroc"] == pytest.approx(1.0) and m["sample_ap"] == pytest.approx(1.0)
    assert m["froc"]["0.125"] == pytest.approx(1.0)  # full sensitivity before any false positive


def test_inverted_map():
    m = score_maps(*_dataset("inverted"), EvalOptions(n_boot=50, score="mean"))
    assert m["pixel_auroc"] == pytest.approx(0.0, abs=1e-9)
    assert m["sample_auroc"] == pytest.approx(0.0)  # lesion images have the lower mean


def test_random_map_near_chance_with_ci():
    m = score_maps(*_dataset("random", n=40, seed=3), EvalOptions(n_boot=200))
    assert abs(m["pixel_auroc"] - 0.5) < 0.03
    lo, hi = m["pixel_auroc_ci"]
    assert lo <= m["pixel_auroc"] <= hi and hi - lo > 0


def test_histogram_auroc_agrees_with_sklearn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    scores = np.clip(rng.normal(0.4, 0.2, 20000), 0, 1)
    labels = rng.random(20000) < 0.1
    scores[labels] += 0.15
    scores = np.clip(scores, 0, 1)
    pos, neg = pixel_histograms(scores, labels, 1000)
    assert auroc_from_histograms(pos, neg) == pytest.approx(roc_auc_score(labels, scores), abs=1e-3)


def test_quantile_bins_keep_the_order_of_near_zero_maps():
    """Maps that are ~0 almost everywhere (a model's typical output) must not collapse into one bin."""
    from sklearn.metrics import roc_auc_score

    from napari_ppii.evaluation.metrics import quantile_edges

    rng = np.random.default_rng(2)
    maps = [rng.random((64, 64)) * 1e-4 for _ in range(6)]
    masks = [np.zeros((64, 64), bool) for _ in range(6)]
    for m, k in zip(maps, masks):
        k[10:20, 10:20] = True
        m[k] += 2e-5  # higher, but far below 1/1000
    uniform = auroc_from_histograms(
        *[sum(h) for h in zip(*[pixel_histograms(m, k, 1000) for m, k in zip(maps, masks)])]
    )
    assert uniform == pytest.approx(0.5)  # equal bins on [0, 1] see only ties
    edges = quantile_edges(maps, 4096)
    got = auroc_from_histograms(*[sum(h) for h in zip(*[pixel_histograms(m, k, edges) for m, k in zip(maps, masks)])])
    exact = roc_auc_score(np.concatenate([k.ravel() for k in masks]), np.concatenate([m.ravel() for m in maps]))
    assert got == pytest.approx(exact, abs=2e-3) and exact > 0.6


def test_froc_counts_each_lesion_once():
    box = Box((10, 10), (20, 20))
    cands = Candidates(np.array([[12, 12], [18, 18], [40, 40]]), np.array([0.9, 0.8, 0.7]))
    hits = match_candidates(cands, [box])
    assert list(hits.lesion) == [0, -2, -1]  # hit, repeat (ignored), false positive
    curve = froc([hits])
    assert curve.at[0.125] == 1.0  # the lesion is found before the false positive
    assert curve.fps_per_image.max() == 1.0  # the repeat inside the lesion is not a false positive
    two = froc([match_candidates(Candidates(np.array([[40, 40], [12, 12]]), np.array([0.9, 0.5])), [box])])
    assert two.at[0.5] == 0.0 and two.at[1.0] == 1.0


def test_froc_sensitivity_is_monotone_in_rate():
    maps, boxes = _dataset("random", n=20, seed=2)
    hits = [match_candidates(extract_candidates(m, 4, 30), b) for m, b in zip(maps, boxes)]
    at = froc(hits).at
    vals = [at[r] for r in sorted(at)]
    assert all(a <= b + 1e-12 for a, b in zip(vals, vals[1:]))


def test_sample_scores_and_disc_region():
    m = np.zeros((10, 10))
    m[0, 0] = 1.0
    assert sample_score(m, "max") == 1.0 and sample_score(m, "mean") == pytest.approx(0.01)
    assert sample_score(m, "topk", 1.0) == 1.0  # 1% of 100 pixels = the top one
    disc = lesion_mask([Box((0, 0), (8, 8))], (9, 9), "disc")
    assert disc[4, 4] and not disc[0, 0] and disc.sum() < 81


def test_3d_lesion_scoring():
    vol = np.full((10, 30, 30), 0.1)
    vol[4:7, 10:15, 10:15] = 0.9
    m = score_maps([vol], [[Box((4, 10, 10), (6, 14, 14))]], EvalOptions(n_boot=10), three_d=True)
    assert m["pixel_auroc"] == pytest.approx(1.0) and m["froc"]["1.0"] == 1.0


def test_evaluate_cli_end_to_end(tmp_path, capsys):
    """Train a tiny model for a few steps and score it on the bundled NIH sample (2 test images, 4
    normals made test rows): all outputs written, every metric a number in range."""
    import json

    from conftest import nih_all_test_csv, tiny_checkpoint
    from napari_ppii.cli import main

    test_csv = nih_all_test_csv(tmp_path)
    ckpt = tiny_checkpoint(tmp_path)
    out = tmp_path / "eval"
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(ckpt),
                "--data",
                str(test_csv),
                "--out",
                str(out),
                "--n-boot",
                "20",
                "--detect-scale",
                "0.02",
                "--quiet",
            ]
        )
        == 0
    )
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_images"] == 6 and m["n_positive"] == 2
    assert m["settings"]["detect_scale"] == 0.02 and "smoothed by a Gaussian of 0.02" in m["settings"]["candidates"]
    for k in ("pixel_auroc", "sample_auroc", "sample_ap", "froc_at_10fp"):
        assert 0 <= m[k] <= 1 and len(m[f"{k}_ci"]) == 2
    for f in ("report.md", "roc.png", "froc.png", "score_histograms.png", "example_00.png"):
        assert (out / f).exists(), f
    assert set(m["first_hit"]) == {"00013751_003", "00020774_000"}  # the two images with a nodule
    assert all(0 <= r <= 50 for r in m["first_hit"].values())
    assert sum(r == 1 for r in m["first_hit"].values()) == m["top1_hits"][0]
    printed = capsys.readouterr().out
    assert "00020774_000: " in printed and "its strongest detection lies on it in" in printed
    assert "floor lung_field: pixel AUROC" in printed


def test_first_hit_rank_per_image():
    """Each image with a lesion gets the rank of its first candidate on a lesion: 1 when the strongest
    detection lands on it, 0 when no candidate does; images without lesions are left out."""
    from napari_ppii.evaluation.summary import first_hit_lines

    box = [Box((20, 20), (27, 27))]
    on_top = np.zeros((48, 48))
    on_top[23, 23] = 1.0
    second = np.zeros((48, 48))
    second[5, 40], second[23, 23] = 1.0, 0.5
    missed = np.zeros((48, 48))
    missed[5, 5] = 1.0
    missed[20:28, 20:28] = -1.0  # nothing rises inside the lesion
    normal = np.zeros((48, 48))
    normal[10, 10] = 1.0
    m = score_maps([on_top, second, missed, normal], [box, box, box, []], OPTS, names=["a", "b", "c", "d"])
    assert m["first_hit"] == {"a": 1, "b": 2, "c": 0}
    assert m["top1_hits"] == [1, 3]
    text = first_hit_lines(m["first_hit"])
    assert "a: strongest detection on the lesion" in text and "b: first detection on a lesion is candidate 2" in text
    assert "c: no candidate on a lesion" in text


def test_detection_scale_prefers_a_lesion_sized_blob_to_a_thin_line():
    """A one-pixel line (a vessel's edge) peaks at 1.0, a lesion-sized blob at 0.8: the raw map's strongest
    detection is on the line; smoothed at a lesion scale, the blob's candidate comes first.  Pixel AUROC is
    the raw map's either way; a 3D map is smoothed in-plane only (slice by slice)."""
    from napari_ppii.evaluation.metrics import detection_map

    yy, xx = np.mgrid[:64, :64]
    m = 0.8 * np.exp(-((yy - 40) ** 2 + (xx - 40) ** 2) / (2 * 3.0**2))
    m[10, 5:60] = 1.0
    box = [Box((35, 35), (45, 45))]
    raw = score_maps([m], [box], EvalOptions(n_boot=20, detect_scale=0.0), names=["x"])
    smooth = score_maps([m], [box], EvalOptions(n_boot=20, detect_scale=0.05), names=["x"])
    assert raw["first_hit"]["x"] > 1 and smooth["first_hit"] == {"x": 1}
    assert smooth["pixel_auroc"] == raw["pixel_auroc"]
    assert extract_candidates(m, scale=0.05).points[0].tolist() == [40, 40]
    vol = np.zeros((3, 32, 32), np.float32)
    vol[1, 16, 16] = 1.0
    d = detection_map(vol, 0.05)
    assert d[0].max() == 0 and d[2].max() == 0 and 0 < d[1].max() < 1
    assert np.array_equal(detection_map(m, 0.0), m)


def test_centre_hit_rule_is_stricter_than_the_box_rule():
    box = Box((10, 10), (29, 29))  # centre (19.5, 19.5), radius 10
    corner = Candidates(np.array([[11, 11]]), np.array([0.9]))
    centre = Candidates(np.array([[22, 18]]), np.array([0.9]))
    assert match_candidates(corner, [box]).lesion[0] == 0  # inside the box
    assert match_candidates(corner, [box], "centre").lesion[0] == -1  # 12 px from the centre: a miss
    assert match_candidates(centre, [box], "centre").lesion[0] == 0


def test_lung_region_auroc_and_floors_on_a_hand_made_case():
    from conftest import chest_phantom
    from napari_ppii.evaluation import evaluate
    from napari_ppii.evaluation.evaluate import TestItem
    from napari_ppii.io.scan import Scan

    items = []
    rng = np.random.default_rng(0)
    for s in range(6):
        y, x = int(rng.integers(90, 140)), int(rng.choice([70, 180]))
        img, _ = chest_phantom(256, s, nodule=(y, x, 7, 0.6))
        items.append(
            TestItem(
                f"p{s}", None, [Box((y - 7, x - 7), (y + 7, x + 7))], Scan(img, (1.0, 1.0), (0.0, 0.0), np.eye(2), "CR")
            )
        )
    ev = evaluate(None, items, EvalOptions(n_boot=20), floors=["random", "lung_field", "blob"])
    f = ev.metrics["floors"]
    assert set(f) == {"random", "lung_field", "blob"}
    assert 0.4 < f["random"]["pixel_auroc"] < 0.6  # chance, by construction
    assert f["lung_field"]["pixel_auroc"] > 0.75  # every nodule sits in a lung: the prior alone scores
    # the blob filter finds soft bright nodules inside the lungs: its strongest candidates hit
    assert f["blob"]["froc_at_10fp"] >= 0.8 and f["blob"]["froc_centre_at_10fp"] >= 0.8
    assert f["blob"]["pixel_auroc_lung"] > f["lung_field"]["pixel_auroc_lung"]
    for v in f.values():
        assert len(v["pixel_auroc_ci"]) == 2 and "froc_at_10fp_ci" in v


def test_restrict_to_lungs_multiplies_by_the_prior():
    from napari_ppii.anatomy import lung_prior
    from napari_ppii.evaluation.evaluate import restrict_to_lungs

    lungs = np.zeros((40, 40), bool)
    lungs[10:30, 5:18] = True
    amap = np.full((40, 40), 0.5, np.float32)
    r = restrict_to_lungs(amap, [lungs])
    np.testing.assert_allclose(r, 0.5 * lung_prior(lungs), rtol=1e-6)
    assert r[20, 11] > r[20, 35]
    vol = np.stack([amap, amap])
    assert restrict_to_lungs(vol, [lungs, lungs]).shape == (2, 40, 40)


def test_summary_says_where_the_strongest_detections_land(tmp_path):
    """A volume whose strongest response sits on its lesion in 2 of its 3 lesion slices (the third slice's
    peak is elsewhere): the summary says yes for the volume, 2 of 3 for the slices, and prints floors."""
    import json

    from napari_ppii.evaluation.summary import main, summarise

    vol = np.zeros((5, 40, 40))
    vol[1:4, 18:22, 18:22] = 0.5
    vol[2, 20, 20] = 1.0  # the volume's peak, on the lesion
    vol[3, 5, 5] = 0.9  # slice 3's peak is off the lesion
    lesion = Box((1, 17, 17), (3, 23, 23))
    slices = [[lesion.to_2d()] if 1 <= z <= 3 else [] for z in range(5)]
    per_slice = score_maps(list(vol), slices, OPTS, names=[f"v z={z}" for z in range(5)])
    per_3d = score_maps([vol], [[lesion]], OPTS, three_d=True, names=["v"])
    floor = score_maps([np.zeros((40, 40))] * 5, slices, OPTS, full=False)
    metrics = {
        "per_slice": per_slice,
        "per_lesion_3d": per_3d,
        "pixel_auroc": per_slice["pixel_auroc"],
        "pixel_auroc_ci": per_slice["pixel_auroc_ci"],
        "froc_at_10fp": per_slice["froc_at_10fp"],
        "froc_at_10fp_ci": per_slice["froc_at_10fp_ci"],
        "floors": {"flat": floor},
    }
    assert per_slice["first_hit"] == {"v z=1": 1, "v z=2": 1, "v z=3": 2}
    text = summarise(metrics)
    assert "strongest detection lies on a lesion: yes (1 of 1 volume with lesions)" in text
    assert "each of the 3 slices with a lesion: its strongest detection lies on it in 2 of 3" in text
    assert "floor flat:" in text
    p = tmp_path / "metrics.json"
    p.write_text(json.dumps(metrics))
    assert main([str(p)]) == 0
    assert main([str(tmp_path / "missing.json")]) == 2


def test_volume_boxes_outside_the_scan_are_a_clear_error(tmp_path):
    """Boxes of another scan (slices the volume does not have): one clear message, no NaN metrics and no
    traceback from the report."""
    import csv

    from napari_ppii.errors import InputError
    from napari_ppii.evaluation import load_volume_test_set
    from napari_ppii.io import write_array
    from napari_ppii.io.scan import Scan

    vol = Scan(np.full((10, 32, 32), -800.0, np.float32), (2.5, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3), "CT")
    path = write_array(vol.array, tmp_path / "vol", like=vol, fmt="nifti")
    boxes = tmp_path / "boxes.csv"
    with boxes.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["label", "z0", "y0", "x0", "z1", "y1", "x1"])
        w.writerow(["lesion", 100, 5, 5, 110, 12, 12])
    with pytest.raises(InputError, match="lies within this scan's 10 slices"):
        load_volume_test_set(path, boxes)
    with boxes.open("a", newline="") as fh:
        csv.writer(fh).writerow(["lesion", 3, 5, 5, 5, 12, 12])
    items = load_volume_test_set(path, boxes)
    assert len(items[0].boxes) == 1 and items[0].boxes[0].lo[0] == 3  # only the box inside is a lesion


def test_one_lesion_rule_for_the_dock_and_the_evaluation():
    """LIDC readers' marks: the < 3 mm point marks and non-nodules are no lesion, the >= 3 mm boxes of one
    nodule are one; the prediction dock's ground truth (read back from a Shapes layer) follows the same
    rule (issue 22 item 5: the dock counted '0/2 lesions' where the evaluation counted one)."""
    from napari.layers import Image, Shapes

    from napari_ppii._layers import boxes_shapes_data, shapes_to_boxes
    from napari_ppii._widgets.predict import truth_lesions
    from napari_ppii.evaluation.evaluate import lesion_boxes
    from napari_ppii.io.boxes import Box

    marks = [
        Box((5, 10, 10), (7, 20, 20), label="nodule>=3mm"),
        Box((5, 11, 12), (6, 21, 19), label="nodule>=3mm"),
        Box((6, 40, 40), (6, 40, 40), label="nodule<3mm"),
        Box((6, 50, 10), (6, 50, 10), label="non-nodule"),
    ]
    assert len(lesion_boxes(marks)) == 1
    other = [
        Box((10, 10), (20, 20), label="Nodule"),
        Box((15, 15), (25, 25), label="Nodule"),
        Box((40, 40), (50, 50), label="Mass"),
    ]
    assert len(lesion_boxes(other)) == 2
    data, kw, _ = boxes_shapes_data(marks, 3)
    layer = Shapes(data, **kw)
    target = Image(np.zeros((10, 64, 64), np.float32))
    back = shapes_to_boxes(layer, target)
    assert {b.label for b in back} == {"nodule>=3mm", "nodule<3mm", "non-nodule"}
    on_slice_6 = [b.to_2d() for b in back if b.lo[0] <= 6 <= b.hi[0]]
    assert len(on_slice_6) == 4 and len(truth_lesions(on_slice_6)) == 1
    plain = Shapes([np.array([[0, 0], [0, 5], [5, 5], [5, 0]])], shape_type="rectangle")
    assert shapes_to_boxes(plain, Image(np.zeros((16, 16), np.float32)))[0].label == "reference"


def test_boxes_outside_the_scan_are_refused(tmp_path):
    """Boxes of another scan (or in another unit) are refused with one message, not scored as missed
    lesions (issue 22 item 8)."""
    from PIL import Image

    from napari_ppii.errors import InputError
    from napari_ppii.evaluation import EvalOptions, evaluate
    from napari_ppii.evaluation.evaluate import TestItem
    from napari_ppii.io.boxes import Box, boxes_outside

    assert boxes_outside([Box((10, 10), (20, 20)), Box((70, 10), (80, 20))], (64, 64)) == [Box((70, 10), (80, 20))]
    assert boxes_outside([Box((2, 10, 10), (3, 20, 20))], (5, 64, 64)) == []
    assert len(boxes_outside([Box((7, 10, 10), (9, 20, 20))], (5, 64, 64))) == 1
    png = tmp_path / "a.png"
    Image.fromarray(np.full((64, 64), 128, np.uint8)).save(png)
    with pytest.raises(InputError, match="lie outside the"):
        evaluate(None, [TestItem("a", png, [Box((100, 100), (120, 120), label="nodule")])], EvalOptions(n_boot=10))
