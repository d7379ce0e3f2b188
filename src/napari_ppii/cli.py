# SPDX-License-Identifier: BSD-3-Clause
"""The ``ppii`` command line: thin over the library.

Every command prints a bad-input problem as one line on stderr (``ppii: error: ...``) and exits 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Sequence


from . import __version__
from .config import PPIIConfig
from .errors import InputError


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="YAML/JSON configuration (or a params.json of an earlier run)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a configuration value, e.g. synthesis.n_raters=[1,5] (repeatable)",
    )


def _load_config(args) -> PPIIConfig:
    cfg = PPIIConfig.load(args.config) if args.config else PPIIConfig()
    return cfg.with_overrides(args.overrides)


# --------------------------------------------------------------------------------------------------
# ppii info
# --------------------------------------------------------------------------------------------------
def cmd_info(args) -> int:
    from .io import read_scan
    from .io.readers import folder_contents

    path = Path(args.input)
    if path.is_dir():  # the folder as ppii predict reads it: each series and each image file is a scan
        found = folder_contents(path)
        for s in found.series:
            print(f"series {s.uid}  modality {s.modality}  slices {s.n_slices}  {s.description}")
        for f in found.files:
            print(f"file {f.name}")
        for f, why in found.skipped:
            print(f"not read: {f.name} ({why})")
        if not found.series:  # a folder of image files: describe each is ppii info FILE's job
            if not found.files:
                raise InputError("no scans in the folder", path)
            print(f"{found.n_scans} scan(s); ppii predict reads each of them")
            return 0
        if found.files:
            print(f"{found.n_scans} scans; ppii predict reads each of them; below: the largest series")
    scan = read_scan(path, args.series)
    a = scan.array
    spacing = tuple(round(s, 4) for s in scan.spacing)
    print(
        f"{scan.path}: {scan.ndim}D {scan.modality} shape {scan.shape} spacing {spacing} "
        f"origin {tuple(round(o, 2) for o in scan.origin)} values {a.min():.1f}..{a.max():.1f}"
    )
    return 0


# --------------------------------------------------------------------------------------------------
# ppii synthesize
# --------------------------------------------------------------------------------------------------
def cmd_synthesize(args) -> int:
    from .io import read_scan
    from .preprocess import prepare
    from .synthesis import AnomalySpec
    from .workflows import placement_mask, synthesize_scan

    plan = None
    if args.replay:
        try:
            record = json.loads(Path(args.replay).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read the parameters JSON ({exc})", args.replay) from None
        cfg = PPIIConfig.from_dict(record.get("config", {}), source=args.replay).with_overrides(args.overrides)
        args.input = args.input or record.get("input")
        args.source = args.source or record.get("source")
        args.series = args.series or record.get("series_uid")
        args.format = args.format or record.get("format")
        plan = [AnomalySpec.from_dict(d) for d in record.get("anomalies", [])]
    else:
        cfg = PPIIConfig.load(args.config) if args.config else PPIIConfig()
        upd = {}
        if args.method:
            upd["synthesis.method"] = args.method
        if args.seed is not None:
            upd["seed"] = args.seed
        if args.size is not None:
            upd["preprocess.size"] = args.size
        if args.window is not None:
            upd["preprocess.window"] = args.window
        # --method and --set together, in one validation: --method nsa --set synthesis.nsa_patches=2
        cfg = cfg.with_overrides([f"{k}={json.dumps(v)}" for k, v in upd.items()] + list(args.overrides))
    if not args.input:
        raise InputError("no INPUT given (a scan file or DICOM folder, or --replay with a params.json)")

    raw = read_scan(args.input, args.series)
    scan = prepare(raw, cfg.preprocess)
    from .synthesis.plan import validate_images

    validate_images(scan.array[None], cfg.synthesis)  # size and values first: clearer than a mask error
    given = None
    if getattr(args, "mask", None):
        given = read_scan(args.mask).array
    try:
        mask = placement_mask(
            cfg.synthesis.placement,
            raw,
            scan.shape,
            given=given,
            missing="synthesis.placement=mask needs --mask FILE (a mask image or volume of the input's shape)",
        )
    except InputError as exc:
        raise InputError(exc.reason, args.mask) if given is not None else exc from None
    del raw, given  # the scan as read is not needed past its mask: a CT's HU volume is not held any longer
    source = None
    if args.source:
        src_scan = read_scan(args.source)
        if src_scan.ndim != scan.ndim:
            raise InputError(f"source is {src_scan.ndim}D but the input is {scan.ndim}D", args.source)
        source = prepare(src_scan, cfg.preprocess).array
    out_ = synthesize_scan(scan.array, cfg, source=source, mask=mask, plan=plan)
    synth, result = out_.synthesizer, out_.result

    from .workflows import export_sample

    out = Path(args.out)
    record = export_sample(
        out,
        scan,
        result,
        cfg,
        fmt=args.format,
        resolved=synth.config.model_dump(mode="json"),
        command="synthesize",
        input=str(args.input),
        source=str(args.source) if args.source else None,
        series_uid=scan.metadata.get("series_instance_uid"),
    )
    written = record["files"]
    print(
        f"{cfg.synthesis.method}: {len(result.boxes)} anomal{'y' if len(result.boxes) == 1 else 'ies'} in "
        f"{scan.ndim}D {scan.shape}; wrote {', '.join(written.values())}, boxes.csv, params.json to {out}"
    )
    return 0


# --------------------------------------------------------------------------------------------------
# ppii train / predict
# --------------------------------------------------------------------------------------------------
def cmd_train(args) -> int:
    from .training import config_from_checkpoint, train

    if args.resume and not args.config:
        cfg = config_from_checkpoint(args.resume).with_overrides(args.overrides)
    else:
        cfg = _load_config(args)
    from .training.rundir import plan_run_dir

    given = {"training.device": args.device, "training.out_dir": args.out, "data.train": args.data}
    cfg = cfg.with_values({k: v for k, v in given.items() if v})
    if int(os.environ.get("RANK", "0")) == 0:
        out, note = plan_run_dir(cfg.training.out_dir, args.resume)
        if note:
            print(f"ppii: {note}", file=sys.stderr)
            cfg = cfg.with_values({"training.out_dir": out})
    res = train(cfg, resume=args.resume, progress=not args.quiet)
    if int(os.environ.get("RANK", "0")) == 0:
        print(
            f"trained {cfg.model.backbone} to step {res.step}: loss {res.last_loss:.4f}, best {res.select} score "
            f"{res.best_score:.4f}; checkpoints in {cfg.training.out_dir}"
        )
    return 0


ENSEMBLE_HELP = (
    "a checkpoint; repeated (--checkpoint A --checkpoint B), the models predict as one ensemble (maps averaged, "
    "variance = the ensemble's total variance; they must take the same input)"
)


def _checkpoint_record(paths: list[Path]) -> str | list[str]:
    """The checkpoint(s) as a record names them: one path, or the ensemble's list."""
    return str(paths[0]) if len(paths) == 1 else [str(p) for p in paths]


