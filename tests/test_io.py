# SPDX-License-Identifier: BSD-3-Clause
"""Readers, writers and boxes on files the tests write, and every kind of bad input."""

import numpy as np
import pytest

from conftest import SHARED, make_dicom
from napari_ppii.errors import InputError
from napari_ppii.io import (
    Box,
    Scan,
    list_series,
    read_boxes,
    read_boxes_csv,
    read_lidc_xml,
    read_scan,
    write_array,
    write_boxes_csv,
)


# ------------------------------------------------------------------------------------------------
# DICOM
# ------------------------------------------------------------------------------------------------
def test_dicom_series_sorted_by_position_not_name_or_instance(dicom_series):
    scan = read_scan(dicom_series)
    assert scan.shape == (6, 20, 24)
    assert scan.modality == "CT"
    # slice k holds HU 100 * k (stored 100 k + 1024, intercept -1024): ascending along z
    np.testing.assert_array_equal(scan.array[:, 5, 5], [0, 100, 200, 300, 400, 500])
    assert scan.array[0, 0, 0] == -1000
    assert scan.spacing == pytest.approx((2.5, 0.7, 0.7))
    assert scan.origin == pytest.approx((-10.0, -60.0, -50.0))
    np.testing.assert_allclose(scan.slice_positions, np.arange(6) * 2.5 - 10)
    assert scan.metadata["window_center"] == -600


def test_dicom_series_ordering_follows_slice_normal(tmp_path):
    """Orientation with a flipped normal: order by the projection on the normal, not raw z."""
    folder = tmp_path / "s"
    folder.mkdir()
    # row (1,0,0) x col (0,-1,0) -> normal (0,0,-1): increasing normal coordinate = decreasing z
    for k, z in enumerate([0.0, 5.0, 10.0]):
        make_dicom(
            folder / f"{k}.dcm",
            np.full((16, 16), 1024 + k, np.int16),
            position=(0, 0, z),
            orientation=(1, 0, 0, 0, -1, 0),
            instance=k + 1,
        )
    scan = read_scan(folder)
    np.testing.assert_array_equal(scan.array[:, 0, 0], [2, 1, 0])
    np.testing.assert_allclose(scan.direction[0], [-1, 0, 0])  # z axis along -z (array-order physical)


def test_folder_with_two_series_lists_and_loads_largest_or_requested(tmp_path):
    folder = tmp_path / "two"
    folder.mkdir()
    for k in range(4):
        make_dicom(folder / f"a{k}.dcm", np.full((16, 16), 1024, np.int16), position=(0, 0, k), series_uid="1.1")
    for k in range(2):
        make_dicom(folder / f"b{k}.dcm", np.full((16, 16), 2024, np.int16), position=(0, 0, k), series_uid="2.2")
    series = list_series(folder)
    assert [(s.uid, s.n_slices) for s in series] == [("1.1", 4), ("2.2", 2)]
    assert read_scan(folder).shape[0] == 4
    small = read_scan(folder, series_uid="2.2")
    assert small.shape[0] == 2 and small.array.max() == 1000
    with pytest.raises(InputError, match="no series"):
        read_scan(folder, series_uid="9.9")


def test_single_dicom_monochrome1_rescale_and_bits_stored(tmp_path):
    stored = np.array([[0, 1000], [4095, 2048]], dtype=np.uint16)
    dirty = stored | (1 << 13)  # garbage above BitsStored = 12 must be ignored
    p = make_dicom(
        tmp_path / "cr.dcm",
        np.tile(dirty, (8, 8)),
        modality="CR",
        photometric="MONOCHROME1",
        bits_stored=12,
        slope=2.0,
        intercept=10.0,
        signed=False,
    )
    scan = read_scan(p)
    assert scan.ndim == 2 and scan.modality == "CR"
    values = stored * 2.0 + 10.0
    # MONOCHROME1: inverted over the full range [10, 4095 * 2 + 10]
    expected = (10.0 + 4095 * 2 + 10.0) - values
    np.testing.assert_allclose(scan.array[:2, :2], expected)
    assert scan.spacing == pytest.approx((0.7, 0.7))


def test_signed_bits_stored_sign_extension(tmp_path):
    raw = np.array([[-5, 100]], dtype=np.int16)
    packed = (raw.astype(np.int32) & 0x0FFF).astype(np.uint16).view(np.int16)  # 12-bit two's complement
    p = make_dicom(tmp_path / "s.dcm", np.tile(packed, (16, 8)), bits_stored=12, slope=1, intercept=0, signed=True)
    np.testing.assert_array_equal(read_scan(p).array[0, :2], [-5, 100])


