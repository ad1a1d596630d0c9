#!/usr/bin/env bash
# Builds for the lent GPU machine (sm_90) and gathers what it lacks into device_carry/: the build
# tree without its object files, and the shared libraries from Debian packages (OpenBLAS and its
# Fortran runtime); the golden cases are written there by the ctest fixture (numpy is there), which
# keeps the carry under the 64 MiB limit. Then: device run with carry ["device_carry"] and the command
#   bash scripts/gpu_check.sh --carried device_carry
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/cuda/bin:$PATH"
carry=device_carry
rm -rf "$carry" && mkdir -p "$carry/lib"
FUSEDVAE_BUILD_DIR="$carry/build" bash scripts/build.sh -DFUSEDVAE_CUDA_ARCHITECTURES=90
find "$carry/build" \( -name '*.o' -o -name '*.a' -o -name '.ninja_*' \) -delete
rm -rf "$carry/build/golden"
echo "$PWD" >"$carry/source_root"
for bin in "$carry"/build/tests/test_* "$carry"/build/bench/bench_* "$carry"/build/fusedvae; do
  [ -x "$bin" ] || continue
  ldd "$bin" | awk '/openblas|gfortran|quadmath|libz\./ {print $3}'
done | sort -u | xargs -r -I{} cp -L {} "$carry/lib/"
du -sh "$carry"
