#!/usr/bin/env bash
# Configures and builds fusedvae into ./build (Release, Ninja). Extra arguments go to CMake, e.g.
#   bash scripts/build.sh -DFUSEDVAE_CUDA_ARCHITECTURES=90 -DFUSEDVAE_PTXAS_VERBOSE=ON
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/cuda/bin:$PATH"
build_dir="${FUSEDVAE_BUILD_DIR:-build}"
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build "$build_dir" --parallel "$(nproc)"
