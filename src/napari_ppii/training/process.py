# SPDX-License-Identifier: BSD-3-Clause
"""Running ``ppii train`` as a separate process, and following its JSON-lines log (Qt-free).

The viewer starts training in its own process (and process group), so the UI never freezes and
stopping frees every byte of GPU memory.  :meth:`TrainingProcess.stop` sends SIGTERM to the group -- the
trainer finishes its step, writes ``last.pt`` and exits -- and SIGKILLs whatever is left after
``grace`` seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..config import PPIIConfig


class TrainingProcess:
    def __init__(self, cfg: PPIIConfig, resume: str | Path | None = None):
        self.cfg = cfg
        self.out = Path(cfg.training.out_dir)
        self.resume = resume
        self.proc: subprocess.Popen | None = None
        # the request (configuration) and stderr live outside the run folder: nothing is written there
        # before the trainer holds the folder's lock (a refused second training leaves it untouched)
        self._tmp = Path(tempfile.mkdtemp(prefix="ppii-train-"))
        self.stderr_path = self._tmp / "stderr.log"

    @property
    def log_path(self) -> Path:
        return self.out / "log.jsonl"

    def start(self) -> None:
        cfg_path = self._tmp / "config.yaml"
        self.cfg.save(cfg_path)
        cmd = [sys.executable, "-m", "napari_ppii.cli", "train", "--config", str(cfg_path), "--quiet"]
        if self.resume:
            cmd += ["--resume", str(self.resume)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(self.stderr_path, "w") as err:
            self.proc = subprocess.Popen(
                cmd, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True, env=env
            )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stop(self, grace: float = 4.0) -> int | None:
        """SIGTERM the process group (checkpoint, then exit); SIGKILL it after ``grace`` seconds."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=5)
        # children that outlived the leader (data workers, ...) go too
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return self.proc.returncode

    def failure_text(self) -> str:
        """Why the process ended unsuccessfully: its exit code, or the signal that killed it, and the end
        of its stderr."""
        rc = self.returncode
        err = self.error_text()
        if rc is not None and rc < 0:
            try:
                name = signal.Signals(-rc).name
            except ValueError:
                name = f"signal {-rc}"
            hint = (
                " -- often the system's out-of-memory killer: lower training.batch_size, data.image_size or "
                "model.base_channels"
                if -rc == signal.SIGKILL
                else ""
            )
            head = f"training process was killed by {name}{hint}; resume from {self.out / 'last.pt'} if it exists"
        else:
            head = f"training failed (exit {rc})"
        return f"{head}\n{err}" if err else head

    def error_text(self, lines: int = 20) -> str:
        """The end of the process's stderr: the reason a run failed."""
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""
        keep = [ln for ln in text.splitlines() if ln.strip()]
        return "\n".join(keep[-lines:])


class LogFollower:
    """Reads the records appended to a JSON-lines log since the last call (partial lines wait)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.offset = 0
        self._buf = ""

    def poll(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("r") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
                self.offset = fh.tell()
        except FileNotFoundError:
            return []
        self._buf += chunk
        *lines, self._buf = self._buf.split("\n")
        out = []
        for ln in lines:
            try:
                out.append(json.loads(ln))
            except json.JSONDecodeError:
                continue
        return out
