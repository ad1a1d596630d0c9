// @brief Launch plumbing, written once for every op: block sizes, grid sizes and their caps, the
// block-size check, and launch(), the one place a kernel is launched and its launch checked.
//
// Every launcher in kernels/ goes through launch(), so the op files hold no `<<<...>>>`: launches
// are checked (and could be bounded) here alone, and this is the one place a CPU SIMT harness,
// compiling the op files with g++, substitutes its emulator for the launch. Everything above
// launch() is plain host C++, so the public op headers include this file for the block-size
// defaults and host-only code (g++) can include them.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <stdexcept>
#include <string>
#include <utility>

namespace fusedvae {

// Threads per warp; block sizes are whole warps.
constexpr int kWarpSize = 32;

namespace gpu {

// ---------------------------------------------------------------------------------------------
// Block sizes

// The block size of every launcher that does not take one (and the default of those that do): 8
// warps, enough for a full SM at 8 resident blocks, small enough for short rows and small grids.
constexpr int kDefaultBlockSize = 256;
// The largest block CUDA allows; also the one-block finishes that add up to 1024 block partials.
constexpr int kMaxBlockSize = 1024;

// Throws std::invalid_argument, naming `op`, unless block_size is a whole number of warps in
// [kWarpSize, kMaxBlockSize] (what the warp-per-row and block-sum kernels need).
inline void check_block_size(int block_size, const char* op) {
  if (block_size < kWarpSize || block_size > kMaxBlockSize || block_size % kWarpSize != 0)
    throw std::invalid_argument(std::string(op) + ": block size must be a multiple of " +
                                std::to_string(kWarpSize) + " in [" + std::to_string(kWarpSize) +
                                ", " + std::to_string(kMaxBlockSize) + "], got " +
                                std::to_string(block_size));
}

// A block of whole warps covering `cols` threads, at most kDefaultBlockSize: the block of the
// block-per-row kernels (threads stride over a row's columns).
inline int row_block_size(int cols) {
  const int warps = (cols + kWarpSize - 1) / kWarpSize;
  return warps * kWarpSize < kDefaultBlockSize ? warps * kWarpSize : kDefaultBlockSize;
}

// ---------------------------------------------------------------------------------------------
// Grid sizes. One policy per kind of grid:
//
// - Grid-stride kernels (elementwise over items, or block-stride over rows): every item is
//   independent, so the result does not depend on the grid and the cap is a tuning choice only.
//   The grid covers the work, capped at kGridStrideMaxThreads threads in all: about 4 times the
//   threads the largest current GPUs keep resident (H100/H200: 132 SMs x 2048 = 270k; B200: 148 x
//   2048 = 303k), so the device stays full, while beyond it each thread loops, which spreads
//   per-thread set-up (AdamW's two double-precision pow, the device scalars every kernel reads)
//   over several items. The cap is in threads, not blocks (4096 blocks at the default block), so
//   a small block does not starve the device.
// - Reducing kernels (the row reductions of block_reduce.cuh, the gradient norm): the grid fixes
//   the summation order, so their cap is part of the result, not a tuning knob. It is the size of
//   their partials workspace (kReduceMaxBlocks, kGradNormMaxBlocks), and the same on every device;
//   row_reduction_grid (reduction_workspace.h) and capped_grid compute it.
// - Tiled kernels whose blocks own a fixed tile and do not stride (bias_gradient): ceil_div, no
//   cap (a grid's x extent may reach 2^31 - 1).
// - Single-thread and single-block kernels: 1.

constexpr size_t kGridStrideMaxThreads = size_t{1} << 20;

constexpr size_t ceil_div(size_t n, size_t d) {
  return (n + d - 1) / d;
}

// min(blocks, max_blocks), as a grid extent.
inline int capped_grid(size_t blocks, size_t max_blocks) {
  return static_cast<int>(blocks < max_blocks ? blocks : max_blocks);
}

// Grid of a grid-stride kernel over `items` independent items, one per thread.
inline int grid_stride_grid(size_t items, int block_size) {
  return capped_grid(ceil_div(items, block_size), kGridStrideMaxThreads / block_size);
}

// Grid of a block-per-row kernel whose blocks stride over `rows` (one row per block at a time).
inline int row_stride_grid(int rows, int block_size) {
  return capped_grid(static_cast<size_t>(rows), kGridStrideMaxThreads / block_size);
}

// ---------------------------------------------------------------------------------------------
// Launching

// A thread-block cluster launch (or occupancy query) of `cluster` blocks per cluster: the cluster
// dimension written into *attribute, which the config points to (the caller keeps it alive). The
// fields are given in declaration order, not by name, since the SIMT shim's gridDim and blockDim
// are macros.
inline cudaLaunchConfig_t cluster_launch_config(dim3 grid, dim3 block, dim3 cluster,
                                                size_t shared_bytes, cudaStream_t stream,
                                                cudaLaunchAttribute* attribute) {
  *attribute = cudaLaunchAttribute{};
  attribute->id = cudaLaunchAttributeClusterDimension;
  attribute->val.clusterDim.x = cluster.x;
  attribute->val.clusterDim.y = cluster.y;
  attribute->val.clusterDim.z = cluster.z;
  return cudaLaunchConfig_t{grid, block, shared_bytes, stream, attribute, 1};
}

[[noreturn]] inline void throw_launch_error(cudaError_t err, const char* kernel_name, dim3 grid,
                                            dim3 block, size_t shared_bytes) {
  auto extent = [](dim3 d) {
    return std::to_string(d.x) + "x" + std::to_string(d.y) + "x" + std::to_string(d.z);
  };
  throw std::runtime_error(std::string("CUDA error: ") + cudaGetErrorString(err) + " launching " +
                           kernel_name + " (grid " + extent(grid) + ", block " + extent(block) +
                           ", " + std::to_string(shared_bytes) +
                           " bytes of dynamic shared memory)");
}

#if defined(__CUDACC__)
// kernel<<<grid, block, shared_bytes, stream>>>(args...), then cudaGetLastError(): a bad
// configuration throws at once with the kernel's name (and, with CUDA_LAUNCH_BLOCKING=1 or under
// compute-sanitizer, so does a fault inside the kernel). Graph-capturable. `kernel_name` is what
// the error message calls the kernel; a template's instance is named by the caller.
template <typename... Params, typename... Args>
void launch(const char* kernel_name, void (*kernel)(Params...), dim3 grid, dim3 block,
            size_t shared_bytes, cudaStream_t stream, Args&&... args) {
  kernel<<<grid, block, shared_bytes, stream>>>(std::forward<Args>(args)...);
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) throw_launch_error(err, kernel_name, grid, block, shared_bytes);
}

// The same in thread-block clusters of `cluster` blocks (sm_90; kernels/cluster.cuh), by
// cudaLaunchKernelEx with the cluster dimension as a launch attribute (graph-capturable); a
// cluster of one block is a plain launch. The grid must be a whole number of clusters.
template <typename... Params, typename... Args>
void launch_cluster(const char* kernel_name, void (*kernel)(Params...), dim3 grid, dim3 block,
                    dim3 cluster, size_t shared_bytes, cudaStream_t stream, Args&&... args) {
  if (cluster.x * cluster.y * cluster.z == 1) {
    launch(kernel_name, kernel, grid, block, shared_bytes, stream, std::forward<Args>(args)...);
    return;
  }
  cudaLaunchAttribute attribute;
  const cudaLaunchConfig_t config =
      cluster_launch_config(grid, block, cluster, shared_bytes, stream, &attribute);
  const cudaError_t err = cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
  if (err != cudaSuccess) throw_launch_error(err, kernel_name, grid, block, shared_bytes);
}
#elif defined(FUSEDVAE_SIMT_SHIM)
// Under the CPU SIMT harness (tests/simt/, a test-only build that compiles the op files as host
// C++ with its shim header included first), the same launch runs the kernel on the harness's
// emulator: every thread a fiber, the blocks one after another, under several schedules. A
// configuration CUDA would refuse throws here as it does above; a race, a divergent barrier or
// shuffle, or a host pointer passed to a kernel throws the harness's error.
template <typename... Params, typename... Args>
void launch(const char* kernel_name, void (*kernel)(Params...), dim3 grid, dim3 block,
            size_t shared_bytes, cudaStream_t stream, Args&&... args) {
  const cudaError_t err = ::fusedvae::simt::launch(kernel_name, kernel, grid, block, shared_bytes,
                                                   stream, std::forward<Args>(args)...);
  if (err != cudaSuccess) throw_launch_error(err, kernel_name, grid, block, shared_bytes);
}

template <typename... Params, typename... Args>
void launch_cluster(const char* kernel_name, void (*kernel)(Params...), dim3 grid, dim3 block,
                    dim3 cluster, size_t shared_bytes, cudaStream_t stream, Args&&... args) {
  const cudaError_t err = ::fusedvae::simt::launch_cluster(
      kernel_name, kernel, grid, block, cluster, shared_bytes, stream, std::forward<Args>(args)...);
  if (err != cudaSuccess) throw_launch_error(err, kernel_name, grid, block, shared_bytes);
}
#endif

}  // namespace gpu
}  // namespace fusedvae

// Dynamic shared memory (the launch's shared_bytes) of a kernel, as an array `name` of T; use this
// rather than `extern __shared__`, which the SIMT harness cannot give per-block storage.
#if defined(__CUDACC__)
#define FUSEDVAE_DYNAMIC_SHARED(T, name) extern __shared__ __align__(16) T name[]
#elif defined(FUSEDVAE_SIMT_SHIM)
#define FUSEDVAE_DYNAMIC_SHARED(T, name) T* const name = ::fusedvae::simt::dynamic_shared<T>()
#endif