def _step_record(pred) -> int | list[int]:
    return pred.step if len(pred.steps) == 1 else pred.steps


def cmd_predict(args) -> int:
    from .predict import Predictor, expand_inputs, predict_batch

    pred = Predictor(args.checkpoint, device=args.device or "cpu", tta=args.tta)
    if args.series and len(args.inputs) == 1 and Path(args.inputs[0]).is_dir():
        from .predict import ScanSource

        sources, bad = [ScanSource(Path(args.inputs[0]), args.series, Path(args.inputs[0]).name)], []
    else:
        sources, bad = expand_inputs(args.inputs, args.split)
    if not sources and not bad:
        raise InputError("no scans to predict")
    out = Path(args.out)

    def progress(i, n, name, status):
        if not args.quiet:
            print(f"[{i}/{n}] {name}: {status}", file=sys.stderr, flush=True)

    prior, pmask = _prior_args(args)
    res = predict_batch(
        pred,
        sources,
        out,
        samples=args.samples,
        fmt=args.format,
        progress=progress,
        skipped=bad,
        prior=prior,
        prior_mask=pmask,
    )
    ok = [r for r in res.rows if r["status"] == "ok"]
    for r in ok:
        if r.get("warning"):
            print(f"ppii: warning: {r['input']}: {r['warning']}", file=sys.stderr)
    (out / "predict.json").write_text(
        json.dumps(
            {
                "checkpoint": _checkpoint_record(args.checkpoint),
                "step": _step_record(pred),
                "backbone": pred.cfg.model.backbone,
                "inputs": [str(i) for i in args.inputs],
                "predicted": len(ok),
                "skipped": len(res.skipped),
                "prior": prior.to_dict(),
                "tta": pred.tta,
                "index": res.index.name,
            },
            indent=2,
        )
    )
    print(
        f"{pred.cfg.model.backbone}: {len(ok)} scan{'s' if len(ok) != 1 else ''} predicted into {out} "
        f"(index: {res.index.name})"
    )
    if res.skipped:
        print(f"ppii: {len(res.skipped)} input{'s' if len(res.skipped) != 1 else ''} skipped:", file=sys.stderr)
        for inp, reason in res.skipped:
            print(f"  {inp}: {reason}", file=sys.stderr)
        return 1
    return 0