def test_truncated_dicom_is_an_input_error(tmp_path, dicom_series):
    f = sorted(dicom_series.glob("*.dcm"))[0]
    bad = tmp_path / "trunc.dcm"
    bad.write_bytes(f.read_bytes()[:400])
    with pytest.raises(InputError, match="trunc.dcm"):
        read_scan(bad)


def test_colour_dicom_refused(tmp_path):
    p = make_dicom(tmp_path / "rgb.dcm", np.zeros((8, 8), np.uint8), photometric="RGB", signed=False)
    with pytest.raises(InputError, match="photometric"):
        read_scan(p)


def test_non_dicom_with_dcm_suffix(tmp_path):
    p = tmp_path / "x.dcm"
    p.write_text("hello, not a dicom")
    with pytest.raises(InputError, match="not a DICOM"):
        read_scan(p)


def test_empty_folder_and_folder_without_dicom(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="empty"):
        read_scan(empty)
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.txt").write_text("x")
    with pytest.raises(InputError, match="no DICOM image files"):
        read_scan(other)


# ------------------------------------------------------------------------------------------------
# rasters
# ------------------------------------------------------------------------------------------------
def test_png_16bit_and_8bit(tmp_path):
    import imageio.v3 as iio

    a16 = (np.arange(64 * 48, dtype=np.uint32).reshape(64, 48) * 20).astype(np.uint16)
    iio.imwrite(tmp_path / "a.png", a16)
    s = read_scan(tmp_path / "a.png")
    np.testing.assert_array_equal(s.array, a16.astype(np.float32))
    assert s.metadata["bits"] == 16 and s.array.max() > 255
    a8 = (np.arange(32 * 32) % 256).astype(np.uint8).reshape(32, 32)
    iio.imwrite(tmp_path / "b.png", a8)
    np.testing.assert_array_equal(read_scan(tmp_path / "b.png").array, a8)


def test_rgb_png_with_equal_channels_is_grey_but_colour_refused(tmp_path):
    import imageio.v3 as iio

    g = (np.arange(32 * 32) % 200).astype(np.uint8).reshape(32, 32)
    iio.imwrite(tmp_path / "rgba.png", np.dstack([g, g, g, np.full_like(g, 255)]))
    np.testing.assert_array_equal(read_scan(tmp_path / "rgba.png").array, g)
    col = np.dstack([g, g[::-1], g])
    iio.imwrite(tmp_path / "col.png", col)
    with pytest.raises(InputError, match="colour"):
        read_scan(tmp_path / "col.png")


def test_tiff_16bit_and_float_nan(tmp_path):
    import tifffile

    a = np.random.default_rng(0).integers(0, 65535, (40, 30)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", a)
    np.testing.assert_array_equal(read_scan(tmp_path / "a.tif").array, a)
    f = np.ones((40, 30), np.float32)
    f[3, 3] = np.nan
    tifffile.imwrite(tmp_path / "n.tiff", f)
    with pytest.raises(InputError, match="NaN"):
        read_scan(tmp_path / "n.tiff")


def test_jpeg(tmp_path):
    import imageio.v3 as iio

    g = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (64, 1))
    iio.imwrite(tmp_path / "a.jpg", g)
    s = read_scan(tmp_path / "a.jpg")
    assert s.shape == (64, 64) and abs(float(s.array.mean()) - g.mean()) < 3


def test_truncated_png_and_fake_image(tmp_path):
    import imageio.v3 as iio

    iio.imwrite(tmp_path / "ok.png", np.zeros((64, 64), np.uint8) + 7)
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cut.png"):
        read_scan(tmp_path / "cut.png")
    (tmp_path / "fake.png").write_text("this is text")
    with pytest.raises(InputError, match="fake.png"):
        read_scan(tmp_path / "fake.png")


def test_missing_empty_and_unsupported_files(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_scan(tmp_path / "nope.png")
    (tmp_path / "empty.nii").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        read_scan(tmp_path / "empty.nii")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="unsupported file type"):
        read_scan(tmp_path / "notes.txt")


