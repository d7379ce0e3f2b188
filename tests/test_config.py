# SPDX-License-Identifier: BSD-3-Clause
"""The configuration object: defaults, overrides, YAML round trip, clear errors."""

import pytest

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
        ["synthesis.n_raters=[2, 5]", "synthesis.method=pii", "seed=9", "preprocess.size=256"]
    )
    assert c.synthesis.n_raters == (2, 5) and c.synthesis.method == "pii" and c.seed == 9
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
