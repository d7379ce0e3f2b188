# SPDX-License-Identifier: BSD-3-Clause
"""A wheel that works alone: built, installed into a folder away from the source tree, then the sample
data, the napari manifest, ``python -m napari_ppii`` and the version are used from there."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_installs_and_works_away_from_the_source_tree(tmp_path):
    wheels = tmp_path / "wheels"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    whl = next(wheels.glob("napari_ppii-*.whl"))
    target = tmp_path / "site"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(whl)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    SHIPS_MODEL = (ROOT / "resources" / "models" / "lidc_unet_demo.pt").exists()  # the wheel carries what the tree has
    code = f"""
import importlib, importlib.metadata as md, sys
from pathlib import Path
import napari_ppii
target = Path({str(target)!r})
assert Path(napari_ppii.__file__).is_relative_to(target), napari_ppii.__file__
assert napari_ppii.__version__ == md.version("napari-ppii")
from napari_ppii import _sample_data
assert _sample_data.RESOURCES.is_relative_to(target), _sample_data.RESOURCES
layers = _sample_data.nih_nodule()
assert layers[0][0].ndim == 2 and len(layers) == 2
ct = _sample_data.lidc_ct()
assert ct[0][0].shape[0] == 24
assert _sample_data.lidc_ct_full_view()[0][0].shape == (24, 256, 256)
assert (_sample_data.RESOURCES / "models" / "lidc_unet_demo.pt").exists() == {SHIPS_MODEL!r}
import yaml
manifest = yaml.safe_load((Path(napari_ppii.__file__).parent / "napari.yaml").read_text())
for cmd in manifest["contributions"]["commands"]:
    mod, attr = cmd["python_name"].split(":")
    m = importlib.import_module(mod)
    assert Path(m.__file__).is_relative_to(target), m.__file__
    getattr(m, attr)
eps = [e for e in md.entry_points(group="napari.manifest") if e.value.startswith("napari_ppii")]
assert eps and eps[0].value == "napari_ppii:napari.yaml"
lic = [f for f in md.files("napari-ppii") if f.name == "LICENSE"]
assert lic, "no LICENSE in the wheel"
print("ok")
"""
    env = {**os.environ, "PYTHONPATH": str(target)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]
    r = subprocess.run(
        [sys.executable, "-m", "napari_ppii", "--version"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert r.returncode == 0 and r.stdout.strip().endswith(md_version(target)), (r.stdout, r.stderr[-2000:])


def md_version(target: Path) -> str:
    dist = next(target.glob("napari_ppii-*.dist-info"))
    return dist.name.removesuffix(".dist-info").split("-")[1]
