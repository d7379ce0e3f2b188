# SPDX-License-Identifier: BSD-3-Clause
"""Hand-made bad inputs for the reader corpus test: each file a way a scan can be broken."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _dicom(path: Path, rows=32, cols=32, **edits):
    """A small valid CT-like DICOM, then ``edits`` (element keyword -> value, or (VR, raw value))."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.PixelData = (np.arange(rows * cols, dtype=np.uint16) % 4096).tobytes()
    for key, value in edits.items():
        if isinstance(value, tuple):  # (VR, raw bytes or text): written as given, never parsed or validated
            tag = pydicom.datadict.tag_for_keyword(key)
            raw = value[1].encode() if isinstance(value[1], str) else value[1]
            raw = raw + (b" " if len(raw) % 2 else b"")
            ds[tag] = pydicom.dataelem.RawDataElement(pydicom.tag.Tag(tag), value[0], len(raw), raw, 0, False, True)
        else:
            setattr(ds, key, value)
    with pydicom.config.disable_value_validation():
        ds.save_as(path, enforce_file_format=True)
    return path


def make_broken_files(folder: Path) -> dict[str, Path]:
    """Write the broken inputs into ``folder``; return name -> path."""
    import imageio.v3 as iio
    import nibabel as nib
    import SimpleITK as sitk
    import tifffile

    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}

    def put(name, data: bytes):
        p = folder / name
        p.write_bytes(data)
        out[name] = p

    good_dcm = _dicom(folder / "good.dcm", 64, 64)
    dbytes = good_dcm.read_bytes()
    img = (np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8)
    iio.imwrite(folder / "good.png", img)
    pbytes = (folder / "good.png").read_bytes()
    # truncated
    put("truncated.dcm", dbytes[: len(dbytes) // 2])
    put("truncated_header.dcm", dbytes[:140])
    put("truncated.png", pbytes[: len(pbytes) // 2])
    iio.imwrite(folder / "good.jpg", img)
    put("truncated.jpg", (folder / "good.jpg").read_bytes()[:200])
    # empty
    for name in ("empty.dcm", "empty.png", "empty.nii.gz", "empty.mha", "empty.tif"):
        put(name, b"")
    # wrong extension / not an image
    put("png_named.dcm", pbytes)
    put("dicom_named.png", dbytes)
    put("text.nii", b"this is not a NIfTI file\n" * 20)
    put("text.mha", b"ObjectType = Image\nNDims = two\n")
    put("noise.tif", np.random.default_rng(1).bytes(500))
    put("data.csv", b"image,x0,y0\n")
    put("noextension", dbytes[:300])
    # bad VR values
    out["bad_frames.dcm"] = _dicom(folder / "bad_frames.dcm", NumberOfFrames=("IS", "1A"))
    out["bad_rows.dcm"] = _dicom(folder / "bad_rows.dcm", Rows=("US", b"\xff"))
    out["bad_slope.dcm"] = _dicom(folder / "bad_slope.dcm", RescaleSlope=("DS", "abc"))
    out["bad_bits.dcm"] = _dicom(folder / "bad_bits.dcm", BitsStored=40)
    out["bad_spacing.dcm"] = _dicom(folder / "bad_spacing.dcm", PixelSpacing=("DS", "x\\y"))
    # huge declared sizes
    out["huge_rows.dcm"] = _dicom(folder / "huge_rows.dcm", Rows=65535, Columns=65535)
    out["huge_frames.dcm"] = _dicom(folder / "huge_frames.dcm", NumberOfFrames=100000)
    raw = folder / "huge.raw"
    raw.write_bytes(b"\0" * 64)
    (folder / "huge.mhd").write_text(
        "ObjectType = Image\nNDims = 3\nDimSize = 100000 100000 100000\n"
        "ElementType = MET_SHORT\nElementDataFile = huge.raw\n"
    )
    out["huge.mhd"] = folder / "huge.mhd"
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((30000, 30000, 30000))
    hdr.set_data_dtype(np.int16)
    put("huge.nii", hdr.binaryblock + b"\0" * 4 + b"\0" * 128)
    # zero-length pixel data
    out["zero_pixels.dcm"] = _dicom(folder / "zero_pixels.dcm", PixelData=("OW", b""))
    out["short_pixels.dcm"] = _dicom(folder / "short_pixels.dcm", PixelData=("OW", b"\0" * 100))
    # NaN / Inf
    f = np.ones((40, 40), np.float32)
    f[3, 4] = np.nan
    tifffile.imwrite(folder / "nan.tif", f)
    out["nan.tif"] = folder / "nan.tif"
    v = np.zeros((20, 24, 24), np.float32)
    v[1, 2, 3] = np.inf
    nib.save(nib.Nifti1Image(v, np.eye(4)), folder / "inf.nii.gz")
    out["inf.nii.gz"] = folder / "inf.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.where(v == np.inf, np.nan, v)), str(folder / "nan.mha"))
    out["nan.mha"] = folder / "nan.mha"
    # one pixel, tiny
    iio.imwrite(folder / "one_pixel.png", np.zeros((1, 1), np.uint8))
    out["one_pixel.png"] = folder / "one_pixel.png"
    out["one_pixel.dcm"] = _dicom(folder / "one_pixel.dcm", 1, 1)
    iio.imwrite(folder / "line.png", np.zeros((1, 300), np.uint8))
    out["line.png"] = folder / "line.png"
    # colour
    rgb = np.stack([img, img[::-1], img.T], -1)
    iio.imwrite(folder / "colour.png", rgb)
    out["colour.png"] = folder / "colour.png"
    out["colour.dcm"] = _dicom(
        folder / "colour.dcm",
        SamplesPerPixel=3,
        PhotometricInterpretation="RGB",
        BitsAllocated=8,
        BitsStored=8,
        HighBit=7,
        PixelData=rgb.tobytes(),
    )
    sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(folder / "colour.mha"))
    out["colour.mha"] = folder / "colour.mha"
    # multi-frame
    frames = np.zeros((3, 32, 32), np.uint16)
    out["multiframe.dcm"] = _dicom(folder / "multiframe.dcm", NumberOfFrames=3, PixelData=frames.tobytes())
    tifffile.imwrite(folder / "stack.tif", np.zeros((3, 40, 40), np.uint16))
    out["stack.tif"] = folder / "stack.tif"
    # folders
    (folder / "empty_dir").mkdir(exist_ok=True)
    out["empty_dir"] = folder / "empty_dir"
    junk = folder / "junk_dir"
    junk.mkdir(exist_ok=True)
    (junk / "a.txt").write_text("not dicom")
    out["junk_dir"] = junk
    mixed = folder / "mixed_sizes_dir"
    mixed.mkdir(exist_ok=True)
    for i, (r, c) in enumerate(((32, 32), (40, 40))):
        _dicom(
            mixed / f"s{i}.dcm",
            r,
            c,
            ImagePositionPatient=[0, 0, float(i)],
            ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
            SeriesInstanceUID="1.2.3",
        )
    out["mixed_sizes_dir"] = mixed
    return out


def classify(path: Path, workdir: Path, timeout_s: int = 60) -> tuple[str, str]:
    """Run ``path`` through :func:`read_scan` and ``ppii synthesize``: ("worked" | "clean" | "other", detail).

    "worked": read and synthesised (exit 0); "clean": an ``InputError`` from the reader, or exit 2 with one
    ``ppii: error:`` line; "other": any other exception, exit code, a traceback, or a run past ``timeout_s``."""
    import contextlib
    import io
    import signal

    from napari_ppii.cli import main
    from napari_ppii.errors import InputError
    from napari_ppii.io import read_scan

    def _alarm(*_):
        raise TimeoutError(f"no answer within {timeout_s} s")

    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(timeout_s)
    try:
        try:
            read_scan(path)
        except InputError as exc:
            return "clean", f"read: {exc.reason}"
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            rc = main(["synthesize", str(path), "--out", str(workdir), "--size", "64", "--seed", "0"])
        lines = [ln for ln in err.getvalue().splitlines() if ln.startswith("ppii:")]
        if rc == 0:
            return "worked", ""
        if rc == 2 and len(lines) == 1 and "Traceback" not in err.getvalue():
            return "clean", f"synthesize: {lines[0]}"
        return "other", f"synthesize exit {rc}: {err.getvalue()[-300:]}"
    except BaseException as exc:  # noqa: BLE001 - what the test is looking for
        if isinstance(exc, KeyboardInterrupt):
            raise
        return "other", f"{type(exc).__name__}: {exc}"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
