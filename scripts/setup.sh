#!/usr/bin/env bash
# Installs what fusedvae needs to build, test and train, idempotently: Debian packages for the C++
# side (clang and its compiler-rt for the sanitizer and fuzz build) and the default dataset, PyPI
# for the float64 reference. Safe to run again.
set -euo pipefail

apt_packages=(
  cmake ninja-build g++ pkg-config
  clang libclang-rt-dev
  libgtest-dev
  libcli11-dev nlohmann-json3-dev libstb-dev zlib1g-dev libopenblas-dev
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

if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  echo "setup: note: nvcc is at /usr/local/cuda/bin but not on PATH; the build scripts add it"
fi
echo "setup: ok"