# ------------------------------------------------------------------------------------------------
# NIfTI / MHA / NRRD
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha", ".nrrd", ".mhd"])
def test_itk_formats_keep_anisotropic_geometry(tmp_path, suffix):
    arr = np.random.default_rng(1).normal(size=(5, 12, 9)).astype(np.float32) * 100
    scan = Scan(arr, (3.0, 0.8, 0.6), (-20.0, 10.0, 5.5), np.eye(3), modality="CT")
    path = write_array(arr, tmp_path / f"v{suffix}", like=scan, fmt="nifti") if suffix == ".nii.gz" else None
    if path is None:
        import SimpleITK as sitk

        path = tmp_path / f"v{suffix}"
        sitk.WriteImage(scan.to_sitk(), str(path))
    back = read_scan(path)
    np.testing.assert_allclose(back.array, arr, rtol=1e-6)
    assert back.spacing == pytest.approx((3.0, 0.8, 0.6))
    assert back.origin == pytest.approx((-20.0, 10.0, 5.5))


def test_itk_direction_round_trip(tmp_path):
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.zeros((4, 5, 6), np.float32))
    img.SetSpacing((0.5, 0.7, 2.0))
    d = np.array([[0, 1, 0], [1, 0, 0], [0, 0, -1]], float)  # ITK (x, y, z) columns
    img.SetDirection(tuple(d.ravel()))
    sitk.WriteImage(img, str(tmp_path / "d.nii.gz"))
    scan = read_scan(tmp_path / "d.nii.gz")
    assert scan.spacing == pytest.approx((2.0, 0.7, 0.5))
    back = scan.to_sitk()
    np.testing.assert_allclose(np.array(back.GetDirection()).reshape(3, 3), d, atol=1e-6)
    assert back.GetSpacing() == pytest.approx(img.GetSpacing())


def test_corrupt_nifti_and_nan_nifti(tmp_path):
    (tmp_path / "bad.nii.gz").write_bytes(b"\x1f\x8b garbage garbage")
    with pytest.raises(InputError, match="bad.nii.gz"):
        read_scan(tmp_path / "bad.nii.gz")
    arr = np.zeros((3, 20, 20), np.float32)
    arr[1, 2, 3] = np.inf
    write_array(arr, tmp_path / "inf", fmt="nifti")
    with pytest.raises(InputError, match="NaN/Inf"):
        read_scan(tmp_path / "inf.nii.gz")


def test_single_slice_volume_reads_as_2d(tmp_path):
    write_array(np.ones((1, 20, 30), np.float32), tmp_path / "one", fmt="nifti")
    assert read_scan(tmp_path / "one.nii.gz").shape == (20, 30)


def test_writers_png_tiff(tmp_path):
    import tifffile

    a = np.random.default_rng(0).random((20, 30)).astype(np.float32)
    p = write_array(a, tmp_path / "x", fmt="tiff")
    np.testing.assert_array_equal(tifffile.imread(p), a)
    q = write_array(a, tmp_path / "y", fmt="png")
    np.testing.assert_allclose(read_scan(q).array / 65535, a, atol=1 / 65535)
    with pytest.raises(InputError, match="2D"):
        write_array(np.zeros((2, 3, 4)), tmp_path / "z", fmt="png")


# ------------------------------------------------------------------------------------------------
# boxes
# ------------------------------------------------------------------------------------------------
def test_box_convention_inclusive():
    b = Box((2.0, 3.0), (4.0, 3.0))
    m = b.mask((6, 6))
    assert m.sum() == 3 and m[2, 3] and m[4, 3] and not m[5, 3]
    assert b.size == (3.0, 1.0)
    frac = Box((251.07, 382.07), (293.93, 424.93))
    sl = frac.index_slices()
    assert (sl[0].start, sl[0].stop, sl[1].start, sl[1].stop) == (252, 294, 383, 425)
    with pytest.raises(InputError):
        Box((5.0, 0.0), (4.0, 1.0))


def test_boxes_csv_2d_3d_and_slice(tmp_path):
    p = tmp_path / "b.csv"
    p.write_text(
        "image,label,x0,y0,x1,y1,z0,z1,z,subtlety\n"
        "a.png,nodule,10,20,30,40,,,,3\n"
        "b.png,normal,,,,,,,,\n"
        "vol,nodule,1,2,3,4,5,7,,\n"
        "vol,point,1,2,1,2,,,9,\n"
    )
    boxes = read_boxes(p)
    assert len(boxes) == 3
    assert boxes[0].lo == (20, 10) and boxes[0].hi == (40, 30) and boxes[0].properties["subtlety"] == 3
    assert boxes[1].lo == (5, 2, 1) and boxes[1].hi == (7, 4, 3)
    assert boxes[2].lo == (9, 2, 1) and boxes[2].hi == (9, 2, 1)
    out = tmp_path / "o.csv"
    write_boxes_csv(boxes, out)
    again = read_boxes_csv(out)
    assert [(b.lo, b.hi) for b in again] == [(b.lo, b.hi) for b in boxes]


