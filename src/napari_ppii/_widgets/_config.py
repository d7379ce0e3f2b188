# SPDX-License-Identifier: BSD-3-Clause
"""One configuration per viewer, shared live by the preview, training, prediction and evaluation
widgets, and their controls generated from the configuration's pydantic fields.

* :class:`SharedConfig` is an evented holder of the one validated :class:`~napari_ppii.config.PPIIConfig`
  (a psygnal signal, no Qt): every change goes through ``PPIIConfig.with_values`` (validated, paths kept
  as strings) and is announced with the dotted keys that changed.  :func:`shared_config` gives each
  viewer its own.  What the preview shows is what trains: both widgets read and write this one object.
* :class:`ConfigForm` is a magicgui ``Container`` of controls for a list of dotted keys.  Each control is
  made from the field: choices from ``Literal`` types, bounds from ``ge``/``le``/``gt``/``lt``, the
  description as the tooltip; ranges are magicgui's range sliders (superqt's labelled range sliders);
  ``None``-able fields get a "default" state.  A control change updates the shared configuration; a
  configuration change (from any widget, or a loaded file) updates every form showing that key.
  A new configuration field reaches the widgets by naming its key, not by hand-writing a control.
"""

from __future__ import annotations

import functools
import json
import types
import typing
import weakref
from pathlib import Path
from typing import Any, Callable, Iterable

from psygnal import Signal

from ..config import PPIIConfig
from ..errors import InputError

# ---------------------------------------------------------------------------------------------- the holder


def leaf_keys(cls=PPIIConfig, prefix: str = "") -> tuple[str, ...]:
    """Every dotted key of the configuration's leaf fields, in declaration order; the synthesis methods'
    own parameters as ``synthesis.<name>`` (each registered method's, once)."""
    from ..config import METHOD_NAMES

    return _leaf_keys(cls, prefix, tuple(METHOD_NAMES))


@functools.cache
def _leaf_keys(cls, prefix: str, methods: tuple[str, ...]) -> tuple[str, ...]:
    from ..config import METHOD_PARAMS, SynthesisConfig

    out: list[str] = []
    for name, info in cls.model_fields.items():
        ann = info.annotation
        if cls is SynthesisConfig and name == "params":
            for m in methods:
                out += [f"{prefix}{k}" for k in METHOD_PARAMS[m].model_fields if f"{prefix}{k}" not in out]
        elif isinstance(ann, type) and hasattr(ann, "model_fields"):
            out += _leaf_keys(ann, f"{prefix}{name}.", methods)
        else:
            out.append(prefix + name)
    return tuple(out)


def _method_param(key: str):
    """``(owner models, name)`` when ``key`` is a synthesis method's own parameter, else None."""
    from ..config import METHOD_PARAMS, SynthesisConfig, param_owners

    parts = key.split(".")
    if parts[0] != "synthesis" or len(parts) not in (2, 3) or parts[-1] in SynthesisConfig.model_fields:
        return None
    if len(parts) == 3 and parts[1] != "params":
        return None
    owners = param_owners(parts[-1])
    return ([METHOD_PARAMS[m] for m in owners], parts[-1]) if owners else None


def field_info(key: str, cls=PPIIConfig):
    """The pydantic ``FieldInfo`` of a dotted key (a method's own parameter: the first owner's)."""
    own = _method_param(key) if cls is PPIIConfig else None
    if own is not None:
        return own[0][0].model_fields[own[1]]
    *sections, name = key.split(".")
    for s in sections:
        cls = cls.model_fields[s].annotation
    if name not in cls.model_fields:
        raise KeyError(key)
    return cls.model_fields[name]


def value_of(cfg: PPIIConfig, key: str) -> Any:
    """The value of a dotted key; another method's own parameter: its default (what its control holds
    while hidden)."""
    own = _method_param(key)
    if own is not None:
        params = cfg.synthesis.params
        if params is not None and own[1] in type(params).model_fields:
            return getattr(params, own[1])
        return own[0][0].model_fields[own[1]].get_default(call_default_factory=True)
    node: Any = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


def _plain(v: Any) -> Any:
    """A configuration value in comparable form (tuples as lists, models as dicts)."""
    if hasattr(v, "model_dump"):
        return v.model_dump(mode="json")
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    return v


