# SPDX-License-Identifier: BSD-3-Clause
"""Benchmark: a parameter change in the P-PII preview widget -> updated layers, at 512x512.

Opens a real napari viewer (a virtual X display when there is none), docks the preview widget on a
bundled 512x512 NIH radiograph and changes parameters (seed, raters, anomalies, gradient scale, in turn)
``--changes`` times, timing each from the change to the ``preview_updated`` signal (layers set) plus
the canvas repaint.  The wait blocks in a Qt event loop, as napari's own loop does (busy polling would
fight the worker thread for the GIL).  Prints p50/p95/max and the share spent in pre-processing +
synthesis, for the widget's in-place layer updates and -- side by side, in alternating blocks of 10
changes in the same viewer -- for plain ``layer.data = ...`` updates (napari then recomputes dims and
extents over every layer on each change).  Then, in the same viewer, a *bare* update: the same layers set
from results computed beforehand, with the same repaint -- napari's own cost on this machine (its software
OpenGL included), so ``overhead_p95_ms`` = change p95 - bare p95 is what the preview adds (goal <= 40 ms)
and does not move with a slower machine's renderer.  A 1 ms timer on the GUI thread measures the longest
stall during a change; ``stall_beyond_bare_p95_ms`` is that beyond the bare layer update + repaint (goal
<= 16 ms: the synthesis stays in the worker).  Last line: one JSON object with ``p95_ms``, ``bare_p95_ms``
and ``overhead_p95_ms``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def _plain_set(layer, data, buffers) -> None:
    """The naive update, for comparison: hand napari a new array."""
    layer.data = np.array(data, dtype=np.float32)


def measure(n_changes: int, compare: bool = True, block: int = 10, bare: bool = True) -> dict[str, dict]:
    """One viewer; blocks of ``block`` changes alternate between the widget's in-place updates and
    plain ``layer.data = ...`` updates (when ``compare``), so both see the same machine state.  The
    first change after each switch is not counted (it re-creates the buffers)."""
    import napari
    from qtpy.QtCore import QEventLoop, QTimer
    from qtpy.QtWidgets import QApplication

    from napari_ppii._sample_data import nih_normals
    from napari_ppii._widgets import preview

    saved = preview.write_image_data
    modes = {"in_place": saved, "plain_set": _plain_set} if compare else {"in_place": saved}
    lat = {m: [] for m in modes}
    compute = {m: [] for m in modes}
    stalls = {m: [] for m in modes}
    kept_results = []
    try:
        viewer = napari.Viewer(show=True)
        for data, kw, _ in nih_normals()[:2]:
            viewer.add_image(data, **kw)
        widget = preview.PreviewWidget(viewer)
        viewer.window.add_dock_widget(widget)
        app = QApplication.instance()
        done = {"res": None}
        widget.preview_updated.connect(lambda r: done.__setitem__("res", r))
        canvas = viewer.window._qt_viewer.canvas.native

        ticks: list[float] = []
        ticker = QTimer()
        ticker.setInterval(1)
        ticker.timeout.connect(lambda: ticks.append(time.perf_counter()))

        def wait():
            if widget.busy or done["res"] is None:
                loop = QEventLoop()
                widget.preview_updated.connect(loop.quit)
                widget.preview_failed.connect(loop.quit)
                QTimer.singleShot(30_000, loop.quit)
                loop.exec()
                widget.preview_updated.disconnect(loop.quit)
                widget.preview_failed.disconnect(loop.quit)
            if done["res"] is None:
                raise RuntimeError(f"no preview after 30 s: {widget.last_error}")
            canvas.repaint()  # the frame the user sees, drawn now rather than at the next idle moment
            app.processEvents()

        wait()
        changes = [
            lambda i: widget.set_value("seed", i + 1),
            lambda i: widget.set_value("synthesis.n_raters", (1, 2 + i % 8)),
            lambda i: widget.set_value("synthesis.n_anomalies", (1, 6 + i % 8)),  # never the default (1, 5)
            lambda i: widget.set_value("synthesis.gradient_scale", (5.0 + i % 5, 20.0)),
        ]
        i = 0
        names = list(modes)
        while min(len(v) for v in lat.values()) < n_changes:
            mode = names[(i // block) % len(names)]
            preview.write_image_data = modes[mode]
            done["res"] = None
            ticks.clear()
            ticker.start()
            t0 = time.perf_counter()
            ticks.append(t0)
            changes[i % len(changes)](i)
            wait()
            t1 = time.perf_counter()
            ticker.stop()
            if i % block and len(lat[mode]) < n_changes:
                lat[mode].append(t1 - t0)
                compute[mode].append(done["res"].seconds)
                # the longest the GUI thread went without serving its event loop during the change (the
                # change's own call, the layer updates and the repaint included)
                stalls[mode].append(float(np.diff(ticks + [t1]).max()))
                if mode == "in_place" and len(kept_results) < block:
                    kept_results.append(done["res"])
            i += 1
        if bare and kept_results:
            # the same layer updates and repaint with the arrays computed beforehand: napari's own cost
            preview.write_image_data = saved
            lat["bare"], compute["bare"], stalls["bare"] = [], [], []
            for k in range(n_changes + 1):
                res = kept_results[k % len(kept_results)]
                t0 = time.perf_counter()
                widget._show(res)
                canvas.repaint()
                app.processEvents()
                if k:  # the first re-creates nothing but warms the path
                    lat["bare"].append(time.perf_counter() - t0)
                    compute["bare"].append(0.0)
                    stalls["bare"].append(time.perf_counter() - t0)
        viewer.close()
    finally:
        preview.write_image_data = saved
    out = {}
    for m in lat:
        lat_ms, comp_ms = np.array(lat[m]) * 1e3, np.array(compute[m]) * 1e3
        out[m] = {
            "changes": len(lat_ms),
            "p50_ms": float(np.percentile(lat_ms, 50)),
            "p95_ms": float(np.percentile(lat_ms, 95)),
            "max_ms": float(lat_ms.max()),
            "compute_p50_ms": float(np.percentile(comp_ms, 50)),
            "compute_p95_ms": float(np.percentile(comp_ms, 95)),
            "stall_p95_ms": float(np.percentile(np.array(stalls[m]) * 1e3, 95)),
            "stall_max_ms": float(np.max(stalls[m]) * 1e3),
        }
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--changes", type=int, default=100)
    ap.add_argument("--no-compare", action="store_true", help="skip the plain layer.data = ... run")
    args = ap.parse_args(argv)
    display = None
    if not os.environ.get("DISPLAY"):
        from pyvirtualdisplay import Display

        display = Display(visible=False, size=(1600, 1000))
        display.start()
    try:
        runs = measure(args.changes, compare=not args.no_compare)
    finally:
        if display is not None:
            display.stop()
    for name, r in runs.items():
        print(
            f"{name:9s}: parameter change -> updated layers at 512x512 over {r['changes']} changes: "
            f"p50 {r['p50_ms']:.1f} ms, "
            f"p95 {r['p95_ms']:.1f} ms, max {r['max_ms']:.1f} ms (synthesis + pre-processing p50 "
            f"{r['compute_p50_ms']:.1f} ms, p95 {r['compute_p95_ms']:.1f} ms)"
        )
    best = runs["in_place"]
    res = {"image": [512, 512], **best, "goal_p95<=100ms": bool(best["p95_ms"] <= 100)}
    if "bare" in runs:
        b = runs["bare"]
        res["bare_p95_ms"] = b["p95_ms"]
        res["bare_p50_ms"] = b["p50_ms"]
        res["overhead_p95_ms"] = best["p95_ms"] - b["p95_ms"]
        res["overhead_p50_ms"] = best["p50_ms"] - b["p50_ms"]
        res["goal_overhead_p95<=40ms"] = bool(res["overhead_p95_ms"] <= 40)
        # the stall beyond the layer update and repaint themselves (which napari does on the GUI thread)
        res["stall_beyond_bare_p95_ms"] = best["stall_p95_ms"] - b["p95_ms"]
        res["goal_stall<=16ms"] = bool(res["stall_beyond_bare_p95_ms"] <= 16)
        print(
            f"bare update of the same layers (arrays computed beforehand) + repaint: p50 {b['p50_ms']:.1f} ms, "
            f"p95 {b['p95_ms']:.1f} ms -> preview overhead over napari p95 {res['overhead_p95_ms']:.1f} ms "
            f"(goal <= 40); longest GUI-thread stall in a change p95 {best['stall_p95_ms']:.1f} ms, of which "
            f"{res['stall_beyond_bare_p95_ms']:.1f} ms beyond the bare update (goal <= 16)"
        )
    if "plain_set" in runs:
        p = runs["plain_set"]
        res["plain_set"] = p
        res["p50_ratio_plain/in_place"] = p["p50_ms"] / best["p50_ms"]
        res["p95_ratio_plain/in_place"] = p["p95_ms"] / best["p95_ms"]
        print(
            f"latency ratio plain layer.data / in-place updates: p50 {res['p50_ratio_plain/in_place']:.2f}, "
            f"p95 {res['p95_ratio_plain/in_place']:.2f} (> 1: in-place is faster)"
        )
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    main()
