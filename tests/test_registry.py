# SPDX-License-Identifier: BSD-3-Clause
"""A synthesis method registered from outside the package (this file) is a method like the others: in
``ppii synthesize --method``, in the preview's method list, in training, in YAML (issue 20 item 2)."""

import numpy as np
import pytest
from pydantic import BaseModel, Field

from conftest import smooth_image
from napari_ppii.config import PPIIConfig
from napari_ppii.errors import InputError
from napari_ppii.synthesis import Synthesizer, applicable, register_method, unregister_method
from napari_ppii.synthesis.backend import ops
from napari_ppii.synthesis.plan import AnomalySpec, sample_size


class ToyParams(BaseModel):
    """The toy method's own parameter, with its default."""

    brightness: float = Field(0.25, gt=0, le=1)


class Toy(Synthesizer):
    """Adds a constant inside one box per image; label 1 there."""

    method = "toy"

    def plan_image(self, index, spatial, n_images, rng, masks=None):
        size = sample_size(spatial, self.config, rng)
        start = self._target_start(spatial, size, rng, None if masks is None else masks[index])
        return [] if start is None else [AnomalySpec(index, index, start, start, size, 1.0, None, [], [])]

    def render(self, images, plan, n_out, masks=None):
        xp = ops(images)
        out = xp.copy(images[:n_out])
        label = xp.zeros_like(out)
        b = self.config.brightness  # its own parameter (self.config.params.brightness)
        for s in plan:
            if s.target_index < n_out:
                out[s.target_index][s.target_slices] += b
                label[s.target_index][s.target_slices] = 1.0
        return out, label, xp.zeros_like(out)


@pytest.fixture
def toy():
    register_method(
        Toy, defaults={"patch_size": (0.1, 0.2), "square": True}, paper={"placement": "anywhere"}, params=ToyParams
    )
    yield Toy
    unregister_method("toy")


def test_unknown_method_is_refused_with_the_known_ones():
    with pytest.raises(InputError, match="unknown synthesis method 'toy'.*ppii, pii, fpi, nsa"):
        PPIIConfig().with_overrides(["synthesis.method=toy"])
    # a built-in method refuses another method's parameters, named
    with pytest.raises(InputError, match="brightness"):
        PPIIConfig().with_overrides(['synthesis.params={"brightness": 0.3}'])


def test_toy_method_in_config_cli_and_training(toy, tmp_path, capsys):
    from PIL import Image

    from napari_ppii.cli import main
    from napari_ppii.io import read_scan
    from napari_ppii.training import train

    cfg = PPIIConfig().with_overrides(["synthesis.method=toy", "synthesis.placement=anywhere"])
    assert cfg.synthesis.params.model_dump() == {"brightness": 0.25}  # its parameter model's default
    assert (
        cfg.synthesis.brightness == 0.25
        and cfg.with_overrides(["synthesis.brightness=0.5"]).synthesis.brightness == 0.5
    )
    assert cfg.synthesis.resolved().patch_size == (0.1, 0.2)  # its defaults for the shared fields
    with pytest.raises(InputError, match="brightness"):
        cfg.with_overrides(['synthesis.params={"brightness": 5}'])
    # YAML round trip
    cfg.save(tmp_path / "toy.yaml")
    assert PPIIConfig.load(tmp_path / "toy.yaml").synthesis.method == "toy"
    # ppii synthesize --method toy
    png = tmp_path / "x.png"
    Image.fromarray((smooth_image((64, 64), seed=1) * 200).astype(np.uint8)).save(png)
    assert (
        main(
            [
                "synthesize",
                str(png),
                "--method",
                "toy",
                "--set",
                "synthesis.placement=anywhere",
                "--set",
                'synthesis.params={"brightness": 0.2}',
                "--out",
                str(tmp_path / "syn"),
                "--format",
                "tiff",
            ]
        )
        == 0
    )
    assert "toy: 1 anomaly" in capsys.readouterr().out
    img, target = read_scan(tmp_path / "syn" / "image.tif").array, read_scan(tmp_path / "syn" / "target.tif").array
    assert np.isclose((img - target).max(), 0.2, atol=1e-5)
    # training draws its batches with it
    cfg = cfg.with_overrides(
        [
            "model.base_channels=4",
            "model.levels=3",
            "data.image_size=32",
            "training.batch_size=4",
            "data.val_samples=4",
            "training.steps=2",
            "training.val_every=2",
            f"training.out_dir={tmp_path / 'run'}",
        ]
    )
    res = train(cfg, images=np.stack([smooth_image((32, 32), seed=s) for s in range(5)]))
    assert res.step == 2 and np.isfinite(res.last_loss)
    # only its own parameters are "applicable" in the preview
    assert applicable("synthesis.brightness", cfg) and not applicable("synthesis.n_raters", cfg)
    assert not applicable("synthesis.brightness", PPIIConfig())


def test_toy_method_in_the_preview_method_list(toy, qtbot):
    from napari_ppii._widgets._config import make_control

    control = make_control("synthesis.method")
    names = [c if isinstance(c, str) else c[1] for c in control.widget.choices]
    assert "toy" in names and "ppii" in names


def test_the_documented_example_method_works(tmp_path):
    """docs/adding_a_method.md's code, run as written: the method synthesises, its parameter is set flat
    or nested, another method's parameter is refused, and the paper's values come from its model."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "adding_a_method.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    ns: dict = {}
    exec(compile(code, "adding_a_method.md", "exec"), ns)
    try:
        cfg = PPIIConfig().with_overrides(["synthesis.method=bright", "synthesis.brightness=0.1"])
        assert cfg.synthesis.params.brightness == 0.1 and cfg.synthesis.resolved().square is True
        assert (
            PPIIConfig()
            .with_overrides(["synthesis.method=bright", "synthesis.params.brightness=0.2"])
            .synthesis.brightness
            == 0.2
        )
        with pytest.raises(InputError, match="n_raters is a parameter of ppii"):
            cfg.with_overrides(["synthesis.n_raters=[1, 2]"])
        from napari_ppii.config import SynthesisConfig
        from napari_ppii.synthesis import make_synthesizer

        assert SynthesisConfig.paper("bright").brightness == 0.5
        img = smooth_image((64, 64), seed=2)
        res = make_synthesizer(cfg.synthesis.model_copy(update={"placement": "anywhere"})).sample(img, rng=0)
        changed = res.image - img
        assert np.isclose(changed.max(), 0.1, atol=1e-5) and res.label.max() == 1.0 and len(res.boxes) == 1
        assert np.array_equal(res.label > 0, np.abs(changed) > 1e-6)
    finally:
        unregister_method("bright")
