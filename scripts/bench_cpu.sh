#!/usr/bin/env bash
# The CPU training-step benchmark in one command, every implementation at the same thread count:
# fusedvae's step with its GEMM floor (bench_train_step), PyTorch's eager, fused-Adam and
# torch.compile variants (python_ref/torch_peer.py; skipped, with a note, where torch is not
# importable), then the merged table (bench/report.py: the step's share of its floor beside
# PyTorch's fastest variant).
#
#   bash scripts/bench_cpu.sh [OUT_DIR]      # default bench/results/<date>-cpu-<threads>t
#
# THREADS (default: every hardware thread) sets OMP_NUM_THREADS for fusedvae and
# torch.set_num_threads for PyTorch. Measure on an otherwise idle machine: the figures of a loaded
# one say little (idle OpenMP threads spin, and a neighbour's load stalls them).
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${THREADS:-$(nproc)}"
out="${1:-bench/results/$(date +%F)-cpu-${threads}t}"
mkdir -p "$out"
bash scripts/build.sh >/dev/null

echo "== bench_train_step (fusedvae, $threads threads)"
OMP_NUM_THREADS="$threads" ./build/bench/bench_train_step --device cpu --out "$out"

data=/usr/share/datasets/fashion-mnist
data_args=(--data "$data")
[ -d "$data" ] || data_args=(--synthetic)
if python3 -c "import torch" 2>/dev/null; then
  echo "== PyTorch peer ($threads threads)"
  python3 python_ref/torch_peer.py --device cpu --threads "$threads" "${data_args[@]}" \
    --variants eager,eager_fused_adam,compile_reduce_overhead --json "$out/torch_peer.json"
else
  echo "== PyTorch peer skipped: torch is not importable (python3 -m pip install torch)"
fi

echo "== bench_dyad (DyAD's training step per preset against the PyTorch peer, $threads threads)"
OMP_NUM_THREADS="$threads" ./build/bench/bench_dyad --device cpu --out "$out"

echo "== report"
python3 bench/report.py "$out"