def changed_keys(a: PPIIConfig, b: PPIIConfig) -> frozenset[str]:
    return frozenset(k for k in leaf_keys() if _plain(value_of(a, k)) != _plain(value_of(b, k)))


class SharedConfig:
    """The evented holder of one :class:`PPIIConfig` (see the module docstring)."""

    #: (the new configuration, the frozenset of dotted keys that changed)
    changed = Signal(object, object)

    def __init__(self, cfg: PPIIConfig | None = None):
        self._cfg = cfg if cfg is not None else PPIIConfig()
        #: the checkpoints of the latest run this viewer's training dock started (the other docks offer it)
        self.last_run: dict[str, Path] = {}

    @property
    def config(self) -> PPIIConfig:
        return self._cfg

    def set(self, cfg: PPIIConfig) -> frozenset[str]:
        """Replace the whole configuration (e.g. a loaded file); returns the keys that changed."""
        keys = changed_keys(self._cfg, cfg)
        self._cfg = cfg
        if keys:
            self.changed.emit(cfg, keys)
        return keys

    def update(self, values: dict[str, Any]) -> frozenset[str]:
        """Set ``{"section.key": value}`` (validated; an invalid value raises :class:`InputError` and
        changes nothing)."""
        return self.set(self._cfg.with_values(values))


_HOLDERS: dict[int, SharedConfig] = {}


def shared_config(viewer) -> SharedConfig:
    """The viewer's one shared configuration (made on first use, dropped with the viewer)."""
    key = id(viewer)
    holder = _HOLDERS.get(key)
    if holder is None:
        holder = _HOLDERS[key] = SharedConfig()
        weakref.finalize(viewer, _HOLDERS.pop, key, None)
    return holder


# ---------------------------------------------------------------------------------------------- controls

#: Bounds (low, high, step) of range fields whose pydantic bounds are checked by a validator instead.
RANGE_HINTS: dict[str, tuple[float, float, float]] = {
    "patch_size": (0.005, 0.5, 0.005),
    "gradient_scale": (0.0, 100.0, 0.5),
    "alpha": (0.0, 1.0, 0.01),
    "source_rescale": (0.25, 4.0, 0.01),
    "n_anomalies": (1, 50, 1),
    "n_raters": (1, 32, 1),
    "patch_gamma": (0.0, 0.5, 0.005),
    "scale_range": (0.25, 4.0, 0.01),
}
#: Path fields: magicgui file pickers (mode r = an existing file or folder, d = a folder).
PATH_FIELDS = {
    "data.train": "r",
    "data.boxes": "r",
    "data.mask": "r",
    "training.reference": "r",
    "training.out_dir": "d",
}
#: Steps of float fields whose natural step is not 1/200 of their range.
STEPS = {
    "training.lr": 1e-5,
    "training.lr_min": 1e-6,
    "training.weight_decay": 1e-5,
    "synthesis.label_tolerance": 1e-4,
    "synthesis.label_x0": 1e-3,
}
DEFAULT = "(default)"
#: Labels where the field's name alone would say too little.
LABELS = {
    "data.train": "Training data",
    "training.out_dir": "Run folder",
    "training.lr": "Learning rate",
    "training.lr_min": "Final learning rate",
    "seed": "Seed",
    "model.samples": "Samples (MC / PHiSeg)",
    "data.augment.scaling": "Augment: scaling",
    "data.augment.rotation": "Augment: rotation",
    "data.augment.elastic": "Augment: elastic",
    "preprocess.window": "CT window",
    "preprocess.equalise": "Histogram equalisation",
    "training.val_every": "Validate every",
}


def _optional(ann) -> tuple[Any, bool]:
    """(the annotation without ``None``, whether ``None`` is allowed)."""
    origin = typing.get_origin(ann)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        if len(args) == 1 and len(args) < len(typing.get_args(ann)):
            return args[0], True
    return ann, False


def _bounds(info) -> tuple[float | None, float | None, bool]:
    lo = hi = None
    strict_lo = False
    for m in info.metadata:
        for attr in ("ge", "gt", "le", "lt"):
            v = getattr(m, attr, None)
            if v is None:
                continue
            if attr in ("ge", "gt"):
                lo, strict_lo = v, attr == "gt"
            else:
                hi = v
    return lo, hi, strict_lo


