# SPDX-License-Identifier: BSD-3-Clause
"""Checkpoints: written atomically, loaded safely.

A checkpoint is a plain dict of tensors and primitives -- model, optimiser and scheduler state, the
step, every RNG state and the full configuration -- saved with ``torch.save`` to a temporary file in the
same folder and moved into place with ``os.replace`` (a crash never leaves half a file).  Loading uses
``torch.load(weights_only=True)``: a checkpoint carrying any other pickled object (code that would run
on load) is refused with :class:`~napari_ppii.errors.InputError`.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

from .errors import InputError

FORMAT = "napari-ppii-checkpoint"
VERSION = 1


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": FORMAT, "version": VERSION, **state}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def remove_partial_writes(folder: str | Path) -> list[Path]:
    """Delete the temporary files :func:`save_checkpoint` leaves when its process is killed mid-write
    (the checkpoint each was replacing is whole).  Only for a folder no one else writes to (a run folder
    under its lock)."""
    gone = []
    for p in Path(folder).glob(".*.pt.*.tmp"):
        p.unlink(missing_ok=True)
        gone.append(p)
    return gone


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise InputError("checkpoint not found", path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc) or "global" in str(exc).lower():
            raise InputError(
                "refused to load this checkpoint: it holds pickled objects other than weights, which "
                "could run code on loading (only weights-only napari-ppii checkpoints are loaded)",
                path,
            ) from None
        raise InputError("not a readable checkpoint (corrupt, truncated or not a torch file)", path) from None
    except Exception as exc:
        raise InputError(
            f"not a readable checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})", path
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise InputError("not a napari-ppii checkpoint (missing format marker)", path)
    return state


SLIM_KEYS = ("config", "step", "backbone", "val_dice", "select_score", "best_score", "select", "inputs", "provenance")


def _slim(ck: dict[str, Any], half: bool) -> dict[str, Any]:
    """A checkpoint's inference part: weights (float16 where ``half``), configuration, step, scores, inputs."""
    model = {k: (v.half() if half and v.is_floating_point() else v) for k, v in ck["model"].items()}
    return {"model": model, **{k: ck[k] for k in SLIM_KEYS if k in ck}}


def export_weights(src: str | Path, dst: str | Path, half: bool = False, provenance: dict | None = None) -> Path:
    """A slim, inference-only copy of a checkpoint: weights, configuration, step and selection score
    (no optimiser, scheduler or RNG state); ``half`` stores floating weights as float16.  ``provenance``
    (plain JSON values: which scans, which slices, how it was chosen) is stored as it is."""
    ck = load_checkpoint(src)
    if "member_files" in ck:
        raise InputError("this file is an ensemble (its members are already exported, beside it)", src)
    extra = {"provenance": provenance} if provenance else {}
    return save_checkpoint({**_slim(ck, half), "exported_from": str(src), **extra}, dst)


def export_ensemble(
    srcs: list[str | Path], dst: str | Path, half: bool = False, provenance: dict | None = None
) -> Path:
    """An ensemble file: several models that predict as one (:class:`napari_ppii.predict.Predictor` loads it
    like any checkpoint).  Each member is written beside ``dst`` as a slim copy of its own
    (``<dst stem>_member<i>.pt``, usable alone), and ``dst`` itself is a small checkpoint naming those files
    (``member_files``, relative to it), with the first member's configuration, inputs and step (what
    describes the ensemble's input) and ``provenance``."""
    if len(srcs) < 2:
        raise InputError("an ensemble needs at least two checkpoints")
    dst = Path(dst)
    names, first = [], None
    for i, src in enumerate(srcs):
        ck = load_checkpoint(src)
        if "member_files" in ck:
            raise InputError("an ensemble cannot hold another ensemble", src)
        names.append(f"{dst.stem}_member{i}.pt")
        save_checkpoint({**_slim(ck, half), "exported_from": str(src)}, dst.parent / names[-1])
        first = first or ck
    top = {k: first[k] for k in ("config", "step", "inputs") if k in first}
    extra = {"provenance": provenance} if provenance else {}
    return save_checkpoint({"member_files": names, **top, **extra}, dst)


def load_members(path: str | Path) -> list[dict[str, Any]]:
    """The checkpoints a file stands for: the file itself, or an ensemble file's members, read from the
    files it names beside it."""
    path = Path(path)
    ck = load_checkpoint(path)
    if "member_files" not in ck:
        return [ck]
    members = []
    for name in ck["member_files"]:
        if not (path.parent / name).is_file():
            raise InputError(
                f"the ensemble's member file {name} is missing (it belongs beside the ensemble file)", path
            )
        member = load_checkpoint(path.parent / name)
        if "member_files" in member:
            raise InputError("an ensemble cannot hold another ensemble", path.parent / name)
        members.append(member)
    return members


if __name__ == "__main__":  # python -m napari_ppii.checkpoint SRC [SRC ...] DST [--half] [--provenance FILE.json]
    import json
    import sys

    argv = sys.argv[1:]
    prov = None
    if "--provenance" in argv:
        i = argv.index("--provenance")
        prov = json.loads(Path(argv[i + 1]).read_text())
        del argv[i : i + 2]
    args = [a for a in argv if a != "--half"]
    if len(args) > 2:  # several sources: an ensemble file and its members beside it
        print(export_ensemble(args[:-1], args[-1], half="--half" in argv, provenance=prov))
    else:
        print(export_weights(args[0], args[1], half="--half" in argv, provenance=prov))
