# SPDX-License-Identifier: BSD-3-Clause
"""The configuration object: defaults, overrides, YAML round trip, clear errors."""

import pytest
import yaml

from napari_ppii.config import PPIIConfig, SynthesisConfig
from napari_ppii.errors import InputError


def test_defaults_are_calibrated_and_the_papers_reachable():
    c = PPIIConfig()
    s = c.synthesis
    assert s.method == "ppii" and s.placement == "lungs" and s.n_raters == (1, 9)
    assert s.gradient_scale_distribution == "log_uniform" and s.clip == "soft" and s.label_mode == "logistic"
    assert c.preprocess.equalise is True and c.preprocess.window == "lung"
    p = SynthesisConfig.paper()
    assert p.n_anomalies == (1, 10) and p.gradient_scale == (10.0, 20.0) and p.rater_radius == 0.25
    assert p.placement == "anywhere" and p.clip == "hard" and p.label_mode == "scaled"
    assert p.rater_centre_std == pytest.approx(1 / 12)
    # the paper's YAML gives the same configuration
    from pathlib import Path

    y = PPIIConfig.load(Path(__file__).resolve().parents[1] / "configs" / "paper_ppii.yaml").synthesis
    assert y == p


def test_clip_accepts_the_old_booleans():
    assert SynthesisConfig(clip=True).clip == "hard" and SynthesisConfig(clip=False).clip == "none"


def test_overrides_and_yaml_round_trip(tmp_path):
    c = PPIIConfig().with_overrides(
        ["synthesis.alpha=[0.2, 0.5]", "synthesis.method=pii", "seed=9", "preprocess.size=256"]
    )
    assert c.synthesis.alpha == (0.2, 0.5) and c.synthesis.method == "pii" and c.seed == 9
    c.save(tmp_path / "c.yaml")
    assert PPIIConfig.load(tmp_path / "c.yaml") == c


@pytest.mark.parametrize(
    "override,match",
    [
        ("synthesis.n_raters=[3, 1]", "n_raters"),
        ("synthesis.nraters=3", "unknown configuration key"),
        ("nosection.x=1", "unknown configuration"),
        ("synthesis.rater_radius=2", "rater_radius"),
        ("seed=-1", "seed"),
        ("justtext", "key=value"),
    ],
)
def test_bad_overrides(override, match):
    with pytest.raises(InputError, match=match):
        PPIIConfig().with_overrides([override])


def test_bad_files(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        PPIIConfig.load(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("synthesis: [unclosed")
    with pytest.raises(InputError, match="YAML"):
        PPIIConfig.load(tmp_path / "bad.yaml")
    (tmp_path / "extra.yaml").write_text("synthesis:\n  colour: red\n")
    with pytest.raises(InputError, match="colour"):
        PPIIConfig.load(tmp_path / "extra.yaml")


def test_each_method_owns_its_parameters_and_old_flat_files_load(tmp_path):
    """Each method's parameters are its own model (with the paper's values beside the defaults); files
    written before they moved (every parameter a flat key of synthesis) load with each key going to its
    method; another method's parameter is refused when set, named with its owners; switching the method
    keeps same-named values."""
    from napari_ppii.synthesis.nsa import NSAParams
    from napari_ppii.synthesis.pii import PIIParams
    from napari_ppii.synthesis.ppii import PPIIParams

    assert isinstance(PPIIConfig().synthesis.params, PPIIParams)
    assert isinstance(PPIIConfig().with_overrides(["synthesis.method=pii"]).synthesis.params, PIIParams)
    assert "n_raters" not in SynthesisConfig.model_fields and "alpha" not in PPIIParams.model_fields
    assert SynthesisConfig.paper("nsa").params == NSAParams(
        **{k: v for k, v in NSAParams.paper.items() if k in NSAParams.model_fields}
    )
    # a configuration file of before the move: every method's parameters as flat keys
    old = {
        "method": "nsa",
        "n_raters": [2, 3],
        "alpha": [0.1, 0.2],
        "nsa_patches": 4,
        "label_k": 42.5,
        "mixed_gradients": False,
        "placement": "anywhere",
        "clip": True,
    }
    (tmp_path / "old.yaml").write_text(yaml.safe_dump({"synthesis": old}))
    s = PPIIConfig.load(tmp_path / "old.yaml").synthesis
    assert isinstance(s.params, NSAParams) and s.nsa_patches == 4 and s.label_k == 42.5 and not s.mixed_gradients
    assert s.clip == "hard" and s.placement == "anywhere"
    with pytest.raises(AttributeError, match="n_raters is a parameter of ppii"):
        s.n_raters
    # saved anew, nested, and loads to the same
    PPIIConfig(synthesis=s).save(tmp_path / "new.yaml")
    assert yaml.safe_load((tmp_path / "new.yaml").read_text())["synthesis"]["params"]["nsa_patches"] == 4
    assert PPIIConfig.load(tmp_path / "new.yaml").synthesis == s
    # set: flat, nested, with the method in any order; another method's parameter refused with its owners
    c = PPIIConfig().with_overrides(["synthesis.nsa_patches=2", "synthesis.method=nsa"])
    assert c.synthesis.nsa_patches == 2
    assert PPIIConfig().with_overrides(["synthesis.params.n_raters=[2, 2]"]).synthesis.n_raters == (2, 2)
    with pytest.raises(InputError, match="alpha is a parameter of pii, fpi; synthesis.method is ppii"):
        PPIIConfig().with_overrides(["synthesis.alpha=[0.1, 0.2]"])
    # switching the method keeps same-named values (label_k: P-PII's and NSA's), the rest are the defaults
    p = PPIIConfig().with_overrides(["synthesis.label_k=50", "synthesis.n_raters=[2, 2]"])
    n = p.with_overrides(["synthesis.method=nsa"]).synthesis
    assert n.label_k == 50 and n.nsa_patches == 3
    back = p.with_overrides(["synthesis.method=nsa"]).with_overrides(["synthesis.method=ppii"]).synthesis
    assert back.label_k == 50 and back.n_raters == (1, 9)
