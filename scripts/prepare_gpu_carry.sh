#!/usr/bin/env bash
# Builds for the lent GPU machine (sm_90) and gathers what it lacks into device_carry/: the build
# tree without its object files, and the shared libraries from Debian packages (oneDNN, the OpenCL
# loader it links, OpenMP); the golden cases are written there by the ctest fixture (numpy is
# there), which keeps the carry under the 64 MiB limit. Then: device run with carry
# ["device_carry"] and the command
#   bash scripts/gpu_check.sh --carried device_carry
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/cuda/bin:$PATH"
carry=device_carry
rm -rf "$carry" && mkdir -p "$carry/lib"
# Portable host code (no glibc >= 2.35 vector math: the GPU machine's C library is its own; the
# default x86-64-v3 level, AVX2 + FMA, which every GPU server's CPU has), and a
# per-test timeout that lets one hung test fail without taking a 10-minute device call with it.
FUSEDVAE_BUILD_DIR="$carry/build" bash scripts/build.sh -DFUSEDVAE_CUDA_ARCHITECTURES=90 \
  -DFUSEDVAE_VECTOR_MATH=OFF -DFUSEDVAE_TEST_TIMEOUT=240
find "$carry/build" \( -name '*.o' -o -name '*.a' -o -name '.ninja_*' \) -delete
rm -rf "$carry/build/golden"
echo "$PWD" >"$carry/source_root"
git rev-parse --short HEAD >"$carry/commit" 2>/dev/null || echo unknown >"$carry/commit"
command -v python3 >"$carry/python_path"  # the golden-case fixture runs it; rewritten there
for bin in "$carry"/build/tests/test_* "$carry"/build/bench/bench_* "$carry"/build/fusedvae; do
  [ -x "$bin" ] || continue
  ldd "$bin" | awk '/dnnl|OpenCL|gomp|libz\./ {print $3}'
done | sort -u | xargs -r -I{} cp -L {} "$carry/lib/"
# Fashion-MNIST (30 MB, gzipped IDX) for the GPU training run and the PyTorch peer: the GPU
# machine has no Debian packages. Already compressed, so it travels beside the archive.
mkdir -p "$carry/data"
cp /usr/share/datasets/fashion-mnist/*.gz "$carry/data/" 2>/dev/null ||
  echo "prepare_gpu_carry: no Fashion-MNIST here (dataset-fashion-mnist); the GPU runs use synthetic data"
# The working tree that travels is limited to 64 MiB: ship one compressed archive (oneDNN alone is
# 40 MB uncompressed); gpu_check.sh and bench_gpu.sh unpack it on the GPU machine.
tar -C "$carry" -cJf carry.tar.xz build lib source_root python_path commit
rm -rf "${carry:?}"/build "$carry"/lib "$carry"/source_root "$carry"/python_path "$carry"/commit
mv carry.tar.xz "$carry/"
du -sh "$carry"
