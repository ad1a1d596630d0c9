#!/usr/bin/env bash
# fusedvae's benchmarks on a GPU machine, in one command: build (or take a carried build), run
# the bench smoke tests, then the kernel benchmark (validated against the CPU twins before any
# timing), the training-step benchmark, the PyTorch peer, and print the merged table.
#
#   bash scripts/bench_gpu.sh                          # build here (needs the set-up's packages)
#   bash scripts/bench_gpu.sh --carried device_carry   # a build made by scripts/prepare_gpu_carry.sh
#   ... --stage kernels|train|torch|gru|dyad|report|all     # one part (each fits a 10-minute slot)
#
# Results: bench/results/<date>-<gpu>/ (kernels.json/.md, train_step.json/.md, torch_peer.json,
# summary.md, summary.png), copied to $OUT when set. The latest CPU rows measured on a development
# machine (bench/results/<date>-cpu-*) are merged into the summary when present.
# FUSEDVAE_DATA: the Fashion-MNIST folder for the PyTorch peer (default
# /usr/share/datasets/fashion-mnist; without it the peer runs on synthetic data of the same shape).
# TORCH_VARIANTS / TORCH_CONFIGS: comma-separated subsets of the peer's variants and configurations
# (default: all); runs into the same torch_peer.json merge, so the slow max-autotune compile can
# get its own command, e.g. TORCH_VARIANTS=compile_max_autotune bash scripts/bench_gpu.sh ... --stage torch
# TORCH_PRECISIONS: "fp32" (default) or "fp32 tf32": the peer also with TF32 matrix products, to pair
# with bench_train_step --tf32 (the train stage runs both).
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/cuda/bin:$PATH"

build_dir=build
stage=all
while [ $# -gt 0 ]; do
  case "$1" in
    --carried)
      source scripts/lib/use_carried_build.sh
      carry="${2:?--carried needs a directory}"
      use_carried_build "$carry" || exit 2
      shift 2 ;;
    --stage) stage="${2:?--stage needs kernels, train, torch, gru, dyad, report or all}"; shift 2 ;;
    *) echo "bench_gpu: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$stage" in kernels|train|torch|gru|dyad|report|all) ;; *) echo "bench_gpu: bad stage $stage" >&2; exit 2 ;; esac

if [ -z "${carry:-}" ] && [ "$stage" != report ] && [ "$stage" != torch ]; then
  bash scripts/build.sh || { echo "bench_gpu: build failed" >&2; exit 1; }
fi
if ! nvidia-smi >/dev/null 2>&1; then
  echo "bench_gpu: no GPU (nvidia-smi failed); run the CPU smoke tests with ctest -L bench" >&2
  exit 2
fi

gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
results="bench/results/$(date -u +%Y-%m-%d)-$(echo "$gpu" | tr -c 'A-Za-z0-9\n' '_' | tr -s _ | sed 's/_$//')"
mkdir -p "$results"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv \
  >"$results/nvidia-smi.csv" 2>&1
status=0
run_stage() { [ "$stage" = all ] || [ "$stage" = "$1" ]; }
# What this run has written so far, to $OUT after every stage: a stage stopped at the device's
# time limit leaves the earlier ones behind.
sync_out() {
  [ -n "${OUT:-}" ] || return 0
  mkdir -p "$OUT/bench_results" && cp -r "$results" "$OUT/bench_results/"
}

if run_stage kernels; then
  echo "== bench smoke tests (GPU paths included here)"
  ctest --test-dir "$build_dir" -L bench --output-on-failure \
    >"$results/ctest_bench.log" 2>&1 || status=1
  tail -3 "$results/ctest_bench.log"
  echo "== kernel benchmark"
  timeout 420 "$build_dir/bench/bench_kernels" --out "$results" 2>&1 | tee "$results/bench_kernels.log"
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
  sync_out
fi
if run_stage train; then
  echo "== training-step benchmark (GPU trainer), FP32 then TF32 matrix products"
  for precision in "" --tf32; do
    timeout 300 "$build_dir/bench/bench_train_step" --device gpu $precision --out "$results" 2>&1 |
      tee -a "$results/bench_train_step.log"
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
    sync_out
  done
fi
if run_stage torch; then
  echo "== PyTorch peer"
  data="${FUSEDVAE_DATA:-/usr/share/datasets/fashion-mnist}"
  data_args=(--data "$data")
  if [ ! -e "$data/train-images-idx3-ubyte.gz" ] && [ ! -e "$data/train-images-idx3-ubyte" ]; then
    echo "bench_gpu: no Fashion-MNIST at $data; the peer uses synthetic data of the same shape"
    data_args=(--synthetic)
  fi
  for precision in ${TORCH_PRECISIONS:-fp32}; do
    python3 python_ref/torch_peer.py --device cuda "${data_args[@]}" \
      $([ "$precision" = tf32 ] && echo --tf32) ${TORCH_VARIANTS:+--variants "$TORCH_VARIANTS"} \
      ${TORCH_CONFIGS:+--configs "$TORCH_CONFIGS"} --json "$results/torch_peer.json" 2>&1 |
      tee -a "$results/torch_peer.log"
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
    sync_out
  done
fi
if run_stage gru; then
  # The GRU (DyAD's shapes): ours against cuDNN, then PyTorch's nn.GRU eager and compiled.
  echo "== GRU benchmark (ours against cuDNN)"
  if [ -x "$build_dir/bench/bench_gru_gpu" ]; then
    timeout 420 "$build_dir/bench/bench_gru_gpu" --out "$results" 2>&1 | tee "$results/bench_gru_gpu.log"
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
  else
    echo "bench_gpu: no $build_dir/bench/bench_gru_gpu (cuDNN not found at configure time)"
  fi
  sync_out
  echo "== GRU, PyTorch nn.GRU eager and torch.compile"
  timeout 420 python3 bench/bench_gru_gpu_torch.py --json "$results/gru_gpu_torch.json" 2>&1 |
    tee "$results/bench_gru_gpu_torch.log"
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
  sync_out
fi
if run_stage dyad; then
  # DyAD's training step per preset against the PyTorch peer with cuDNN (bench/bench_dyad_torch.py).
  echo "== DyAD training speed (ours against PyTorch + cuDNN)"
  timeout 420 "$build_dir/bench/bench_dyad" --device gpu --out "$results" 2>&1 |
    tee "$results/bench_dyad_gpu.log"
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
  sync_out
fi
echo "== summary"
extra=()
cpu_rows=$(ls -d bench/results/*-cpu-* 2>/dev/null | sort | tail -n 1)
[ -n "$cpu_rows" ] && extra+=("$cpu_rows")
python3 bench/report.py "$results" "${extra[@]}" --out "$results" || status=1

sync_out
echo "bench_gpu: $([ $status = 0 ] && echo PASS || echo FAIL) (results in $results)"
exit $status
