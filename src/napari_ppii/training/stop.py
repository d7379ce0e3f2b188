# SPDX-License-Identifier: BSD-3-Clause
"""Stop handling: SIGTERM / SIGINT ask a training loop to stop after its current step (it then writes
``last.pt``), instead of killing it mid-step."""

from __future__ import annotations

import signal
import threading


class StopRequest:
    """``with StopRequest() as stop: ... if stop.requested: break`` -- while inside, SIGTERM and SIGINT
    set ``requested`` (in the main thread only: elsewhere signals cannot be handled and nothing changes);
    on exit the previous handlers come back, whatever happened inside."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.requested = False
        self._old: dict = {}

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def __exit__(self, *exc) -> bool:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()
        return False
