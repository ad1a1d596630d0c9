# Sourced by gpu_check.sh and bench_gpu.sh: makes a build carried by prepare_gpu_carry.sh usable on
# the GPU machine. Usage: use_carried_build DIR; sets build_dir and the environment.
use_carried_build() {
  local carry="$1"
  # prepare_gpu_carry.sh ships the build compressed; unpack it once.
  if [ -f "$carry/carry.tar.xz" ] && [ ! -f "$carry/source_root" ]; then
    tar -C "$carry" -xJf "$carry/carry.tar.xz" || return 1
  fi
  [ -f "$carry/source_root" ] || { echo "$carry is not a carried build" >&2; return 1; }
  build_dir="$carry/build"
  # The dataset travels with the build (prepare_gpu_carry.sh); the benchmarks and the GPU training
  # run read it from here.
  if [ -d "$carry/data" ] && [ -z "${FUSEDVAE_DATA:-}" ]; then export FUSEDVAE_DATA="$PWD/$carry/data"; fi
  export LD_LIBRARY_PATH="$PWD/$carry/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  # The test binaries hold the building machine's golden and source folders as defaults.
  export FUSEDVAE_GOLDEN_DIR="$PWD/$build_dir/golden" FUSEDVAE_SOURCE_DIR="$PWD"
  # CTest files hold the building machine's absolute paths and python3; rewrite them for here.
  local old_root old_python
  old_root=$(cat "$carry/source_root")
  grep -rl "$old_root" "$build_dir" --include='*.cmake' 2>/dev/null |
    xargs -r sed -i "s|$old_root|$PWD|g"
  old_python=$(cat "$carry/python_path" 2>/dev/null || true)
  if [ -n "$old_python" ]; then
    grep -rl "$old_python" "$build_dir" --include='*.cmake' 2>/dev/null |
      xargs -r sed -i "s|$old_python|$(command -v python3)|g"
  fi
  return 0
}
