# SPDX-License-Identifier: BSD-3-Clause
"""Anatomy masks (radiograph and CT lung fields), on phantoms and on real scans."""

import numpy as np
import pytest

from conftest import RESOURCES, SHARED, chest_phantom, ct_phantom
from napari_ppii.anatomy import lung_mask, lung_mask_ct, lung_mask_cxr, lung_prior, mask_coverage
from napari_ppii.errors import InputError


def _iou(a, b):
    return (a & b).sum() / (a | b).sum()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_radiograph_lung_mask_finds_the_phantom_lungs(seed):
    img, truth = chest_phantom(256, seed)
    m = lung_mask_cxr(img)
    assert m.shape == img.shape and m.dtype == bool
    assert (m & truth).sum() > 0.95 * truth.sum()  # covers the lungs (measured 1.0)
    # little outside: the mediastinum column between the lungs stays out, and beyond the lungs only the
    # deliberate margin (2.5% of the side, for juxta-pleural nodules) is added (measured 0.38-0.41)
    assert m[:, 118:138].mean() < 0.05
    assert (m & ~truth).sum() < 0.5 * truth.sum()


def test_radiograph_lung_mask_any_size_and_clear_errors():
    img, truth = chest_phantom(256, 0)
    from skimage.transform import resize

    big = resize(img, (600, 500))
    m = lung_mask_cxr(big)
    assert m.shape == (600, 500) and _iou(m, resize(truth.astype(float), (600, 500)) > 0.5) > 0.7
    with pytest.raises(InputError, match="constant"):
        lung_mask_cxr(np.zeros((64, 64)))
    with pytest.raises(InputError, match="NaN"):
        lung_mask_cxr(np.full((64, 64), np.nan))
    with pytest.raises(InputError, match="2D"):
        lung_mask_cxr(np.zeros((4, 4, 4, 4)))


