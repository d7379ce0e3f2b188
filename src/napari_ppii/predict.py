# SPDX-License-Identifier: BSD-3-Clause
"""Inference: a checkpoint + a scan -> anomaly map and variance map in the scan's own geometry.

The scan gets the training pre-processing (:func:`napari_ppii.preprocess.model_input`: window or
normalise, equalise, resize to the training size); each image / slice goes through
``model.predict(x, samples)``; the maps are resized back to the scan's grid, so they line up with the
scan and its boxes (same spacing, origin, direction).  A volume goes through in slabs of slices (the
pre-processing fitted once on the whole scan), so memory stays near the scan and its two maps.
Inference needs no part of the trainer: checkpoints and devices come from :mod:`napari_ppii.checkpoint`
and :mod:`napari_ppii.device`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .config import PPIIConfig
from .errors import InputError
from .io.scan import Scan
from .models import build_model
from .preprocess import resize
from .tta import DEFAULT_TTA, TTA_KINDS, ZOOM, resolve_tta  # noqa: F401 (the kinds and defaults: napari_ppii.tta)


@dataclass
class AnomalyMap:
    mean: np.ndarray  # same shape as the scan, in [0, 1]
    variance: np.ndarray  # same shape, variance over samples (zero for a plain U-Net)
    scan: Scan  # geometry the maps belong to
    samples: int  # samples per model (1 for a deterministic single model)
    raw: np.ndarray | None = None  # the map before an organ prior weighted ``mean`` (napari_ppii.prior)
    warning: str | None = None  # e.g. a scan of another modality than the model was trained on


class Predictor:
    """A loaded model ready to predict (keeps weights on ``device``), or an ensemble of them.

    ``checkpoint`` is one checkpoint or several (an ensemble file counts as its members).  Several models
    (e.g. the same configuration trained from different seeds) predict as one: their maps are averaged,
    and the variance map is the ensemble's total variance -- the mean of the members' own variances plus
    the variance between their means (a deep ensemble's uncertainty).  Members must take the same input
    (pre-processing, image size, modality); the first one's configuration describes the ensemble.

    ``tta`` (:data:`TTA_KINDS`, or ``auto``: :data:`DEFAULT_TTA` for the model's modality): ``mirror`` adds
    each model's map of the mirrored input, mirrored back, as one more member (mean and total variance as
    for an ensemble); ``mirror_zoom`` adds mirror's two views of the input enlarged :data:`ZOOM` times
    (bilinear), their maps brought back to the input's size."""

    def __init__(self, checkpoint: str | Path | Sequence[str | Path], device: str = "cpu", tta: str = "auto"):
        from .device import resolve_device

        paths = [Path(checkpoint)] if isinstance(checkpoint, (str, Path)) else [Path(c) for c in checkpoint]
        if not paths:
            raise InputError("no checkpoint to predict with")
        self.paths = paths
        self.path = paths[0]
        self.device = resolve_device(device)
        members, member_paths = [], []
        for p in paths:  # an ensemble file brings several members
            loaded = _load_members(p, self.device)
            members += loaded
            member_paths += [p] * len(loaded)
        self.cfg, self.model, self.step, self.inputs = members[0]
        self.models = [m[1] for m in members]
        #: each member's training step (one entry for a single model)
        self.steps = [m[2] for m in members]
        for path, (cfg, _model, _step, inputs) in zip(member_paths[1:], members[1:]):
            why = _input_mismatch(self.cfg, self.inputs, cfg, inputs)
            if why:
                raise InputError(f"cannot predict as one ensemble with {paths[0].name}'s model: {why}", path)
        #: the test-time augmentation in use (``auto`` resolved)
        self.tta = resolve_tta(tta, self.modality)

    @property
    def stochastic(self) -> bool:
        """Whether the variance map carries anything (a stochastic model, an ensemble, or test-time
        augmentation)."""
        return len(self.models) > 1 or self.tta != "none" or self.model.stochastic

    @property
    def modality(self) -> str | None:
        """``CT`` or ``radiograph``: what the model was trained on (None where the checkpoint does not say)."""
        return self.inputs.get("modality")

    def modality_warning(self, scan: Scan) -> str | None:
        """A warning when ``scan`` is of another modality than the model was trained on, else None."""
        from .preprocess import is_ct

        if self.modality is None:
            return None
        kind = "CT" if is_ct(scan) else "radiograph"
        if kind == self.modality:
            return None
        what = {"CT": "CT slices", "radiograph": "radiographs"}
        return (
            f"this model was trained on {what[self.modality]}, but the scan is a {kind}: its anomaly map is "
            f"unlikely to mean anything (use a model trained on {what[kind]})"
        )

    def predict_images(
        self,
        images: np.ndarray,
        samples: int | None = None,
        batch: int = 4,
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(N, S, S)`` pre-processed images -> mean and variance maps of the same shape."""
        n = self.cfg.model.samples if samples is None else samples
        means, vars_ = [], []
        for i in range(0, len(images), batch):
            x = torch.as_tensor(images[i : i + batch])[:, None].float().to(self.device)
            outs = []
            for zoom in (1.0, ZOOM) if self.tta == "mirror_zoom" else (1.0,):
                xz = x if zoom == 1.0 else _zoom(x, tuple(round(d * zoom) for d in x.shape[-2:]))
                for flip in (False, True) if self.tta != "none" else (False,):
                    xi = torch.flip(xz, dims=(-1,)) if flip else xz  # mirrored: each map mirrored back
                    for model in self.models:
                        o = model.predict(xi, samples=n)
                        o = tuple(torch.flip(t, dims=(-1,)) for t in o) if flip else o
                        outs.append(o if zoom == 1.0 else tuple(_zoom(t, tuple(x.shape[-2:])) for t in o))
            if len(outs) == 1:
                m, v = outs[0]
            else:  # the ensemble's total variance: within the members plus between their means
                ms = torch.stack([o[0] for o in outs])
                m = ms.mean(0)
                v = torch.stack([o[1] for o in outs]).mean(0) + ms.var(0, unbiased=False)
            means.append(m[:, 0].cpu().numpy())
            vars_.append(v[:, 0].cpu().numpy())
            if progress is not None:
                progress(min(i + batch, len(images)), len(images))
        return np.concatenate(means), np.concatenate(vars_)

    def predict_scan(self, scan: Scan, samples: int | None = None, progress=None, slab: int = 16) -> AnomalyMap:
        """Maps of ``scan`` in its own grid.  Volumes go ``slab`` slices at a time: the maps are written
        into preallocated arrays (the variance stays untouched -- unallocated zero pages -- for a
        deterministic model), so peak memory is about the scan plus its maps."""
        from .preprocess import InputMapping, model_input

        n = self.cfg.model.samples if samples is None else samples
        mapping = InputMapping(scan, self.cfg.preprocess)
        depth = scan.shape[0] if scan.ndim == 3 else 1
        shape2d = scan.shape[-2:]
        mean = np.zeros((depth,) + tuple(shape2d), np.float32)
        var = np.zeros((depth,) + tuple(shape2d), np.float32)  # np.zeros: untouched pages stay unallocated
        for z0 in range(0, depth, slab):
            z1 = min(depth, z0 + slab)
            x = model_input(scan, self.cfg, slices=slice(z0, z1), mapping=mapping)
            m, v = self.predict_images(x, samples)
            for i in range(z1 - z0):
                mean[z0 + i] = np.clip(resize(m[i], shape2d), 0, 1)
                if self.stochastic:
                    var[z0 + i] = np.clip(resize(v[i], shape2d), 0, None)
            if progress is not None:
                progress(z1, depth)
        if scan.ndim == 2:
            mean, var = mean[0], var[0]
        return AnomalyMap(mean, var, scan, n if self.stochastic else 1, warning=self.modality_warning(scan))


def _zoom(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(N, C, H, W)`` resized bilinearly to ``size``."""
    return torch.nn.functional.interpolate(t, size=size, mode="bilinear", align_corners=False)


def _load_members(path: Path, device) -> list[tuple[PPIIConfig, torch.nn.Module, int, dict]]:
    """A checkpoint's configuration, model (on ``device``, in eval mode), step and recorded inputs -- one
    entry, or one per member of an ensemble file (:func:`napari_ppii.checkpoint.export_ensemble`)."""
    from .checkpoint import load_members

    out = []
    for member in load_members(path):
        cfg = PPIIConfig.from_dict(member["config"], source=path)
        model = build_model(cfg.model)
        try:
            model.load_state_dict(member["model"])
        except RuntimeError as exc:
            raise InputError(
                f"weights do not fit the model the checkpoint describes ({str(exc).splitlines()[0]})", path
            ) from None
        model.to(device).eval()
        out.append((cfg, model, int(member.get("step", 0)), dict(member.get("inputs") or {})))
    return out


def _input_mismatch(cfg: PPIIConfig, inputs: dict, other: PPIIConfig, other_inputs: dict) -> str | None:
    """Why two models cannot share one input (pre-processing, image size, modality), or None."""
    if other.preprocess.model_dump() != cfg.preprocess.model_dump():
        return "its pre-processing differs"
    if other.data.image_size != cfg.data.image_size:
        return f"it takes {other.data.image_size} px images, not {cfg.data.image_size}"
    mods = inputs.get("modality"), other_inputs.get("modality")
    if None not in mods and mods[0] != mods[1]:
        return f"it was trained on {mods[1]}, not {mods[0]}"
    return None


# --------------------------------------------------------------------------------------------------
# Batch prediction: many files, folders, annotation CSVs -- one model load
# --------------------------------------------------------------------------------------------------
@dataclass
class ScanSource:
    """One scan to predict: a file, a DICOM series (folder + series UID), and the name its outputs take."""

    path: Path
    series: str | None = None
    name: str = ""


def _stem(path: Path) -> str:
    name = path.name
    for suf in (
        ".nii.gz",
        ".nii",
        ".mha",
        ".mhd",
        ".nrrd",
        ".nhdr",
        ".dcm",
        ".dicom",
        ".png",
        ".jpg",
        ".jpeg",
        ".tif",
        ".tiff",
        ".ima",
    ):
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return name


def expand_inputs(inputs, split: str | None = None) -> tuple[list[ScanSource], list[tuple[str, str]]]:
    """Inputs -> scans to predict, and (input, reason) for inputs that hold none.

    A file is one scan; an annotations CSV (``image`` column, paths relative to it) gives its rows' images
    (only ``split`` rows when it has a split column and ``split`` is given); a folder of radiographs /
    volume files gives each of them (sorted); a folder of DICOM gives each series (a folder of single-file
    radiographs: each file)."""
    import csv

    from .io.readers import folder_contents

    out: list[ScanSource] = []
    bad: list[tuple[str, str]] = []
    for raw in inputs:
        p = Path(raw)
        if not p.exists():
            bad.append((str(p), "no such file or folder"))
        elif p.is_file() and p.suffix.lower() == ".csv":
            try:
                with p.open(newline="", encoding="utf-8-sig") as fh:
                    rows = list(csv.DictReader(fh))
            except (OSError, UnicodeDecodeError, csv.Error) as exc:
                bad.append((str(p), f"unreadable CSV ({exc})"))
                continue
            if not rows or "image" not in rows[0]:
                bad.append((str(p), "an annotations CSV needs an 'image' column"))
                continue
            seen = []
            for r in rows:
                if split and "split" in r and (r["split"] or "").strip().lower() != split.lower():
                    continue
                img = Path(r["image"])
                img = img if img.is_absolute() else p.parent / img
                if img not in seen:
                    seen.append(img)
            if not seen:
                bad.append((str(p), f"no rows{f' with split={split}' if split else ''}"))
            out += [ScanSource(i) for i in seen]
        elif p.is_dir():
            # the one folder rule (io.readers.folder_contents, as ppii info): each DICOM series and each
            # image / volume file is a scan; every other file is listed as skipped, with the reason
            found = folder_contents(p)
            if not found.n_scans:
                bad.append(
                    (
                        str(p),
                        f"no scans in the folder ({len(found.skipped)} other file(s))"
                        if found.skipped
                        else "folder is empty",
                    )
                )
                continue
            out += [ScanSource(f) for f in found.files]
            series = found.series
            if len(series) > 1 and all(s.n_slices == 1 for s in series):
                out += [ScanSource(s.files[0]) for s in series]
            else:
                out += [
                    ScanSource(p, s.uid, p.name if len(series) == 1 and not found.files else f"{p.name}_{s.uid}")
                    for s in series
                ]
            bad += [(str(f), why) for f, why in found.skipped]
        else:  # a scan file; anything else is read too, and the reader names what is wrong with it
            out.append(ScanSource(p))
    names: dict[str, int] = {}
    for s in out:
        base = s.name or _stem(s.path)
        k = names.get(base, 0)
        names[base] = k + 1
        s.name = base if k == 0 else f"{base}_{k + 1}"
    return out, bad


#: mantissa bits of the map files ``ppii predict`` writes (10: float16's precision, relative error <= 1/2048;
#: the files stay float32 for every reader)
MAP_MANTISSA_BITS = 10


@dataclass
class BatchResult:
    rows: list[dict]
    skipped: list[tuple[str, str]]
    index: Path


def predict_batch(
    predictor: Predictor,
    sources: list[ScanSource],
    out: str | Path,
    *,
    samples: int | None = None,
    fmt: str | None = None,
    progress: Callable[[int, int, str, str], None] | None = None,
    skipped: list[tuple[str, str]] | None = None,
    prior=None,
    prior_mask: np.ndarray | None = None,
) -> BatchResult:
    """Predict every source with one loaded model; write ``<name>_anomaly_map`` and ``<name>_variance``
    (TIFF for 2D, NIfTI for volumes, unless ``fmt``) and ``index.csv`` (one row per input, with the
    reason for each skipped one).  An unreadable scan is skipped, never fatal.  ``progress(i, n, name,
    status)`` after each scan.

    ``prior`` (:class:`~napari_ppii.prior.PriorSettings`, kind ``lungs`` or ``mask`` with ``prior_mask``
    of each scan's shape): the anomaly map is weighted by the soft organ prior and the raw map is
    written beside it as ``<name>_anomaly_map_raw``."""
    from .prior import PriorSettings, weigh_in_place
    from .prior import prior_mask as prior_mask_of

    prior = prior or PriorSettings("none")
    import csv
    import time

    from .io import read_scan, write_array

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    skipped = list(skipped or [])
    for inp, reason in skipped:
        rows.append({"input": inp, "status": "skipped", "reason": reason})
    for i, src in enumerate(sources):
        t0 = time.perf_counter()
        label = str(src.path) + (f" (series {src.series})" if src.series else "")
        try:
            scan = read_scan(src.path, src.series)
            amap = predictor.predict_scan(scan, samples=samples)
            warning = amap.warning
            kind = fmt or ("nifti" if scan.ndim == 3 else "tiff")
            mean = amap.mean
            bits = MAP_MANTISSA_BITS  # float16's precision in float32 files: compact, and readable as before
            if prior.kind != "none":
                write_array(mean, out / f"{src.name}_anomaly_map_raw", like=scan, fmt=kind, mantissa_bits=bits)
                # the raw map is written: weighted in place now (a volume's two maps are not held together)
                pm = prior_mask_of(scan, prior, prior_mask).reshape(mean.shape)
                weigh_in_place(mean, pm, prior.for_scan(scan))
            a = write_array(mean, out / f"{src.name}_anomaly_map", like=scan, fmt=kind, mantissa_bits=bits)
            v = write_array(amap.variance, out / f"{src.name}_variance", like=scan, fmt=kind, mantissa_bits=bits)
            rows.append(
                {
                    "input": label,
                    "status": "ok",
                    "anomaly_map": a.name,
                    "variance": v.name,
                    "shape": "x".join(str(n) for n in scan.shape),
                    "max": f"{float(mean.max()):.6f}",
                    "prior": prior.kind,
                    "samples": amap.samples,
                    "seconds": f"{time.perf_counter() - t0:.2f}",
                    "warning": warning or "",
                }
            )
            status = "ok" if not warning else f"ok, but {warning}"
            del scan, amap
        except InputError as exc:
            reason = exc.reason if exc.path is not None and Path(exc.path) in (src.path, Path(src.path)) else str(exc)
            skipped.append((label, reason))
            rows.append({"input": label, "status": "skipped", "reason": reason})
            status = f"skipped: {reason}"
        if progress is not None:
            progress(i + 1, len(sources), src.name, status)
    index = out / "index.csv"
    cols = [
        "input",
        "status",
        "anomaly_map",
        "variance",
        "shape",
        "max",
        "prior",
        "samples",
        "seconds",
        "reason",
        "warning",
    ]
    with index.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in cols})
    return BatchResult(rows, skipped, index)
