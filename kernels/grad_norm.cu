// @brief Global gradient norm and clipping factor: two deterministic passes, no atomics.
#include "kernels/grad_norm.h"

#include <algorithm>
#include <stdexcept>

#include "kernels/cuda_check.h"
#include "kernels/step_math.cuh"

namespace fusedvae::gpu {
namespace {

// ---------------------------------------------------------------------------------------------
// CUDA kernels

constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ double warp_sum_double(double value) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) value += __shfl_xor_sync(kFullMask, value, offset);
  return value;
}

// Sum over the block in a fixed order (lanes by xor tree, warps in warp order); valid in thread 0.
__device__ __forceinline__ double block_sum_double(double value) {
  __shared__ double warp_partials[32];
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  value = warp_sum_double(value);
  if (lane == 0) warp_partials[warp] = value;
  __syncthreads();
  double total = 0.0;
  if (warp == 0) total = warp_sum_double(lane < blockDim.x / 32 ? warp_partials[lane] : 0.0);
  return total;
}

// Pass 1: each block's sum of squares (in double) of its grid-strided elements.
__global__ void grad_norm_partials_kernel(const float* __restrict__ grads, const size_t count,
                                          double* __restrict__ block_partials) {
  double sum = 0.0;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const double g = grads[i];
    sum += g * g;
  }
  sum = block_sum_double(sum);
  if (threadIdx.x == 0) block_partials[blockIdx.x] = sum;
}

// Pass 2: one block adds the partials in block order and writes the norm and the clip factor.
__global__ void grad_norm_finish_kernel(const double* __restrict__ block_partials,
                                        const int num_partials, const float max_norm,
                                        float* __restrict__ grad_norm,
                                        float* __restrict__ grad_scale) {
  double sum = 0.0;
  for (int b = threadIdx.x; b < num_partials; b += blockDim.x) sum += block_partials[b];
  sum = block_sum_double(sum);
  if (threadIdx.x == 0) {
    const double norm = sqrt(sum);
    *grad_norm = static_cast<float>(norm);
    *grad_scale = math::clip_factor(norm, max_norm);
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Kernel launchers

GradNormWorkspace create_grad_norm_workspace() {
  GradNormWorkspace workspace;
  FUSEDVAE_CUDA_CHECK(cudaMalloc(&workspace.block_partials, kGradNormMaxBlocks * sizeof(double)));
  return workspace;
}

void destroy_grad_norm_workspace(GradNormWorkspace* workspace) {
  if (workspace->block_partials) cudaFree(workspace->block_partials);
  workspace->block_partials = nullptr;
}

void global_grad_norm(const float* grads, size_t count, float max_norm, float* grad_norm,
                      float* grad_scale, GradNormWorkspace workspace, cudaStream_t stream,
                      int block_size) {
  if (count == 0) throw std::invalid_argument("global_grad_norm: empty gradient buffer");
  if (block_size < 32 || block_size > 1024 || block_size % 32 != 0)
    throw std::invalid_argument(
        "global_grad_norm: block size must be a multiple of 32 in [32, 1024]");
  // The grid depends on count and block_size only, so the summation order (and the bits) do too.
  const size_t wanted = (count + block_size - 1) / block_size;
  const int grid = static_cast<int>(std::min<size_t>(wanted, kGradNormMaxBlocks));
  grad_norm_partials_kernel<<<grid, block_size, 0, stream>>>(grads, count,
                                                             workspace.block_partials);
  FUSEDVAE_CHECK_LAUNCH("grad_norm_partials_kernel");
  grad_norm_finish_kernel<<<1, 1024, 0, stream>>>(workspace.block_partials, grid, max_norm,
                                                  grad_norm, grad_scale);
  FUSEDVAE_CHECK_LAUNCH("grad_norm_finish_kernel");
}

}  // namespace fusedvae::gpu