def _label(key: str) -> str:
    return LABELS.get(key) or key.rsplit(".", 1)[-1].replace("_", " ").capitalize()


class Control:
    """One generated control: a magicgui widget with the configuration value's getter and setter."""

    def __init__(self, key: str, widget, get: Callable[[], Any], set_: Callable[[Any, PPIIConfig], None]):
        self.key = key
        self.widget = widget
        self.get = get
        self._set = set_

    def set(self, value: Any, cfg: PPIIConfig) -> None:
        self._set(value, cfg)

    @property
    def changed(self):
        return self.widget.changed


def _exact(ctl: Control, tol: float) -> Control:
    """Keep the exact value last shown: a control displays a float rounded (e.g. NSA's label_x0 = 20/255
    to 4 decimals), and reading it back must give the configuration's value, not the rounded one, unless
    the user moved the control."""
    last: dict[str, Any] = {}
    get, set_ = ctl.get, ctl._set

    def close(a, b):
        if a is None or b is None:
            return a is b
        if isinstance(a, (list, tuple)):
            return len(a) == len(b) and all(abs(x - y) <= tol for x, y in zip(a, b))
        return abs(a - b) <= tol

    def get_exact():
        v = get()
        return last["v"] if "v" in last and close(v, last["v"]) else v

    def set_exact(v, cfg):
        last["v"] = None if v is None else (list(v) if isinstance(v, (list, tuple)) else v)
        set_(v, cfg)

    ctl.get, ctl._set = get_exact, set_exact
    return ctl


def _shown_default(key: str, cfg: PPIIConfig, fallback: Any) -> Any:
    """What a ``None`` (method default) field stands for, to show greyed out."""
    if key.startswith("synthesis."):
        v = getattr(cfg.synthesis.resolved(), key.split(".", 1)[1], None)
        if v is not None:
            return v
    return fallback


