#!/usr/bin/env bash
# The project's test command (README, and .ci/run): install what is needed, build, run every test
# (ctest, then the Python package's pytest); then the hardening build (build-san: clang,
# AddressSanitizer and UndefinedBehaviorSanitizer on every C++ file, and the libFuzzer harnesses of
# fuzz/), where the whole CPU suite runs again sanitized, the kill test included, and each fuzz
# harness runs for FUSEDVAE_FUZZ_SECONDS (60 s by default). GPU tests are reported as skipped, with
# the reason, on a machine without a CUDA device. FUSEDVAE_HARDENING=0 skips the hardening build (a
# quick local run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --tests
bash scripts/build.sh
build_dir="${FUSEDVAE_BUILD_DIR:-build}"
ctest --test-dir "$build_dir" --output-on-failure --parallel "$(nproc)"
# The Python package as a user installs it (README, "From PyTorch"), then its tests. Its CMake tree
# stays in the build folder, so that a second run rebuilds only what changed.
case "$build_dir" in /*) wheel_dir="$build_dir/python-wheel" ;; *) wheel_dir="$PWD/$build_dir/python-wheel" ;; esac
python3 -m pip install -q --root-user-action=ignore . -C build-dir="$wheel_dir"
python3 -m pytest -q -rs python/tests

if [ "${FUSEDVAE_HARDENING:-1}" != 0 ]; then
  FUSEDVAE_BUILD_DIR=build-san bash scripts/build.sh -DCMAKE_CXX_COMPILER=clang++ \
    -DFUSEDVAE_FUZZ=ON -DFUSEDVAE_FUZZ_SECONDS="${FUSEDVAE_FUZZ_SECONDS:-60}"
  # halt_on_error: the first sanitizer report fails the test that made it.
  ASAN_OPTIONS="${ASAN_OPTIONS:-halt_on_error=1}" UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}" \
    ctest --test-dir build-san --output-on-failure --parallel "$(nproc)"
fi
