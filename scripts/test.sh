#!/usr/bin/env bash
# The project's test command (README, and .ci/run): install what is needed, build, run every test
# (ctest, then the Python package's pytest).
# GPU tests are reported as skipped, with the reason, on a machine without a CUDA device.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
build_dir="${FUSEDVAE_BUILD_DIR:-build}"
ctest --test-dir "$build_dir" --output-on-failure --parallel "$(nproc)"
# The Python package as a user installs it (README, "From PyTorch"), then its tests. Its CMake tree
# stays in the build folder, so that a second run rebuilds only what changed.
case "$build_dir" in /*) wheel_dir="$build_dir/python-wheel" ;; *) wheel_dir="$PWD/$build_dir/python-wheel" ;; esac
python3 -m pip install -q --root-user-action=ignore . -C build-dir="$wheel_dir"
python3 -m pytest -q -rs python/tests
