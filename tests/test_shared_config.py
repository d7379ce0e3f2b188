# SPDX-License-Identifier: BSD-3-Clause
"""One configuration per viewer, shared live by the four widgets, with generated controls:
widget -> configuration -> widget is lossless for every field, and the CLI builds the same configuration."""

from __future__ import annotations

import json
import typing

import pytest

from napari_ppii.config import METHOD_PARAMS, PPIIConfig, param_owners
from napari_ppii.errors import InputError

pytest.importorskip("napari")

from napari_ppii._widgets._config import (  # noqa: E402
    RANGE_HINTS,
    SharedConfig,
    _bounds,
    _optional,
    _plain,
    field_info,
    leaf_keys,
    shared_config,
    value_of,
)

SPECIAL = {
    "training.device": "cuda:3",
    "data.train": "2024",
    "data.boxes": "boxes/on.csv",
    "data.mask": "masks.npy",
    "training.reference": "../nih/annotations.csv",
    "training.out_dir": "runs/2024",
    "training.reference_labels": ["Nodule", "Mass"],
    "training.heldout": {"method": "pii", "n_raters": [1, 3]},
}
#: the built-in methods (FPI's parameters are PII's)
METHODS = ("ppii", "pii", "nsa")


def _other_value(key: str, cur):
    """A valid value of ``key`` other than ``cur`` (from the field's own type and bounds)."""
    if key in SPECIAL:
        return SPECIAL[key]
    info = field_info(key)
    ann, nullable = _optional(info.annotation)
    origin = typing.get_origin(ann)
    if origin is typing.Literal:
        return next(a for a in typing.get_args(ann) if a != cur)
    if ann is bool:
        return True if cur is None else not cur
    lo, hi, _ = _bounds(info)
    if ann is int:
        lo = 1 if lo is None else int(lo)
        return lo + 3 if cur is None else (cur + 1 if hi is None or cur + 1 <= hi else cur - 1)
    if ann is float:
        if hi is None:
            return (cur or 0.2) * 0.37
        return float(lo or 0) + (float(hi) - float(lo or 0)) * 0.318309886
    if origin is tuple:
        r_lo, r_hi, _ = RANGE_HINTS.get(key.rsplit(".", 1)[-1], (0.0, 1.0, 0.01))
        if typing.get_args(ann)[0] is int:
            return [int(r_lo) + 1, int(r_lo) + 3]
        return [r_lo + (r_hi - r_lo) * 0.1371, r_lo + (r_hi - r_lo) * 0.2903]
    raise AssertionError(f"no test value for {key} ({ann})")


def keys_of(method: str) -> list[str]:
    """The leaf keys a configuration of ``method`` holds: the shared ones and that method's own parameters
    (another method's parameters are not part of it)."""
    own = set(METHOD_PARAMS[method].model_fields)
    return [k for k in leaf_keys() if k.split(".")[-1] in own or not param_owners(k.split(".")[-1])]


def base(method: str) -> PPIIConfig:
    return PPIIConfig().with_values({"synthesis.method": method})


def perturbed(method: str = "pii") -> PPIIConfig:
    """The default configuration of ``method`` with every other leaf field it holds changed."""
    cfg = base(method)
    for key in keys_of(method):
        if key != "synthesis.method":
            cfg = cfg.with_values({key: _other_value(key, value_of(cfg, key))})
    return cfg


def _same(a: PPIIConfig, b: PPIIConfig) -> list[str]:
    return [k for k in leaf_keys() if _plain(value_of(a, k)) != _plain(value_of(b, k))]


@pytest.mark.parametrize("method", METHODS)
def test_every_field_is_changed_by_the_test_values(method):
    changed = sorted(_same(base(method), perturbed(method)))
    assert changed == sorted(k for k in keys_of(method) if k != "synthesis.method")
    # every leaf key belongs to some method's configuration (or to all)
    assert set(leaf_keys()) == set().union(*(keys_of(m) for m in METHODS))


