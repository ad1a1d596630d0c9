#!/usr/bin/env bash
# The GPU check: on a machine with a CUDA device, run the whole test suite with the GPU tests
# enabled, then again under compute-sanitizer (memcheck, racecheck), then the benchmarks when they
# exist, and write a summary with the device, driver and CUDA version.
#
#   bash scripts/gpu_check.sh                      # build here (needs the set-up's packages)
#   bash scripts/gpu_check.sh --carried DIR        # use a build made elsewhere (see below)
#
# The lent GPU machine has CUDA, CMake and ninja but none of the Debian packages, so the usual way
# is: on the development machine `bash scripts/prepare_gpu_carry.sh` (builds for sm_90 and copies
# the build plus the shared libraries it needs into device_carry/), then on the GPU machine
# `bash scripts/gpu_check.sh --carried device_carry`. Results go to $OUT (when set) and to
# gpu_results/<date>-<gpu>/.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/cuda/bin:$PATH"

build_dir=build
if [ "${1:-}" = "--carried" ]; then
  source scripts/lib/use_carried_build.sh
  use_carried_build "${2:?--carried needs a directory}" || exit 2
else
  bash scripts/build.sh || { echo "gpu_check: build failed"; exit 1; }
fi

if ! nvidia-smi >/dev/null 2>&1; then
  echo "gpu_check: no GPU (nvidia-smi failed); nothing to check here" >&2
  exit 2
fi

gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
tag="$(date -u +%Y-%m-%d)-$(echo "$gpu" | tr -c 'A-Za-z0-9\n' '_' | tr -s _)"
results="gpu_results/$tag"
mkdir -p "$results"
log() { echo "$*" | tee -a "$results/summary.md"; }

{
  echo "# GPU check $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo '```'
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  nvcc --version | tail -2
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo '```'
} >"$results/summary.md"

status=0
# 1. Everything, GPU tests included (they run instead of skipping when a device is present).
ctest --test-dir "$build_dir" --output-on-failure --no-tests=error >"$results/ctest.log" 2>&1 || status=1
log ""
log "## ctest: $(grep -E 'tests passed|tests failed' "$results/ctest.log" | tail -1)"
grep -E '\[ accuracy \]' "$results/ctest.log" | sort -u >"$results/accuracy.log" || true
skipped=$(grep -c 'Skipped' "$results/ctest.log" || true)
log "skipped: $skipped (expected 0 on a GPU machine)"

# 2. compute-sanitizer on every test binary: memcheck (out-of-bounds, misaligned, uninitialised
# device reads via --tool initcheck too) and racecheck (shared-memory hazards).
if command -v compute-sanitizer >/dev/null; then
  for tool in memcheck racecheck initcheck; do
    tool_status=0
    for bin in "$build_dir"/tests/test_*; do
      [ -x "$bin" ] || continue
      name=$(basename "$bin")
      FUSEDVAE_GOLDEN_DIR="$build_dir/golden" compute-sanitizer --tool "$tool" --error-exitcode 99 \
        "$bin" --gtest_brief=1 >"$results/sanitizer-$tool-$name.log" 2>&1 || tool_status=1
    done
    log "## compute-sanitizer $tool: $([ $tool_status = 0 ] && echo clean || echo FAILED, see logs)"
    [ $tool_status = 0 ] || status=1
  done
else
  log "## compute-sanitizer: not found"
  status=1
fi

# 3. Benchmarks, when built.
if [ -x "$build_dir/bench/bench_kernels" ]; then
  "$build_dir/bench/bench_kernels" --out "$results" >"$results/bench.log" 2>&1 || status=1
  log "## benchmarks: see bench.log"
fi

log ""
log "status: $([ $status = 0 ] && echo PASS || echo FAIL)"
if [ -n "${OUT:-}" ]; then
  tar czf "$OUT/gpu_results.tgz" "$results"
  cp "$results/summary.md" "$OUT/"
fi
exit $status
