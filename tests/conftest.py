# SPDX-License-Identifier: BSD-3-Clause
"""Shared fixtures: scans and files the tests make themselves."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
RESOURCES = Path(__file__).resolve().parents[1] / "resources"


def make_dicom(
    path: Path,
    pixels: np.ndarray,
    *,
    position=(0.0, 0.0, 0.0),
    instance=1,
    series_uid="1.2.3.4",
    modality="CT",
    slope=1.0,
    intercept=-1024.0,
    photometric="MONOCHROME2",
    bits_stored=None,
    spacing=(0.7, 0.7),
    orientation=(1, 0, 0, 0, 1, 0),
    signed=None,
    extra=None,
) -> Path:
    """Write a minimal but valid single-frame DICOM file (explicit VR little endian)."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    pixels = np.asarray(pixels)
    signed = pixels.dtype.kind == "i" if signed is None else signed
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    sop = generate_uid()
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = sop
    ds.SeriesInstanceUID = series_uid
    ds.StudyInstanceUID = "1.2.3"
    ds.Modality = modality
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [float(v) for v in position]
    ds.ImageOrientationPatient = [float(v) for v in orientation]
    ds.PixelSpacing = [float(v) for v in spacing]
    ds.SliceThickness = 1.0
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    ds.WindowCenter = -600
    ds.WindowWidth = 1600
    for k, v in (extra or {}).items():
        setattr(ds, k, v)
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def dicom_series(tmp_path):
    """A 6-slice CT series with shuffled file names and InstanceNumber running against z.

    Slice ``k`` (in z order) holds the value ``100 * k`` (+1024 stored offset), so order is checkable.
    """
    rng = np.random.default_rng(0)
    folder = tmp_path / "series"
    folder.mkdir()
    n = 6
    names = [f"f{v:03d}.dcm" for v in rng.permutation(n)]
    zs = np.arange(n) * 2.5 - 10.0
    for k in range(n):
        arr = np.full((20, 24), 100 * k + 1024, dtype=np.int16)
        arr[0, 0] = 1024 - 1000  # one air voxel
        make_dicom(folder / names[k], arr, position=(-50.0, -60.0, zs[k]), instance=n - k)
    (folder / "notes.txt").write_text("not dicom")
    return folder


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def smooth_image(shape, seed=0):
    """A smooth random image in [0, 1] (sum of a few Gaussians)."""
    r = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(0, 1, n) for n in shape], indexing="ij")
    img = np.zeros(shape)
    for _ in range(6):
        c = r.random(len(shape))
        w = 0.05 + 0.2 * r.random()
        img += r.random() * np.exp(-sum((g - ci) ** 2 for g, ci in zip(grids, c)) / (2 * w**2))
    img += 0.05 * r.random(shape)
    img -= img.min()
    return (img / img.max()).astype(np.float32)


os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# Tests train tiny models: one thread each is faster than two fighting (and training subprocesses
# started by the widget tests inherit it), so the suite does not oversubscribe a 2-core machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")
try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Record each phase's report on the item (napari's make_napari_viewer teardown reads rep_call)."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


def nih_all_test_csv(tmp_path):
    """The bundled NIH annotations with every row marked split=test and absolute image paths."""
    import csv

    rows = list(csv.DictReader(open(RESOURCES / "nih-cxr" / "annotations.csv")))
    for r in rows:
        r["split"], r["image"] = "test", str(RESOURCES / "nih-cxr" / r["image"])
    out = tmp_path / "test.csv"
    with open(out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return out


def tiny_checkpoint(tmp_path):
    """A U-Net trained for two steps on the bundled NIH radiographs at 64x64: its last.pt."""
    from napari_ppii.config import PPIIConfig
    from napari_ppii.training import train

    cfg = PPIIConfig().with_overrides(
        [
            "model.base_channels=4",
            "model.levels=3",
            "data.image_size=64",
            "training.steps=2",
            "training.val_every=2",
            "training.batch_size=2",
            "data.val_samples=2",
            f"data.train={RESOURCES / 'nih-cxr'}",
            f"training.out_dir={tmp_path / 'run'}",
        ]
    )
    train(cfg)
    return tmp_path / "run" / "last.pt"


def chest_phantom(size=256, seed=0, nodule=None):
    """A radiograph-like phantom in [0, 1]: dark air around a bright body, two dark lung fields, a
    brighter mediastinum, smooth texture.  ``nodule=(row, col, radius, contrast)`` adds a soft bright
    blob.  Returns ``(image, true lung mask)``."""
    r = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    body = ((yy - 0.55) / 0.5) ** 2 + ((xx - 0.5) / 0.44) ** 2 <= 1
    lungs = np.zeros((size, size), bool)
    for cx in (0.3, 0.7):
        lungs |= ((yy - 0.45) / 0.28) ** 2 + ((xx - cx) / 0.13) ** 2 <= 1
    img = np.where(body, 0.75, 0.12) - 0.4 * lungs
    from scipy import ndimage as ndi

    img = ndi.gaussian_filter(img, size / 128) + 0.03 * ndi.gaussian_filter(r.standard_normal((size, size)), 2)
    if nodule is not None:
        ny, nx, rad, c = nodule
        img += c * np.exp(-((yy * size - ny) ** 2 + (xx * size - nx) ** 2) / (2 * (rad / 1.5) ** 2))
    img = (img - img.min()) / (img.max() - img.min())
    return img.astype(np.float32), lungs


def ct_phantom(shape=(24, 96, 96), nodule=True):
    """A chest-CT-like volume in HU: air outside an elliptic body (40 HU), two lungs (-850 HU), a
    nodule (+30 HU) inside the left lung.  Returns ``(volume, true lung mask)``."""
    z, y, x = np.mgrid[: shape[0], : shape[1], : shape[2]]
    ny, nx = y / shape[1], x / shape[2]
    body = ((ny - 0.5) / 0.42) ** 2 + ((nx - 0.5) / 0.46) ** 2 <= 1
    lungs = np.zeros(shape, bool)
    for cx in (0.32, 0.68):
        lungs |= ((ny - 0.48) / 0.28) ** 2 + ((nx - cx) / 0.13) ** 2 <= 1
    vol = np.where(body, 40.0, -1000.0)
    vol[lungs] = -850.0
    if nodule:
        nod = ((z - shape[0] // 2) ** 2 + (y - 0.48 * shape[1]) ** 2 + (x - 0.32 * shape[2]) ** 2) <= 4**2
        vol[nod] = 30.0
    return vol.astype(np.float32), lungs
