# SPDX-License-Identifier: BSD-3-Clause
"""The Qt-free workflow layer that ``ppii`` and the docks share (issue 20 item 1)."""

import numpy as np
import pytest

from napari_ppii.config import PPIIConfig
from napari_ppii.errors import InputError
from napari_ppii.evaluation.summary import below_floor_lines, fmt_ci, summarise
from napari_ppii.io import scan_files, scan_suffix
from napari_ppii.workflows import atlas_floor, open_test_set, placement_mask, synthesize_scan


def test_scan_files_one_rule(tmp_path):
    for name in ("a.png", "b.nii.gz", "c.dcm", ".hidden.png", "notes.txt", "sub/d.tif"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in scan_files(tmp_path)] == ["a.png", "b.nii.gz", "c.dcm", "d.tif"]
    assert [p.name for p in scan_files(tmp_path, recursive=False, suffixes=(".png",))] == ["a.png"]
    assert scan_suffix("X.NII.GZ") == ".nii.gz" and scan_suffix("y.Png") == ".png"


def test_fmt_ci_and_floor_warning():
    assert fmt_ci({"a": 0.8381, "a_ci": [0.7771, 0.895]}, "a") == "0.838 [0.777, 0.895]"
    assert fmt_ci({"a": 0.5, "a_ci": [0.4, 0.6]}, "a", ci_digits=2) == "0.500 [0.40, 0.60]"
    assert fmt_ci({"a": float("nan")}, "a") == "n/a"
    assert fmt_ci({"a": 0.5, "a_ci": [float("nan"), 0.6]}, "a") == "0.500"
    assert fmt_ci({}, "a") == "n/a"
    m = {
        "pixel_auroc": 0.82,
        "froc_at_10fp": 0.4,
        "floors": {
            "lung_field": {"pixel_auroc": 0.88, "froc_at_10fp": 0.0},
            "blob": {"pixel_auroc": 0.6, "froc_at_10fp": 0.5},
        },
    }
    lines = below_floor_lines(m)
    assert len(lines) == 2
    assert "pixel AUROC 0.820" in lines[0] and "lung_field 0.880" in lines[0] and "blob" not in lines[0]
    assert "FROC@10FP 0.400" in lines[1] and "blob 0.500" in lines[1]
    m["pixel_auroc"], m["froc_at_10fp"] = 0.95, 0.6
    assert below_floor_lines(m) == []
    m["floors_left_out"] = {"atlas": "its training data x was not found"}
    assert "floor atlas left out: its training data x was not found" in summarise(m)


def _radiograph(n=128):
    yy, xx = np.mgrid[:n, :n] / n
    img = 0.8 - 0.5 * (
        np.exp(-((xx - 0.3) ** 2 + (yy - 0.5) ** 2) / 0.02) + np.exp(-((xx - 0.7) ** 2 + (yy - 0.5) ** 2) / 0.02)
    )
    return img.astype(np.float32)


def test_placement_mask_rules():
    raw = _radiograph()
    assert placement_mask("anywhere", raw) is None
    given = np.zeros_like(raw, dtype=np.uint8)
    given[10:30, 10:40] = 2
    m = placement_mask("mask", raw, given=given)
    assert m.dtype == bool and m.sum() == 20 * 30
    # a painted mask wins over the computed lungs, and is resized to the pre-processed grid
    m = placement_mask("lungs", raw, (64, 64), given=given)
    assert m.shape == (64, 64) and 130 <= m.sum() <= 170 and not m[40:].any()
    lungs = placement_mask("lungs", raw)
    assert lungs.shape == raw.shape and lungs.any()
    calls = []
    cached = placement_mask("lungs", raw, lungs=lambda: calls.append(1) or lungs)
    assert calls == [1] and np.array_equal(cached, lungs)
    with pytest.raises(InputError, match="paint it"):
        placement_mask("mask", raw, missing="paint it")
    with pytest.raises(InputError, match="does not match the scan"):
        placement_mask("mask", raw, given=given[:10])
    vol = np.zeros((5, 32, 32), np.uint8)
    vol[3, 4:8, 4:8] = 1
    assert placement_mask("mask", vol, given=vol, slice_index=3).sum() == 16
    assert not placement_mask("mask", vol, given=vol, slice_index=0).any()
    assert placement_mask("mask", vol, given=vol, slice_index=99).shape == (32, 32)  # clamped to the last slice