def test_holder_announces_changed_keys_and_refuses_invalid_values():
    h = SharedConfig()
    seen = []
    h.changed.connect(lambda cfg, keys: seen.append(keys))
    h.update({"synthesis.method": "pii", "training.steps": 7})
    assert seen == [frozenset({"synthesis.method", "training.steps"})]
    before = h.config
    with pytest.raises(InputError):
        h.update({"training.steps": 0})
    assert h.config is before and len(seen) == 1
    h.update({"training.steps": 7})  # no change: no event
    assert len(seen) == 1


@pytest.fixture
def four_widgets(make_napari_viewer, qtbot):
    from napari_ppii._widgets.evaluate import EvaluationWidget
    from napari_ppii._widgets.predict import PredictWidget
    from napari_ppii._widgets.preview import PreviewWidget
    from napari_ppii._widgets.training import TrainingWidget

    v = make_napari_viewer()
    ws = [PreviewWidget(v), TrainingWidget(v, confirm=lambda: True), PredictWidget(v), EvaluationWidget(v)]
    for w in ws:
        qtbot.addWidget(w)
    yield v, ws
    qtbot.waitUntil(lambda: not ws[0].busy, timeout=60000)


def _controls(ws) -> dict:
    out = {}
    for w in ws:
        for form in w.forms:
            for key, ctl in form.controls.items():
                out.setdefault(key, []).append(ctl)
    return out


def test_one_configuration_per_viewer_every_field_has_a_control(four_widgets):
    v, ws = four_widgets
    assert all(w.shared is shared_config(v) for w in ws)
    assert set(_controls(ws)) == set(leaf_keys())  # no field without a control


def test_config_to_widgets_to_config_is_lossless(four_widgets):
    v, ws = four_widgets
    for method in METHODS:
        target = perturbed(method)
        shared_config(v).set(target)  # e.g. "Load config..."
        for key, ctls in _controls(ws).items():
            for ctl in ctls:  # each control shows the value, and reads back exactly that value
                assert _plain(ctl.get()) == _plain(value_of(target, key)), (method, key)


def test_widgets_to_config_is_lossless_and_equals_the_cli(four_widgets, tmp_path):
    from napari_ppii.cli import _load_config, build_parser

    v, ws = four_widgets
    controls = _controls(ws)
    for method in METHODS:
        target = perturbed(method)
        # as a user would: one control after the other (the training widget's, where two widgets show a key);
        # the method first, then the controls it shows
        for key in ["synthesis.method"] + [k for k in keys_of(method) if k != "synthesis.method"]:
            ctl = controls[key][-1]
            ctl.set(value_of(target, key), shared_config(v).config)
        got = shared_config(v).config
        assert _same(got, target) == [], method
        assert all(w.config() == target for w in ws if hasattr(w, "config"))  # preview and training: one object
        # the CLI, from a file and from --set overrides, builds the identical configuration
        path = tmp_path / f"{method}.yaml"
        got.save(path)
        assert _load_config(build_parser().parse_args(["train", "--config", str(path)])) == got
        sets = []
        for key in keys_of(method):
            sets += ["--set", f"{key}={json.dumps(_plain(value_of(target, key)))}"]
        assert _load_config(build_parser().parse_args(["train", *sets])) == got


def test_a_change_in_one_widget_shows_in_the_others(four_widgets, qtbot):
    v, (preview, training, predict, evaluate) = four_widgets
    preview.set_value("synthesis.method", "nsa")
    assert training.control("synthesis.method").get() == "nsa"
    assert training.config().synthesis.method == "nsa"  # what the preview shows is what trains
    # a None patch size (the method's default) shows what it stands for, per method
    shown = preview.control("synthesis.patch_size").widget[1].value
    assert shown == pytest.approx(PPIIConfig().with_values({"synthesis.method": "nsa"}).synthesis.resolved().patch_size)
    predict.set_value("model.samples", 23)
    assert evaluate.control("model.samples").get() == 23 and training.config().model.samples == 23
    training.set_value("training.device", "cpu")
    assert predict.control("training.device").get() == "cpu"
    # an invalid value is refused with a message, and the control shows the configuration again
    before = training.config()
    training.control("training.heldout").widget.value = "[not, a, mapping]"
    assert "not a mapping" in training.last_error
    assert training.config() == before
    assert training.control("training.heldout").get() == before.training.heldout
