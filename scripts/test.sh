#!/usr/bin/env bash
# The project's test command (README, and .ci/run): install what is needed, build, run every test.
# GPU tests are reported as skipped, with the reason, on a machine without a CUDA device.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
ctest --test-dir "${FUSEDVAE_BUILD_DIR:-build}" --output-on-failure --parallel "$(nproc)"