def make_control(key: str, choices: dict[str, Callable[[], list[str]]] | None = None) -> Control:
    """A magicgui control for the configuration field ``key`` (see the module docstring)."""
    from magicgui import widgets as mw

    from ..config import METHOD_NAMES

    choices = {"synthesis.method": lambda: list(METHOD_NAMES), **(choices or {})}  # registered methods too
    info = field_info(key)
    ann, nullable = _optional(info.annotation)
    origin = typing.get_origin(ann)
    name = key.rsplit(".", 1)[-1]
    tip = info.description or ""
    kw = {"label": _label(key), "tooltip": tip}

    if origin is typing.Literal or (ann is str and choices and key in choices):
        opts = [str(a) for a in typing.get_args(ann)] if origin is typing.Literal else list(choices[key]())
        items = ([(DEFAULT, None)] if nullable else []) + [(o, o) for o in opts]
        w = mw.ComboBox(choices=items, **kw)

        def set_combo(v, cfg):
            if v is not None and v not in w.choices:
                w.choices = tuple(items + [(str(v), v)])  # e.g. cuda:3 from a file, on another machine
            w.value = v

        return Control(key, w, lambda: w.value, set_combo)

    if ann is bool:
        if nullable:
            w = mw.ComboBox(choices=[(DEFAULT, None), ("yes", True), ("no", False)], **kw)
            return Control(key, w, lambda: w.value, lambda v, cfg: setattr(w, "value", v))
        w = mw.CheckBox(text=_label(key), tooltip=tip, label="")
        return Control(key, w, lambda: bool(w.value), lambda v, cfg: setattr(w, "value", bool(v)))

    if ann in (int, float):
        lo, hi, strict = _bounds(info)
        if ann is int:
            lo_i = int(lo) if lo is not None else 0
            w = mw.SpinBox(min=lo_i - (1 if nullable else 0), max=int(hi) if hi is not None else 10_000_000, **kw)
            if nullable:  # the minimum stands for None
                w.native.setSpecialValueText("none")
                return Control(
                    key,
                    w,
                    lambda: None if w.value < lo_i else int(w.value),
                    lambda v, cfg: setattr(w, "value", lo_i - 1 if v is None else int(v)),
                )
            return Control(key, w, lambda: int(w.value), lambda v, cfg: setattr(w, "value", int(v)))
        lo_f = float(lo) if lo is not None else 0.0
        hi_f = float(hi) if hi is not None else 10_000.0
        step = STEPS.get(key) or max(round((hi_f - lo_f) / 200.0, 3), 0.001)
        if strict:
            lo_f += step
        w = mw.FloatSpinBox(min=lo_f, max=hi_f, step=step, **kw)
        w.native.setDecimals(max(w.native.decimals(), 4))
        return _exact(
            Control(key, w, lambda: float(w.value), lambda v, cfg: setattr(w, "value", float(v))),
            0.5 * 10 ** -w.native.decimals(),
        )

    if origin is tuple:
        elem = typing.get_args(ann)[0]
        lo, hi, step = RANGE_HINTS.get(name, (0.0, 1.0, 0.01))
        if elem is int:
            slider = mw.RangeSlider(min=int(lo), max=int(hi), step=int(step), **({} if nullable else kw))
            conv = lambda v: [int(round(x)) for x in v]  # noqa: E731
        else:
            slider = mw.FloatRangeSlider(min=lo, max=hi, step=step, **({} if nullable else kw))
            conv = lambda v: [float(x) for x in v]  # noqa: E731
        if not nullable:
            ctl = Control(key, slider, lambda: conv(slider.value), lambda v, cfg: setattr(slider, "value", tuple(v)))
            return ctl if elem is int else _exact(ctl, 1e-6 * (hi - lo))
        # None = the method's default: a "default" box, the slider greyed out showing what it stands for
        auto = mw.CheckBox(text="default", value=True)
        box = mw.Container(widgets=[auto, slider], layout="horizontal", labels=False, **kw)
        box.margins = (0, 0, 0, 0)
        slider.enabled = False
        auto.changed.connect(lambda v: setattr(slider, "enabled", not v))

        def set_range(v, cfg):
            with auto.changed.blocked():
                auto.value = v is None
            slider.enabled = v is not None
            fallback = tuple(lo + (hi - lo) * f for f in (0.1, 0.4))
            shown = v if v is not None else _shown_default(key, cfg, fallback)
            with slider.changed.blocked():
                slider.value = tuple(shown)
            box.changed.emit(box)  # one change for the pair (the form ignores it while it shows a config)

        ctl = Control(key, box, lambda: None if auto.value else conv(slider.value), set_range)
        return ctl if elem is int else _exact(ctl, 1e-6 * (hi - lo))

    if key in PATH_FIELDS:
        w = mw.FileEdit(mode=PATH_FIELDS[key], nullable=nullable, **kw)
        w.line_edit.native.setPlaceholderText("(none)" if nullable else "")

        def get_path():
            text = w.line_edit.value.strip()
            return (None if nullable else "") if not text else text

        return Control(key, w, get_path, lambda v, cfg: setattr(w.line_edit, "value", "" if v is None else str(v)))

    if ann is str:
        w = mw.LineEdit(**kw)
        return Control(
            key,
            w,
            lambda: w.value or (None if nullable else ""),
            lambda v, cfg: setattr(w, "value", "" if v is None else str(v)),
        )

    if origin is list:  # e.g. reference_labels: comma-separated; empty = None
        w = mw.LineEdit(**kw)
        w.native.setPlaceholderText("(none)")

        def get_list():
            items = [s.strip() for s in w.value.split(",") if s.strip()]
            return items or None

        return Control(key, w, get_list, lambda v, cfg: setattr(w, "value", "" if not v else ", ".join(map(str, v))))

    if origin is dict or ann is dict:  # e.g. training.heldout: YAML/JSON flow mapping
        import yaml

        w = mw.LineEdit(**kw)

        def get_dict():
            try:
                v = yaml.safe_load(w.value or "{}")
            except yaml.YAMLError as exc:
                raise InputError(f"{key}: not a mapping: {exc}") from None
            if not isinstance(v, dict):
                raise InputError(f"{key}: not a mapping: {w.value!r}")
            return v

        return Control(key, w, get_dict, lambda v, cfg: setattr(w, "value", json.dumps(v)))

    raise TypeError(f"no control for configuration field {key!r} of type {info.annotation!r}")  # pragma: no cover