def test_synthesize_scan_follows_the_mask_and_is_seeded():
    cfg = PPIIConfig().with_values({"synthesis.method": "ppii", "synthesis.placement": "mask", "seed": 3})
    img = _radiograph(96)
    mask = np.zeros(img.shape, bool)
    mask[20:76, 10:50] = True
    a = synthesize_scan(img, cfg, mask=mask)
    b = synthesize_scan(img, cfg, mask=mask)
    assert a.result.boxes and np.array_equal(a.result.image, b.result.image)
    changed = np.abs(a.result.image - img) > 1e-6
    assert changed.any() and not changed[:, 60:].any()  # nothing placed far outside the mask
    with pytest.raises(InputError, match="does not match the target"):
        synthesize_scan(img, cfg, mask=mask[:10])
    with pytest.raises(InputError, match="source is 3D"):
        synthesize_scan(img, cfg, source=np.zeros((2, 96, 96), np.float32), mask=mask)
    c = synthesize_scan(img, cfg, source=_radiograph(48), mask=mask)  # a source of another size is resized
    assert c.result.image.shape == img.shape


def test_open_test_set_csv_and_errors(tmp_path):
    from PIL import Image

    Image.fromarray((_radiograph(64) * 255).astype(np.uint8)).save(tmp_path / "a.png")
    Image.fromarray((_radiograph(64) * 255).astype(np.uint8)).save(tmp_path / "b.png")
    (tmp_path / "ann.csv").write_text(
        "image,split,label,x0,y0,x1,y1\n"
        "a.png,test,Nodule,10,10,18,18\na.png,test,Other,30,30,38,38\nb.png,train,normal,,,,\n"
    )
    items = open_test_set(tmp_path / "ann.csv", labels="Nodule")
    assert len(items) == 1 and len(items[0].boxes) == 1
    assert len(open_test_set(tmp_path / "ann.csv")[0].boxes) == 2
    with pytest.raises(InputError, match="choose test data"):
        open_test_set("")


def test_atlas_floor_resolves_a_relative_path_or_says_why(tmp_path, monkeypatch):
    from PIL import Image

    data = tmp_path / "proj" / "normals"
    data.mkdir(parents=True)
    for i in range(2):
        Image.fromarray((_radiograph(64) * 255).astype(np.uint8)).save(data / f"n{i}.png")
    run = tmp_path / "proj" / "runs" / "r1"
    run.mkdir(parents=True)
    cfg = PPIIConfig().with_values({"data.train": "normals", "data.image_size": 32})
    monkeypatch.chdir(tmp_path)  # the stored relative path does not resolve from here
    atlas, why = atlas_floor(cfg)
    assert atlas is None and "normals was not found" in why and "--train-data" in why
    atlas, why = atlas_floor(cfg, checkpoint=run / "best.pt")  # ... but beside the run's project folder
    assert why is None and atlas is not None
    atlas, why = atlas_floor(cfg, train_data=data)
    assert why is None
    atlas, why = atlas_floor(PPIIConfig())
    assert atlas is None and "records no training data" in why


def test_atlas_floor_uses_the_recorded_absolute_path(tmp_path, monkeypatch):
    from PIL import Image

    data = tmp_path / "elsewhere" / "normals"
    data.mkdir(parents=True)
    Image.fromarray((_radiograph(64) * 255).astype(np.uint8)).save(data / "n.png")
    cfg = PPIIConfig().with_values({"data.train": "normals", "data.image_size": 32})
    monkeypatch.chdir(tmp_path)
    assert atlas_floor(cfg)[0] is None
    atlas, why = atlas_floor(cfg, recorded=str(data))
    assert why is None and atlas.shape == (32, 32)
