#!/usr/bin/env bash
# Installs what fusedvae needs to build, test and train, idempotently: Debian packages for the C++
# side (oneDNN for the CPU matrix products; clang, its compiler-rt and OpenMP for the sanitizer and
# fuzz build) and the default dataset, PyPI for the float64 reference (and with --tests, PyTorch and
# pytest for the Python package's tests).
# Safe to run again.
set -euo pipefail

apt_packages=(
  cmake ninja-build g++ pkg-config
  clang libclang-rt-dev libomp-dev
  libgtest-dev
  libcli11-dev nlohmann-json3-dev libstb-dev zlib1g-dev libdnnl-dev
  dataset-fashion-mnist
)

missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  echo "setup: installing Debian packages: ${missing[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! python3 -c "import numpy" 2>/dev/null; then
  echo "setup: installing numpy from PyPI"
  python3 -m pip install -q "numpy>=1.24"
fi

# With --tests (scripts/test.sh), what the Python package's build and tests need as well (pip
# install ., then pytest python/tests): PyTorch from PyPI, whose Linux wheel brings NVIDIA's CUDA
# libraries (about 5.4 GB installed; 3 to 4 minutes on a fresh machine), and pytest.
# scikit-build-core and nanobind come through pip's build isolation. Training needs none of it.
# FUSEDVAE_NO_TORCH=1 skips PyTorch: the tests that need it then report skipped.
if [ "${1:-}" = --tests ]; then
  python_packages=()
  if [ "${FUSEDVAE_NO_TORCH:-0}" != 1 ] && ! python3 -c "import torch" 2>/dev/null; then
    python_packages+=("torch>=2.4")
  fi
  python3 -c "import pytest" 2>/dev/null || python_packages+=("pytest")
  if ((${#python_packages[@]})); then
    echo "setup: installing from PyPI: ${python_packages[*]}"
    python3 -m pip install -q --root-user-action=ignore "${python_packages[@]}"
  fi
fi

if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  echo "setup: note: nvcc is at /usr/local/cuda/bin but not on PATH; the build scripts add it"
fi
echo "setup: ok"
