# SPDX-License-Identifier: BSD-3-Clause
"""Plots in the docks (matplotlib Figure on a Qt canvas; no pyplot, no global backend switch)."""

from __future__ import annotations

from qtpy.QtWidgets import QVBoxLayout, QWidget


class CurvePlot(QWidget):
    """Loss and validation Dice against step (matplotlib in the dock)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(4, 2.6), tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.ax = self.figure.add_subplot(111)
        self.ax2 = self.ax.twinx()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.canvas)
        self.loss: list[tuple[int, float]] = []
        self.dice: list[tuple[int, float]] = []

    def clear(self):
        self.loss.clear()
        self.dice.clear()
        self.redraw()

    def redraw(self):
        self.ax.clear()
        self.ax2.clear()
        if self.loss:
            s, v = zip(*self.loss)
            self.ax.plot(s, v, color="C0", lw=1, label="loss")
        if self.dice:
            s, v = zip(*self.dice)
            self.ax2.plot(s, v, "o-", color="C1", ms=3, lw=1, label="val Dice")
            self.ax2.set_ylim(0, max(0.05, max(v) * 1.2))
        self.ax.set_xlabel("step", fontsize=8)
        self.ax.set_ylabel("loss", color="C0", fontsize=8)
        self.ax2.set_ylabel("val Dice", color="C1", fontsize=8)
        self.ax.tick_params(labelsize=7)
        self.ax2.tick_params(labelsize=7)
        self.canvas.draw_idle()
