# SPDX-License-Identifier: BSD-3-Clause
"""Run folders: one training at a time per folder, and no run overwrites an earlier run's checkpoints.

A training holds an exclusive lock on ``<run folder>/.lock`` (``fcntl.flock``) from before it writes
anything until it ends; the operating system drops the lock when the process dies, even by SIGKILL, so
a crashed run never leaves a stale lock.  The lock file names the holder (pid, host, start time) for the
message another training gets.  A *new* run into a folder that holds checkpoints of an earlier run goes
to the next free folder ``<name>-2``, ``<name>-3``, ... (:func:`plan_run_dir`, which the CLI and the
viewer call and report); :func:`~napari_ppii.training.loop.train` itself refuses such a folder unless it
resumes, so no caller can overwrite them by accident.  ``--resume <folder>/last.pt`` continues a run.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from ..errors import InputError

LOCK_NAME = ".lock"
CHECKPOINT_GLOBS = ("last.pt", "best.pt", "step_*.pt")


def checkpoints_in(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted({p for g in CHECKPOINT_GLOBS for p in folder.glob(g)})


def _holder_text(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another training"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("started", 0)))
    return f"another training (pid {info.get('pid')} on {info.get('host')}, since {since})"


class RunLock:
    """Exclusive use of a run folder by this process (context manager, or acquire/release)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fh = None

    def acquire(self) -> "RunLock":
        import fcntl

        self.folder.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise InputError(
                f"run folder is in use by {_holder_text(self.path)}; wait for it to end, stop it, "
                "or train into another folder (--out)",
                self.folder,
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}))
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is not None:
            import fcntl

            try:
                self._fh.seek(0)
                self._fh.truncate()
            except OSError:
                pass
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False


def in_use(folder: str | Path) -> str | None:
    """Who holds the folder's lock (a sentence), or None when no training runs there."""
    import fcntl

    path = Path(folder) / LOCK_NAME
    if not path.is_file():
        return None
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return _holder_text(path)
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    return None


def plan_run_dir(folder: str | Path, resume: str | Path | None = None) -> tuple[Path, str | None]:
    """The folder a training should write to, and a note when it is not ``folder``.

    In use by a running training: refused (:class:`InputError`).  Resuming: ``folder`` itself.  A new run
    into a folder with an earlier run's checkpoints: the next free ``<folder>-N`` (never overwritten)."""
    folder = Path(folder)
    who = in_use(folder)
    if who:
        raise InputError(
            f"run folder is in use by {who}; wait for it to end, stop it, or train into another folder", folder
        )
    if resume is not None or not checkpoints_in(folder):
        return folder, None
    n = 2
    while True:
        cand = folder.with_name(f"{folder.name}-{n}")
        if not checkpoints_in(cand) and not in_use(cand):
            break
        n += 1
    note = (
        f"{folder} holds checkpoints of an earlier run; this run writes to {cand} "
        f"(to continue the earlier run instead: --resume {folder / 'last.pt'})"
    )
    return cand, note
