#!/usr/bin/env bash
# Set up napari-ppii on a fresh Debian machine: system libraries for headless Qt (where absent),
# a Python 3.11 virtual environment in .venv, torch==2.13.0 first and on its own (the CPU build this
# machine has on disk; GPU users install their own build), then the package with its test extras.
# Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES="xvfb xauth libgl1 libegl1 libopengl0 libgl1-mesa-dri libglx-mesa0 libfontconfig1 \
libglib2.0-0 libdbus-1-3 libx11-xcb1 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 \
libxcb-image0 libxcb-render-util0 libxcb-randr0 libxcb-shape0 libxcb-xfixes0 libxcb-xkb1"

missing=""
for p in $APT_PACKAGES; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "setup: installing Debian packages:$missing"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for c in python3.11 python3; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))'; then PY=$c; break; fi
  done
fi
[ -n "$PY" ] || { echo "setup: Python >= 3.11 not found" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $PY"
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
"$VPY" -m pip install -q --disable-pip-version-check --upgrade "pip>=24" >/dev/null
if ! "$VPY" -c 'import torch' >/dev/null 2>&1; then
  echo "setup: installing torch==2.13.0"
  "$VPY" -m pip install -q --disable-pip-version-check torch==2.13.0
fi
EXTRAS=${PPII_EXTRAS:-test}
echo "setup: installing napari-ppii[$EXTRAS]"
"$VPY" -m pip install -q --disable-pip-version-check -e ".[$EXTRAS]"
echo "setup: done ($("$VPY" -c 'import torch, napari_ppii; print("torch", torch.__version__, "napari-ppii", napari_ppii.__version__)'))"