def _prior_args(args):
    """``(PriorSettings, mask or None)`` from ``--prior``, ``--prior-sigma``, ``--prior-floor``, ``--prior-mask``."""
    from dataclasses import replace

    from .prior import DEFAULT_PRIOR

    kind = args.prior or ("lungs" if getattr(args, "restrict", None) == "lungs" else DEFAULT_PRIOR.kind)
    prior = replace(DEFAULT_PRIOR, kind=kind)  # radiographs' and CT's own defaults, unless given
    if getattr(args, "restrict", None):
        prior = replace(prior, floor=0.0, floor_ct=None)
    if args.prior_floor is not None:  # a value given serves both modalities
        prior = replace(prior, floor=args.prior_floor, floor_ct=None)
    if args.prior_sigma is not None:
        prior = replace(prior, sigma=args.prior_sigma, sigma_ct=None)
    mask = None
    if kind == "mask":
        if not args.prior_mask:
            raise InputError("--prior mask needs --prior-mask (a mask file of the scan's shape)")
        from .io import read_scan

        mask = read_scan(args.prior_mask).array
    elif args.prior_mask:
        raise InputError("--prior-mask is used only with --prior mask")
    return prior, mask


def _add_prior_args(p) -> None:
    from .prior import DEFAULT_PRIOR
    from .tta import TTA_KINDS, describe_auto

    p.add_argument(
        "--tta",
        choices=["auto", *TTA_KINDS],
        default="auto",
        help="test-time augmentation: mirror = the map averaged with the mirrored image's map; mirror_zoom = "
        "also both at 1.25x; auto (default) = "
        f"{describe_auto()} (README, 'Mirror test-time augmentation')",
    )

    p.add_argument(
        "--prior",
        choices=["none", "lungs", "mask"],
        help=f"weight the map by a soft organ prior (default: {DEFAULT_PRIOR.kind}; see README, 'Prior at "
        "inference'): none = raw map, lungs = computed lung fields, mask = --prior-mask",
    )
    p.add_argument("--prior-mask", help="--prior mask: a mask file (NIfTI, MHA, PNG, ...) of the scan's shape")
    p.add_argument(
        "--prior-sigma",
        type=float,
        help=f"prior smoothing, fraction of the side (default {DEFAULT_PRIOR.sigma:g}; CT {DEFAULT_PRIOR.ct.sigma:g})",
    )
    p.add_argument(
        "--prior-floor",
        type=float,
        help=f"prior value far outside the mask (default {DEFAULT_PRIOR.floor:g}; CT {DEFAULT_PRIOR.ct.floor:g})",
    )


def cmd_evaluate(args) -> int:
    from .evaluation import EvalOptions, evaluate
    from .evaluation.report import write_report
    from .evaluation.summary import first_hit_lines, summarise
    from .predict import Predictor
    from .workflows import atlas_floor, open_test_set

    prior, pmask = _prior_args(args)
    pred = Predictor(args.checkpoint, device=args.device or "cpu", tta=args.tta)
    data = Path(args.data)
    items = open_test_set(data, args.boxes, labels=args.labels, split=args.split, limit=args.limit)
    opts = EvalOptions(
        score=args.score,
        topk_percent=args.topk,
        region=args.region,
        n_boot=args.n_boot,
        samples=args.samples,
        min_distance=args.min_distance,
        detect_scale=args.detect_scale,
        prior=prior,
    )
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=len(items), desc="evaluate", unit="scan")
    atlas = None
    if not args.no_floors:
        atlas, why = atlas_floor(
            pred.cfg, args.train_data, checkpoint=args.checkpoint[0], recorded=pred.inputs.get("train_data")
        )
    ev = evaluate(
        pred,
        items,
        opts,
        progress=(lambda i, n: bar.update(1)) if bar else None,
        floors=not args.no_floors,
        atlas=atlas,
        prior_mask=pmask,
    )
    if bar:
        bar.close()
    if not args.no_floors and why:
        ev.metrics.setdefault("floors_left_out", {})["atlas"] = why
    report = write_report(
        ev,
        args.out,
        title=f"{pred.cfg.model.backbone} ({pred.cfg.synthesis.method}) on {data.name}",
        extra={
            "checkpoint": _checkpoint_record(args.checkpoint),
            "step": _step_record(pred),
            "data": str(data),
            "tta": pred.tta,
        },
    )
    m = ev.metrics
    print(
        f"pixel AUROC {m['pixel_auroc']:.3f}  sample AUROC {m['sample_auroc']:.3f}  sample AP {m['sample_ap']:.3f}  "
        f"FROC@10FP {m['froc_at_10fp']:.3f}  ({report})"
    )
    first_hit = m.get("per_slice", m).get("first_hit")
    if first_hit:
        print(first_hit_lines(first_hit))
    print(summarise(m))
    return 0


