# SPDX-License-Identifier: BSD-3-Clause
"""``ppii`` commands end to end (in-process and as a real console script)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import RESOURCES, smooth_image
from napari_ppii.cli import main
from napari_ppii.io import read_scan, write_array

SAMPLE = RESOURCES / "nih-cxr"


def _arrays(folder, fmt="tif"):
    return {n: read_scan(folder / f"{n}.{fmt}").array for n in ("image", "label", "variance")}


def test_synthesize_sample_writes_outputs_and_replays_exactly(tmp_path):
    out = tmp_path / "a"
    rc = main(
        [str(SAMPLE / "00000002_000.png"), "--source", str(SAMPLE / "00000005_000.png")][:0]
        + [
            "synthesize",
            str(SAMPLE / "00000002_000.png"),
            "--source",
            str(SAMPLE / "00000005_000.png"),
            "--seed",
            "3",
            "--size",
            "256",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    rec = json.loads((out / "params.json").read_text())
    assert rec["config"]["seed"] == 3 and rec["config"]["synthesis"]["method"] == "ppii"
    assert len(rec["boxes"]) == len(rec["anomalies"]) >= 1
    a = _arrays(out)
    assert a["image"].shape == (256, 256) and a["label"].max() > 0
    # labels live inside the recorded boxes
    inside = np.zeros((256, 256), bool)
    for b in rec["boxes"]:
        (y0, x0), (y1, x1) = b["lo"], b["hi"]
        inside[int(y0) : int(y1) + 1, int(x0) : int(x1) + 1] = True
    assert np.all(a["label"][~inside] == 0)
    # replay from the JSON: identical arrays
    rc = main(["synthesize", "--replay", str(out / "params.json"), "--out", str(tmp_path / "b")])
    assert rc == 0
    b = _arrays(tmp_path / "b")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    # same seed and settings again: identical too; another seed: different
    main(
        [
            "synthesize",
            str(SAMPLE / "00000002_000.png"),
            "--source",
            str(SAMPLE / "00000005_000.png"),
            "--seed",
            "3",
            "--size",
            "256",
            "--out",
            str(tmp_path / "c"),
        ]
    )
    np.testing.assert_array_equal(_arrays(tmp_path / "c")["image"], a["image"])


@pytest.mark.parametrize("method", ["pii", "fpi", "nsa"])
def test_synthesize_baselines_png(tmp_path, method):
    rc = main(
        [
            "synthesize",
            str(SAMPLE / "00000005_003.png"),
            "--method",
            method,
            "--size",
            "128",
            "--format",
            "png",
            "--out",
            str(tmp_path),
        ]
    )
    assert rc == 0
    assert read_scan(tmp_path / "label.png").array.max() > 0


def test_synthesize_volume_writes_nifti_with_geometry(tmp_path):
    from napari_ppii.io import Scan

    vol = (smooth_image((20, 48, 40), seed=2) * 1400 - 1200).astype(np.float32)
    scan = Scan(vol, (2.5, 0.8, 0.8), (-100.0, 5.0, 6.0), np.eye(3), "CT")
    src = write_array(vol, tmp_path / "ct", like=scan, fmt="nifti")
    rc = main(
        [
            "synthesize",
            str(src),
            "--seed",
            "1",
            "--set",
            "synthesis.n_anomalies=[2,3]",
            "--set",
            "synthesis.placement=anywhere",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert rc == 0
    img = read_scan(tmp_path / "o" / "image.nii.gz")
    assert img.shape == (20, 48, 40)
    assert img.spacing == pytest.approx((2.5, 0.8, 0.8)) and img.origin == pytest.approx((-100.0, 5.0, 6.0))
    assert read_scan(tmp_path / "o" / "label.nii.gz").array.max() > 0


def test_dicom_series_input(tmp_path, dicom_series):
    # the fixture's volume is 6 x 20 x 24: too small for synthesis -> clear error, exit 2
    assert main(["synthesize", str(dicom_series), "--out", str(tmp_path / "o")]) == 2


@pytest.mark.parametrize(
    "args,match",
    [
        (["synthesize", "missing.png", "--out", "o"], "no such file"),
        (["synthesize", "{sample}", "--set", "synthesis.n_raters=[0,2]", "--out", "o"], "n_raters"),
        (["synthesize", "{tiny}", "--out", "o"], "too small"),
        (["info", "{txt}"], "unsupported file type"),
    ],
)
def test_bad_input_one_line_on_stderr(tmp_path, capsys, args, match):
    import imageio.v3 as iio

    iio.imwrite(tmp_path / "tiny.png", np.zeros((8, 8), np.uint8))
    (tmp_path / "x.txt").write_text("x")
    args = [
        a.format(sample=SAMPLE / "00000002_000.png", tiny=tmp_path / "tiny.png", txt=tmp_path / "x.txt").replace(
            "o", str(tmp_path / "o")
        )
        if a == "o"
        else a.format(sample=SAMPLE / "00000002_000.png", tiny=tmp_path / "tiny.png", txt=tmp_path / "x.txt")
        for a in args
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ppii: error:") and match in err


def test_console_script_runs(tmp_path):
    exe = [sys.executable, "-m", "napari_ppii.cli"]
    r = subprocess.run(exe + ["info", str(SAMPLE / "00000002_000.png")], capture_output=True, text=True)
    assert r.returncode == 0 and "(512, 512)" in r.stdout
    r = subprocess.run(exe + ["info", str(tmp_path / "none.dcm")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "no such file" in r.stderr


def test_one_input_rule_for_info_and_predict_and_plain_warnings(tmp_path, capsys):
    """A folder with DICOM slices, a PNG, an XML and a text file: ``ppii info`` and ``ppii predict`` read
    the same scans (the series and the PNG) and name the files they do not read; the reader's
    irregular-spacing warning is one plain line without a package path (issue 22 item 8)."""
    from PIL import Image

    from conftest import make_dicom, smooth_image
    from napari_ppii.config import PPIIConfig
    from napari_ppii.training import train

    folder = tmp_path / "mixed"
    folder.mkdir()
    for k, z in enumerate([0.0, 2.5, 5.0, 9.0]):
        make_dicom(folder / f"s{k}.dcm", (smooth_image((40, 40), seed=k) * 1400).astype(np.int16), position=(0, 0, z))
    Image.fromarray((smooth_image((40, 40), seed=9) * 255).astype(np.uint8)).save(folder / "cxr.png")
    (folder / "boxes.xml").write_text("<LidcReadMessage/>")
    (folder / "notes.txt").write_text("hello")
    assert main(["info", str(folder)]) == 0
    out, err = capsys.readouterr()
    assert "series 1.2.3.4" in out and "slices 4" in out and "file cxr.png" in out
    assert "not read: boxes.xml" in out and "not read: notes.txt" in out
    assert "ppii: warning:" in err and "irregular slice spacing" in err and "readers.py" not in err
    cfg = PPIIConfig().with_overrides(
        [
            "model.base_channels=4",
            "model.levels=3",
            "data.image_size=32",
            "training.batch_size=4",
            "data.val_samples=4",
            "training.steps=1",
            "training.val_every=1",
            "synthesis.placement=anywhere",
            f"training.out_dir={tmp_path / 'run'}",
        ]
    )
    train(cfg, images=np.stack([smooth_image((32, 32), seed=s) for s in range(5)]))
    rc = main(
        [
            "predict",
            str(folder),
            "--checkpoint",
            str(tmp_path / "run" / "last.pt"),
            "--out",
            str(tmp_path / "p"),
            "--prior",
            "none",
            "--quiet",
        ]
    )
    out, err = capsys.readouterr()
    assert rc == 1  # something was skipped: said, and the exit status says so
    assert "2 scans predicted" in out
    assert "boxes.xml" in err and "notes.txt" in err
    index = (tmp_path / "p" / "index.csv").read_text()
    assert index.count(",ok,") == 2 and "cxr.png" in index


def test_box_csv_z_index_column_gives_3d_boxes(tmp_path):
    from napari_ppii.io import read_boxes

    (tmp_path / "b.csv").write_text("x0,y0,x1,y1,z_index,label\n10,10,20,20,7,nodule\n")
    (b,) = read_boxes(tmp_path / "b.csv")
    assert b.ndim == 3 and b.lo[0] == b.hi[0] == 7 and "z_index" not in b.properties
