"""Controls generated from the configuration's pydantic fields: choices from ``Literal`` types, bounds
from ``ge``/``le``/``gt``/``lt``, the field's description as the tooltip, the default as the start
value.  A new configuration field reaches a widget by naming it, not by hand-writing its control."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any, Callable

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QSpinBox, QWidget

#: Bounds of range fields that carry no ``ge``/``le`` (checked by the model's validator instead).
RANGE_HINTS: dict[str, tuple[float, float, int]] = {"source_rescale": (0.25, 4.0, 2), "gradient_scale": (0.0, 100.0, 1),
                                                    "patch_size": (0.005, 0.5, 3), "alpha": (0.0, 1.0, 2)}


@dataclass
class FieldControl:
    name: str
    widget: QWidget
    get: Callable[[], Any]
    set: Callable[[Any], None]
    connect: Callable[[Callable], None]
    label: str


def _bounds(info) -> tuple[float | None, float | None]:
    lo = hi = None
    for m in info.metadata:
        for attr, side in (("ge", "lo"), ("gt", "lo"), ("le", "hi"), ("lt", "hi")):
            v = getattr(m, attr, None)
            if v is not None:
                if side == "lo":
                    lo = v
                else:
                    hi = v
    return lo, hi


def field_control(model_cls, name: str) -> FieldControl:
    """A Qt control for ``model_cls.<name>``, with getter/setter of the configuration value."""
    info = model_cls.model_fields[name]
    ann = info.annotation
    origin = typing.get_origin(ann)
    tip = info.description or ""
    label = name.replace("_", " ").capitalize()
    default = info.get_default(call_default_factory=True)
    if origin is typing.Literal:
        w = QComboBox()
        w.addItems([str(a) for a in typing.get_args(ann)])
        w.setCurrentText(str(default))
        ctl = FieldControl(name, w, w.currentText, lambda v: w.setCurrentText(str(v)),
                           lambda f: w.currentIndexChanged.connect(f), label)
    elif ann is bool:
        w = QCheckBox(label)
        w.setChecked(bool(default))
        ctl = FieldControl(name, w, w.isChecked, lambda v: w.setChecked(bool(v)), lambda f: w.toggled.connect(f), "")
    elif ann is float or ann is int:
        lo, hi = _bounds(info)
        if ann is int:
            w = QSpinBox()
            w.setRange(int(lo if lo is not None else 0), int(hi if hi is not None else 10_000))
            w.setValue(int(default))
            ctl = FieldControl(name, w, w.value, lambda v: w.setValue(int(v)), lambda f: w.valueChanged.connect(f), label)
        else:
            w = QDoubleSpinBox()
            w.setDecimals(3)
            w.setRange(float(lo if lo is not None else 0.0), float(hi if hi is not None else 10_000.0))
            w.setSingleStep(max((w.maximum() - w.minimum()) / 200.0, 0.001))
            w.setValue(float(default))
            ctl = FieldControl(name, w, w.value, lambda v: w.setValue(float(v)), lambda f: w.valueChanged.connect(f), label)
    elif origin is tuple:
        from superqt import QLabeledDoubleRangeSlider

        lo, hi, dec = RANGE_HINTS.get(name, (0.0, 1.0, 2))
        w = QLabeledDoubleRangeSlider(Qt.Orientation.Horizontal)
        w.setRange(lo, hi)
        w.setDecimals(dec)
        w.setValue(tuple(default))
        ctl = FieldControl(name, w, lambda: [float(v) for v in w.value()], lambda v: w.setValue(tuple(v)),
                           lambda f: w.valueChanged.connect(f), label)
    else:  # pragma: no cover - a field type this generator does not know is a programming error
        raise TypeError(f"no control for field {name!r} of type {ann!r}")
    w.setToolTip(tip)
    return ctl