def cmd_realism(args) -> int:
    from .realism import realism_report

    cfg = _load_config(args)
    res = realism_report(
        args.data,
        args.out,
        cfg,
        boxes=args.boxes,
        labels=args.labels.split(",") if args.labels else None,
        n_samples=args.n,
        seed=cfg.seed,
    )
    print(Path(res["table"]).read_text())
    print(json.dumps(res["groups"]))
    return 0


def cmd_view(args) -> int:
    try:
        from ._app import run_viewer
    except ImportError as exc:
        raise InputError(f"the viewer needs napari with Qt (pip install 'napari-ppii[napari]'): {exc}") from None
    if args.demo:
        from ._app import run_demo

        return run_demo(args.out, steps=args.steps)
    return run_viewer(args.inputs, args.sample, args.screenshot, seed=args.seed)


# --------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ppii", description="Self-supervised anomaly localisation with P-PII")
    parser.add_argument("--version", action="version", version=f"napari-ppii {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="describe a scan (and the series of a DICOM folder)")
    p.add_argument("input")
    p.add_argument("--series", help="SeriesInstanceUID to load from a folder with several series")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("synthesize", aliases=["synthesise"], help="write one synthetic-anomaly sample of a scan")
    p.add_argument("input", nargs="?", help="radiograph file, DICOM/NIfTI/MHD/NRRD volume, or DICOM series folder")
    p.add_argument("--source", help="second scan to take source patches from (pairwise); default: the input itself")
    from .config import METHOD_NAMES

    p.add_argument("--method", choices=list(METHOD_NAMES), help="synthesis method (registered ones included)")
    p.add_argument("--seed", type=int)
    p.add_argument("--size", type=int, help="resize images / slices to SIZE x SIZE before synthesis")
    p.add_argument(
        "--window", choices=["lung", "mediastinum", "bone", "soft_tissue", "header"], help="CT window preset"
    )
    p.add_argument("--series", help="SeriesInstanceUID (folders with several series; default the largest)")
    p.add_argument(
        "--format", choices=["tiff", "png", "nifti"], help="output format (default: tiff for 2D, nifti for 3D)"
    )
    p.add_argument("--replay", type=Path, help="params.json of an earlier run: re-render exactly that sample")
    p.add_argument("--mask", help="placement mask (image / volume of the input's shape) for synthesis.placement=mask")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    _add_config_args(p)
    p.set_defaults(func=cmd_synthesize)

    p = sub.add_parser("train", help="train a backbone on normal scans with synthetic anomalies")
    _add_config_args(p)
    p.add_argument("--resume", type=Path, help="checkpoint to continue from (its configuration, plus --set overrides)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: the configuration's, auto)")
    p.add_argument("--data", help="shortcut for --set data.train=PATH")
    p.add_argument("--out", help="shortcut for --set training.out_dir=DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="anomaly and variance maps of scans from a checkpoint (files, folders, a CSV)")
    p.add_argument(
        "inputs",
        nargs="+",
        help="radiographs, volume files, DICOM series folders, folders of scans, or "
        "an annotations CSV (its rows' images; --split to pick rows)",
    )
    p.add_argument("--split", help="annotations CSV: only rows of this split (e.g. test)")
    p.add_argument("--quiet", action="store_true", help="no per-scan progress lines")
    p.add_argument("--checkpoint", required=True, type=Path, action="append", help=ENSEMBLE_HELP)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--samples", type=int, help="MC-dropout / PHiSeg samples (default: the model's)")
    p.add_argument("--device", help="cpu (default), cuda or cuda:N")
    p.add_argument("--series", help="SeriesInstanceUID for folders with several series")
    p.add_argument("--format", choices=["tiff", "nifti"], help="default: tiff for 2D, nifti for volumes")
    _add_prior_args(p)
    p.set_defaults(func=cmd_predict)

    from .evaluation.metrics import DEFAULT_DETECT_SCALE

    p = sub.add_parser("evaluate", help="score a checkpoint on test scans: pixel AUROC, sample AUROC/AP, FROC")
    p.add_argument("--checkpoint", required=True, type=Path, action="append", help=ENSEMBLE_HELP)
    p.add_argument("--data", required=True, help="annotations CSV (rows with split=test) or a CT series / volume")
    p.add_argument("--boxes", help="LIDC XML or box CSV for a CT series")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--samples", type=int, help="MC-dropout / PHiSeg samples (default: the model's)")
    p.add_argument(
        "--score",
        choices=["topk", "max", "mean"],
        default="topk",
        help="per-image score (default: mean of the top 1%%)",
    )
    p.add_argument("--topk", type=float, default=1.0, help="percent of pixels for --score topk")
    p.add_argument(
        "--region", choices=["box", "disc"], default="box", help="pixel AUROC ground truth: box or inscribed disc"
    )
    p.add_argument("--labels", help="comma-separated box labels to count as lesions (e.g. Nodule,Mass)")
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, help="evaluate only the first N test images")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the CIs")
    p.add_argument("--min-distance", type=int, default=8, help="FROC: minimum distance between candidates (pixels)")
    p.add_argument(
        "--detect-scale",
        type=float,
        default=DEFAULT_DETECT_SCALE,
        help="candidates (FROC, strongest detection) from the map smoothed by a Gaussian of this fraction of the "
        f"image side, in-plane; 0: the raw map (default {DEFAULT_DETECT_SCALE:g}, chosen on NIH boxes and LIDC-0002)",
    )
    p.add_argument("--device")
    p.add_argument(
        "--no-floors",
        action="store_true",
        help="skip the non-learned floors (random, lung field, "
        "darkness, training atlas, blob filter) scored beside the model",
    )
    p.add_argument("--train-data", help="normal images for the atlas floor (default: the checkpoint's data.train)")
    p.add_argument(
        "--restrict", choices=["lungs"], help=argparse.SUPPRESS
    )  # old spelling: --prior lungs --prior-floor 0
    _add_prior_args(p)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "realism",
        help="realism statistics: synthetic anomalies beside real lesions (contrast, "
        "gradient energy ratio, size, fraction in the lungs)",
    )
    p.add_argument(
        "--data",
        required=True,
        help="annotations CSV (rows with boxes = real lesions, others = normals), "
        "a folder of radiographs or one radiograph",
    )
    p.add_argument("--boxes", help="box CSV for a folder's images (real lesions)")
    p.add_argument("--labels", help="comma-separated box labels to count as lesions (e.g. Nodule,Mass)")
    p.add_argument("--n", type=int, default=64, help="synthetic samples to measure")
    p.add_argument("--out", required=True, type=Path)
    _add_config_args(p)
    p.set_defaults(func=cmd_realism)

    p = sub.add_parser("view", help="open napari with scans (or a bundled sample) and the P-PII preview docked")
    p.add_argument("inputs", nargs="*", help="scans and box files to open")
    p.add_argument(
        "--sample",
        choices=["nih", "normals", "ct", "ct-full"],
        help="bundled sample data to open (default nih when no input)",
    )
    p.add_argument("--screenshot", help="save a screenshot of the window and exit (automatic without a display)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--demo",
        action="store_true",
        help="the whole loop on the bundled sample: preview, train "
        "briefly, predict, overlay (headless: screenshots in --out)",
    )
    p.add_argument("--steps", type=int, default=150, help="--demo: training steps")
    p.add_argument("--out", default="out/demo", help="--demo: folder for the run and the screenshots")
    p.set_defaults(func=cmd_view)
    return parser


def _is_own_warning(w) -> bool:
    return issubclass(w.category, UserWarning) and "napari_ppii" in str(w.filename).replace("-", "_")


def _report_warnings(caught, own: bool = True) -> None:
    """The package's own warnings (irregular slice spacing, ...) as one plain line each, ``ppii: warning:
    ...``, without a source path (``own`` False: left out -- a failed command says one line, its error);
    any other warning as Python would show it."""
    import warnings

    for w in caught:
        if _is_own_warning(w):
            if own:
                print(f"ppii: warning: {w.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def main(argv: Sequence[str] | None = None) -> int:
    import warnings

    parser = build_parser()
    args = parser.parse_args(argv)
    caught: list = []
    failed = True
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.filterwarnings("always", category=UserWarning, module=r"napari_ppii(\..*)?$")
            rc = int(args.func(args) or 0)
        failed = False
        return rc
    except InputError as exc:
        print(f"ppii: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from .training.loop import TrainingError

        if isinstance(exc, TrainingError):
            print(f"ppii: error: {exc}", file=sys.stderr)
            return 3
        if isinstance(exc, OSError):
            print(f"ppii: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        print("ppii: interrupted", file=sys.stderr)
        return 130
    finally:
        _report_warnings(caught, own=not failed)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