class ConfigForm:
    """A magicgui ``Container`` of generated controls for ``keys``, bound both ways to ``holder``.

    ``on_error(message)`` is called when a control's value is refused (the control then shows the
    configuration's value again); ``extra_choices`` gives the choices of plain string fields (e.g. the
    devices of this machine for ``training.device``)."""

    def __init__(
        self,
        holder: SharedConfig,
        keys: Iterable[str],
        on_error: Callable[[str], None] | None = None,
        extra_choices: dict[str, Callable[[], list[str]]] | None = None,
    ):
        from magicgui.widgets import Container

        self.holder = holder
        self.on_error = on_error or (lambda msg: None)
        self.controls: dict[str, Control] = {k: make_control(k, extra_choices) for k in keys}
        self.container = Container(widgets=[c.widget for c in self.controls.values()], labels=True)
        self._syncing = False
        self.show(holder.config)
        for key, ctl in self.controls.items():  # a Container control (nullable range) relays its children's changes
            ctl.changed.connect(lambda *_, k=key: self._from_widget(k))
        holder.changed.connect(self._from_config)  # psygnal holds it weakly: a dropped form disconnects

    @property
    def native(self):
        return self.container.native

    def __getitem__(self, key: str) -> Control:
        return self.controls[key]

    def _disconnect(self):
        try:
            self.holder.changed.disconnect(self._from_config)
        except Exception:  # already gone
            pass

    def values(self) -> dict[str, Any]:
        """The controls' values (``InputError`` if one cannot be read, e.g. malformed YAML)."""
        return {k: c.get() for k, c in self.controls.items()}

    def show(self, cfg: PPIIConfig, keys=None) -> None:
        """Show ``cfg`` in the controls of ``keys`` (all when None; no configuration update comes back)."""
        self._syncing = True
        try:
            for key in self.controls if keys is None else [k for k in keys if k in self.controls]:
                ctl, value = self.controls[key], value_of(cfg, key)
                try:
                    same = value is not None and _plain(ctl.get()) == _plain(value)
                except InputError:
                    same = False
                if not same:  # None is always re-shown: what a default stands for may have changed
                    ctl.set(value, cfg)
        finally:
            self._syncing = False

    def _from_widget(self, key: str) -> None:
        if self._syncing:
            return
        try:
            self.holder.update({key: self.controls[key].get()})
        except InputError as exc:
            self.on_error(str(exc))
            self.show(self.holder.config)

    def _from_config(self, cfg: PPIIConfig, keys) -> None:
        if "synthesis.method" in keys:  # what a None (method default) synthesis field stands for changed too
            keys = set(keys) | {k for k in self.controls if k.startswith("synthesis.")}
        try:
            self.show(cfg, keys)
        except RuntimeError:  # its Qt widgets were deleted (the dock closed): stop following
            self._disconnect()


def device_choices() -> dict[str, Callable[[], list[str]]]:
    """The choices of ``training.device`` on this machine."""
    from ._common import cuda_devices

    return {"training.device": lambda: ["auto", "cpu"] + cuda_devices()}


def inference_form(widget, viewer) -> ConfigForm:
    """The prediction and evaluation widgets' shared settings: MC-dropout / PHiSeg samples and the
    device, from the viewer's shared configuration (sets ``widget.shared``, ``.form``, ``.forms``)."""
    widget.shared = shared_config(viewer)
    widget.form = ConfigForm(
        widget.shared, ("model.samples", "training.device"), on_error=widget._fail, extra_choices=device_choices()
    )
    widget.forms = [widget.form]
    return widget.form


class FormsMixin:
    """For a dock widget holding :class:`ConfigForm` s in ``self.forms``: reach a control by its key."""

    forms: list[ConfigForm]

    def control(self, key: str) -> Control:
        """The generated control of the configuration key ``key``."""
        for form in self.forms:
            if key in form.controls:
                return form[key]
        raise KeyError(key)

    def set_value(self, key: str, value) -> None:
        """Set a control as the user would: the shared configuration (and every widget) follows."""
        self.control(key).set(value, self.shared.config)
