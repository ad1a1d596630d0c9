#!/usr/bin/env bash
# The GPU check: on a machine with a CUDA device, run the whole test suite with the GPU tests
# enabled, then the GPU tests under compute-sanitizer (memcheck, racecheck, initcheck), then the
# benchmarks, and write a summary with the device, driver and CUDA version.
#
#   bash scripts/gpu_check.sh                          # build here (needs the set-up's packages)
#   bash scripts/gpu_check.sh --carried device_carry   # a build made by prepare_gpu_carry.sh
#   ... --stage tests|sanitizer|train|bench|all        # one part (each fits a 10-minute slot)
#
# The lent GPU machine has CUDA, CMake and ninja but none of the Debian packages, so the usual way
# is: on the development machine `bash scripts/prepare_gpu_carry.sh` (builds for sm_90 and packs
# the build plus the shared libraries it needs into device_carry/), then on the GPU machine
# `bash scripts/gpu_check.sh --carried device_carry`. Results go to gpu_results/<date>-<gpu>/ and,
# when $OUT is set, to $OUT/gpu_results/ after every stage (commit them: they are the record of a
# real GPU run). Each test, sanitizer run and training run has a timeout, so one hang costs minutes,
# not the call.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/cuda/bin:$PATH"

build_dir=build
carry=""
stage=all
while [ $# -gt 0 ]; do
  case "$1" in
    --carried) carry="${2:?--carried needs a directory}"; shift 2 ;;
    --stage) stage="${2:?--stage needs tests, sanitizer, train, bench or all}"; shift 2 ;;
    *) echo "gpu_check: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$stage" in tests|sanitizer|train|bench|all) ;; *) echo "gpu_check: bad stage $stage" >&2; exit 2 ;; esac
if [ -n "$carry" ]; then
  source scripts/lib/use_carried_build.sh
  use_carried_build "$carry" || exit 2
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

if [ ! -f "$results/summary.md" ]; then
  {
    echo "# GPU check $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo '```'
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    nvcc --version | tail -2
    echo "commit: $(cat "$carry/commit" 2>/dev/null || git rev-parse --short HEAD 2>/dev/null)"
    echo '```'
  } >"$results/summary.md"
fi

# Copies what this run has written so far to $OUT, so that a stage stopped at the device's time
# limit (or hung) still leaves the earlier stages' logs behind.
sync_out() {
  [ -n "${OUT:-}" ] || return 0
  mkdir -p "$OUT/gpu_results" && cp -r "$results" "$OUT/gpu_results/" && cp "$results/summary.md" "$OUT/"
}

status=0
# 1. Everything, GPU tests included (they run instead of skipping when a device is present).
if [ "$stage" = tests ] || [ "$stage" = all ]; then
  # A test that hangs on the device (a reduction that never elects its last block, say) fails alone
  # at its timeout (FUSEDVAE_TEST_TIMEOUT: 240 s in the carried build) instead of taking the call.
  ctest --test-dir "$build_dir" --output-on-failure --no-tests=error --parallel 8 \
    >"$results/ctest.log" 2>&1 || status=1
  log ""
  log "## ctest: $(grep -E 'tests passed|tests failed' "$results/ctest.log" | tail -1)"
  grep -E '\[ accuracy \]' "$results/ctest.log" | sort -u >"$results/accuracy.log" || true
  log "skipped: $(grep -c '(Skipped)' "$results/ctest.log") (expected 0 on a GPU machine)"
  sync_out
fi

# 2. compute-sanitizer on the GPU tests of every test binary (*Gpu* in their names; the CPU tests
# make no CUDA calls): memcheck (out of bounds, misaligned), racecheck (shared-memory hazards),
# initcheck (reads of device memory nothing wrote).
if [ "$stage" = sanitizer ] || [ "$stage" = all ]; then
  if command -v compute-sanitizer >/dev/null; then
    for tool in memcheck racecheck initcheck; do
      tool_status=0
      for bin in "$build_dir"/tests/test_*; do
        [ -x "$bin" ] || continue
        "$bin" --gtest_list_tests --gtest_filter='*Gpu*' | grep -q . || continue
        name=$(basename "$bin")
        timeout 300 compute-sanitizer --tool "$tool" --error-exitcode 99 "$bin" \
          --gtest_filter='*Gpu*' --gtest_brief=1 >"$results/sanitizer-$tool-$name.log" 2>&1 ||
          tool_status=1
      done
      log "## compute-sanitizer $tool: $([ $tool_status = 0 ] && echo clean || echo FAILED, see logs)"
      [ $tool_status = 0 ] || status=1
      sync_out
    done
  else
    log "## compute-sanitizer: not found"
    status=1
  fi
fi

# 3. The main job on the GPU: the default configuration on Fashion-MNIST (the carried copy when
# there is one), then eval; the images/s and the test ELBO go into the summary.
if [ "$stage" = train ] || [ "$stage" = all ]; then
  data_args=()
  [ -n "${FUSEDVAE_DATA:-}" ] && data_args=(--data "$FUSEDVAE_DATA")
  run_dir="$results/run-default"
  rm -rf "$run_dir"
  if timeout 300 "$build_dir/fusedvae" train --device gpu "${data_args[@]}" --run-dir "$run_dir" \
    --log-every 100 >"$results/train.log" 2>&1 &&
    timeout 120 "$build_dir/fusedvae" eval --device gpu --run-dir "$run_dir" --iwae-samples 50 \
      >>"$results/train.log" 2>&1; then
    log "## fusedvae train (default config, GPU):"
    grep -E "^epoch [0-9]+/[0-9]+  train" "$results/train.log" | tail -2 | sed 's/^/    /' | tee -a "$results/summary.md"
    grep -E "^  (recon|KL|ELBO|IWAE)" "$results/train.log" | sed 's/^/    /' | tee -a "$results/summary.md"
  else
    log "## fusedvae train on the GPU: FAILED, see train.log"
    status=1
  fi
  rm -f "$run_dir"/*.safetensors  # 8 MB of weights: the PNGs, metrics and config are the record
  sync_out
fi

# 3. The benchmarks (validated against the CPU twins before timing).
if [ "$stage" = bench ] || [ "$stage" = all ]; then
  bench_args=()
  [ -n "$carry" ] && bench_args=(--carried "$carry")
  bash scripts/bench_gpu.sh "${bench_args[@]}" --stage kernels >"$results/bench.log" 2>&1 || status=1
  log "## benchmarks (kernels): $(tail -1 "$results/bench.log"); the rest: scripts/bench_gpu.sh"
  sync_out
fi

log ""
log "status ($stage): $([ $status = 0 ] && echo PASS || echo FAIL)"
sync_out
exit $status