def test_ct_lung_mask_keeps_nodules_and_drops_outside_air():
    vol, truth = ct_phantom()
    m = lung_mask_ct(vol)
    assert m.shape == vol.shape
    assert _iou(m, truth) > 0.9
    assert m[vol.shape[0] // 2, int(0.48 * 96), int(0.32 * 96)]  # the nodule's centre (holes filled)
    assert not m[:, :5, :].any() and not m[:, :, :5].any()  # air outside the body
    assert lung_mask(vol).sum() == m.sum()  # 3D array -> CT


def test_lung_prior_is_soft_and_peaks_in_the_lungs():
    _, truth = chest_phantom(128, 0)
    p = lung_prior(truth)
    assert p.max() == pytest.approx(1.0) and p.min() >= 0
    assert p[truth].mean() > 3 * p[~truth].mean()


def test_bundled_nih_radiographs_masks_cover_the_nodules():
    from napari_ppii.io import read_boxes, read_scan

    boxes = read_boxes(RESOURCES / "nih-cxr" / "annotations.csv")
    hit, areas = {}, []
    for f in sorted((RESOURCES / "nih-cxr").glob("*.png")):
        scan = read_scan(f)
        m = lung_mask_cxr(scan.array)
        areas.append(m.mean())
        mine = [b for b in boxes if b.image and b.image.endswith(f.name)]
        if mine:
            hit[f.stem] = mask_coverage(m, [b.centre for b in mine])
    # 00020774_000's nodule lies in the right lung field; 00013751_003's (with edema and effusion) lies
    # behind the heart shadow: the dark field alone misses it, the mirrored field covers it
    assert hit == {"00013751_003": 1.0, "00020774_000": 1.0}
    f = RESOURCES / "nih-cxr" / "00013751_003.png"
    dark_only = lung_mask_cxr(read_scan(f).array, symmetric=False)
    assert mask_coverage(dark_only, [b.centre for b in boxes if b.image and b.image.endswith(f.name)]) == 0.0
    assert all(0.1 < a < 0.45 for a in areas)  # lungs, not the whole image


@pytest.mark.skipif(not (SHARED / "lidc-idri-0001").exists(), reason="LIDC-IDRI-0001 absent")
def test_lidc_ct_mask_covers_the_radiologists_nodules():
    from napari_ppii.io import read_boxes, read_scan

    d = SHARED / "lidc-idri-0001"
    scan = read_scan(d / "dicom")
    m = lung_mask(scan)
    boxes = [b for b in read_boxes(d / "069.xml", scan.slice_positions) if b.ndim == 3]
    assert mask_coverage(m, [b.centre for b in boxes]) >= 0.7  # measured 0.77 (juxta-pleural marks fall out)
    assert 0.03 < m.mean() < 0.2  # the lungs, not the body


def test_radiograph_mask_covers_a_lung_made_opaque_and_the_field_behind_the_heart():
    """A phantom whose left lung's lower half is opaque (a mass / effusion, as bright as soft tissue),
    with a nodule there, and a 'heart' that hides the medial part of the left lung: the dark field alone
    leaves the nodule out, the mirrored field covers it; the mediastinum column still stays mostly out."""
    img, truth = chest_phantom(256, 0)
    yy, xx = np.mgrid[:256, :256] / 256
    opaque = truth & (xx > 0.5) & (yy > 0.5)
    heart = truth & (xx > 0.5) & (xx < 0.66) & (yy > 0.35)
    img = np.where(opaque | heart, np.percentile(img[~truth & (xx > 0.2) & (xx < 0.8)], 60), img)
    nodule = (0.62 * 256, 0.63 * 256)  # in the opaque, hidden part of the left lung
    dark_only = lung_mask_cxr(img, symmetric=False)
    m = lung_mask_cxr(img)
    assert not dark_only[int(nodule[0]), int(nodule[1])]
    assert m[int(nodule[0]), int(nodule[1])]
    assert (m & truth).sum() > 0.9 * truth.sum() and m.mean() < 0.4
    assert m[:, 122:134].mean() < 0.15


def test_ct_mask_covers_a_nodule_on_the_pleura_and_keeps_out_the_chest_wall():
    """A nodule attached to the lateral pleura of the left lung (it indents the threshold mask): inside
    the envelope, outside the threshold mask; the body wall and the air outside stay out."""
    vol, truth = ct_phantom((24, 160, 160), nodule=False)
    z, y, x = np.mgrid[: vol.shape[0], :160, :160]
    # the left lung's lateral edge at row 0.48 is at column (0.32 - 0.13) * 160 = 30.4: a nodule (6% of
    # the width, ~25 mm in a chest) centred just inside it, half in the wall
    nod = (z - 12) ** 2 + (y - 77) ** 2 + (x - 32) ** 2 <= 5**2
    vol[nod] = 30.0
    centre = (12, 77, 33)
    plain = lung_mask_ct(vol, envelope=False)
    m = lung_mask_ct(vol)
    assert not plain[centre] and m[centre]
    assert (m & truth).sum() >= 0.99 * truth.sum()
    body_wall = (~truth) & (vol > -500) & ~nod
    assert (m & body_wall).sum() < 0.15 * truth.sum()
    assert not m[:, :5, :].any() and not m[:, :, :5].any()


def test_ct_mask_leaves_out_the_trachea_and_keeps_a_dark_lung_apex():
    """The trachea (air, -1000 HU, at the midline) joins the left lung in 3D through a 'bronchus' in the
    lowest slices, so the 3D components keep it; above them it is a small dark component of its own in
    each slice: left out of the mask (the closing and the envelope do not take it back in).  The left
    lung's apex, as small and as dark (emphysema, -960 HU) but to the side, stays in."""
    shape = (24, 96, 96)
    vol, truth = ct_phantom(shape, nodule=True)
    z, y, x = np.mgrid[: shape[0], : shape[1], : shape[2]]
    trachea = ((y - 40) ** 2 + (x - 48) ** 2 <= 3**2) & (z >= 2)
    bronchus = (np.abs(y - 40) <= 1) & (x >= 30) & (x <= 48) & (z >= 2) & (z <= 3)
    vol[trachea | bronchus] = -1000.0
    top = z >= 20  # the left lung's apex: a small dark disk on top of the lung, joined to it in 3D
    left = truth & (x < 48)
    vol[left & top] = 40.0
    apex = ((y - 46) ** 2 + (x - 31) ** 2 <= 4**2) & top
    vol[apex] = -960.0
    kept = lung_mask_ct(vol, airways=True)
    m = lung_mask_ct(vol)
    centre = (shape[0] // 2, 40, 48)
    assert kept[centre] and not m[centre]  # the old mask held the trachea; this one leaves it out
    assert not (m & trachea & (z >= 4)).any()
    lungs = truth & ~top
    assert (m & lungs).sum() >= 0.99 * lungs.sum()  # the lungs stay in
    assert m[shape[0] // 2, int(0.48 * 96), int(0.32 * 96)]  # and the nodule
    assert kept[apex].all() and m[apex].all()  # small and dark, but not at the midline: lung
