# SPDX-License-Identifier: BSD-3-Clause
"""Every reader fails cleanly: pydicom's whole bundled test corpus and hand-made broken files go through
the readers and ``ppii synthesize``; each either works or is an InputError (CLI: one line, exit 2)."""

from collections import Counter
from pathlib import Path

import pytest

from broken_files import classify, make_broken_files


def _run(paths, tmp_path):
    counts, others = Counter(), []
    for i, p in enumerate(paths):
        kind, detail = classify(Path(p), tmp_path / f"o{i}")
        counts[kind] += 1
        if kind == "other":
            others.append(f"{p}: {detail}")
    return counts, others


@pytest.mark.filterwarnings("ignore")
def test_pydicom_test_corpus_reads_or_fails_cleanly(tmp_path):
    from pydicom.data import get_testdata_files

    files = get_testdata_files()
    assert len(files) > 100  # the corpus is there
    counts, others = _run(files, tmp_path)
    print(f"\npydicom corpus ({len(files)} files): {dict(counts)}")
    assert not others, "\n".join(others)
    assert counts["worked"] > 20 and counts["clean"] > 50


@pytest.mark.filterwarnings("ignore")
def test_broken_files_fail_cleanly_with_a_reason(tmp_path):
    files = make_broken_files(tmp_path / "in")
    counts, others = _run(files.values(), tmp_path)
    print(f"\nbroken files ({len(files)}): {dict(counts)}")
    assert not others, "\n".join(others)
    # each kind of damage is refused with the reason named, not just "an error"
    expect = {
        "truncated.dcm": "pixel data",
        "bad_frames.dcm": "NumberOfFrames",
        "bad_slope.dcm": "RescaleSlope",
        "huge.nii": "voxels",
        "huge.mhd": "voxels",
        "huge_rows.dcm": "voxels",
        "zero_pixels.dcm": "empty",
        "nan.tif": "NaN",
        "inf.nii.gz": "NaN/Inf",
        "one_pixel.png": "too small",
        "colour.png": "colour",
        "colour.dcm": "photometric",
        "multiframe.dcm": "multi-frame",
        "empty.dcm": "empty",
        "png_named.dcm": "not a DICOM",
        "empty_dir": "empty",
        "data.csv": "unsupported file type",
    }
    for name, words in expect.items():
        kind, detail = classify(files[name], tmp_path / "again")
        assert kind == "clean" and words in detail, (name, kind, detail)


def test_corrupt_header_value_inside_a_library_becomes_an_input_error(tmp_path, monkeypatch):
    # a library error surfacing anywhere in a reader (lazy header parsing) names the file, one type
    from napari_ppii.errors import InputError
    from napari_ppii.io import readers

    p = make_broken_files(tmp_path)["bad_spacing.dcm"]

    def boom(*a, **k):
        raise TypeError("unexpected element value")

    monkeypatch.setattr(readers, "_window_meta", boom)
    with pytest.raises(InputError, match="bad_spacing.dcm.*corrupt or unsupported file.*TypeError"):
        readers.read_scan(p)