def test_bad_box_csv(tmp_path):
    p = tmp_path / "b.csv"
    p.write_text("image,x0,y0\na,1,2\n")
    with pytest.raises(InputError, match="lacks column"):
        read_boxes(p)
    p.write_text("image,x0,y0,x1,y1\na,1,2,abc,4\n")
    with pytest.raises(InputError, match="line 2"):
        read_boxes(p)
    with pytest.raises(InputError, match="unsupported box file"):
        read_boxes(tmp_path / "x.json")


LIDC_XML = """<?xml version="1.0" encoding="UTF-8"?>
<LidcReadMessage xmlns="http://www.nih.gov">
<readingSession><servicingRadiologistID>42</servicingRadiologistID>
 <unblindedReadNodule><noduleID>N1</noduleID>
  <characteristics><subtlety>4</subtlety><malignancy>3</malignancy></characteristics>
  <roi><imageZposition>-5.0</imageZposition><inclusion>TRUE</inclusion>
   <edgeMap><xCoord>10</xCoord><yCoord>20</yCoord></edgeMap><edgeMap><xCoord>14</xCoord><yCoord>25</yCoord></edgeMap></roi>
  <roi><imageZposition>-2.5</imageZposition><inclusion>TRUE</inclusion>
   <edgeMap><xCoord>11</xCoord><yCoord>19</yCoord></edgeMap></roi>
  <roi><imageZposition>0.0</imageZposition><inclusion>FALSE</inclusion>
   <edgeMap><xCoord>90</xCoord><yCoord>90</yCoord></edgeMap></roi>
 </unblindedReadNodule>
 <unblindedReadNodule><noduleID>N2</noduleID>
  <roi><imageZposition>-2.5</imageZposition><inclusion>TRUE</inclusion>
   <edgeMap><xCoord>30</xCoord><yCoord>31</yCoord></edgeMap></roi>
 </unblindedReadNodule>
 <nonNodule><nonNoduleID>X</nonNoduleID><imageZposition>0.0</imageZposition><locus><xCoord>5</xCoord><yCoord>6</yCoord></locus></nonNodule>
</readingSession>
</LidcReadMessage>"""


def test_lidc_xml(tmp_path):
    p = tmp_path / "r.xml"
    p.write_text(LIDC_XML)
    boxes = read_lidc_xml(p, z_positions=[-5.0, -2.5, 0.0])
    big, small, non = boxes
    assert big.label == "nodule>=3mm" and big.lo == (0, 19, 10) and big.hi == (1, 25, 14)
    assert big.properties["malignancy"] == 3 and big.properties["reader_id"] == "42"
    assert small.label == "nodule<3mm" and small.lo == small.hi == (1, 31, 30)
    assert non.label == "non-nodule" and non.lo == (2, 6, 5)
    mm = read_lidc_xml(p)
    assert mm[0].lo[0] == -5.0 and mm[0].properties["z_units"] == "mm"
    (tmp_path / "bad.xml").write_text("<LidcReadMessage><unclosed>")
    with pytest.raises(InputError, match="well-formed"):
        read_lidc_xml(tmp_path / "bad.xml")


# ------------------------------------------------------------------------------------------------
# the real data, when present (never required)
# ------------------------------------------------------------------------------------------------
LIDC = SHARED / "lidc-idri-0001"


@pytest.mark.skipif(not (LIDC / "dicom").is_dir(), reason="../shared/data/lidc-idri-0001 absent")
def test_real_lidc_series_and_xml_match_published_boxes():
    import csv

    scan = read_scan(LIDC / "dicom")
    assert scan.shape == (133, 512, 512)
    assert scan.spacing == pytest.approx((2.5, 0.703125, 0.703125))
    assert scan.slice_positions[0] == pytest.approx(-340.0)
    boxes = read_lidc_xml(LIDC / "069.xml", scan.slice_positions)
    rows = list(csv.DictReader(open(LIDC / "LIDC-IDRI-0001_nodules3d_per_reader.csv")))
    for row in rows:
        match = [
            b
            for b in boxes
            if b.properties["nodule_id"] == row["nodule_id"]
            and b.properties["reader_index"] == int(row["reader_index"])
        ]
        assert len(match) == 1, row
        b = match[0]
        assert b.lo == (float(row["z0"]), float(row["y0"]), float(row["x0"]))
        assert b.hi == (float(row["z1"]), float(row["y1"]), float(row["x1"]))
