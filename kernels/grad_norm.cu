// @brief Global gradient norm and clipping factor: two deterministic passes, no atomics.
#include "kernels/grad_norm.h"

#include <stdexcept>

#include "kernels/block_reduce.cuh"
#include "kernels/cuda_check.h"
#include "kernels/launch.cuh"
#include "kernels/grad_norm_math.cuh"

namespace fusedvae::gpu {
namespace {

// ---------------------------------------------------------------------------------------------
// CUDA kernels

// Pass 1: each block's sum of squares (in double) of its grid-strided elements.
__global__ void grad_norm_partials_kernel(const float* __restrict__ grads, const size_t count,
                                          double* __restrict__ block_partials) {
  __shared__ double warp_partials[kWarpSize];
  double sum = 0.0;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const double g = grads[i];
    sum += g * g;
  }
  sum = block_sum(sum, warp_partials);
  if (threadIdx.x == 0) block_partials[blockIdx.x] = sum;
}

// Pass 2: one block adds the partials in block order and writes the norm and the clip factor.
__global__ void grad_norm_finish_kernel(const double* __restrict__ block_partials,
                                        const int num_partials, const float max_norm,
                                        float* __restrict__ grad_norm,
                                        float* __restrict__ grad_scale) {
  __shared__ double warp_partials[kWarpSize];
  double sum = 0.0;
  for (int b = threadIdx.x; b < num_partials; b += blockDim.x) sum += block_partials[b];
  sum = block_sum(sum, warp_partials);
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
  check_block_size(block_size, "global_grad_norm");
  // A reducing grid (launch.cuh): capped at the workspace's kGradNormMaxBlocks partials, and
  // dependent on count and block_size only, so the summation order (and the bits) are too.
  const int grid = capped_grid(ceil_div(count, block_size), kGradNormMaxBlocks);
  launch("grad_norm_partials_kernel", grad_norm_partials_kernel, grid, block_size, 0, stream, grads,
         count, workspace.block_partials);
  // One block of kMaxBlockSize threads: each adds at most one of the kGradNormMaxBlocks partials.
  launch("grad_norm_finish_kernel", grad_norm_finish_kernel, 1, kMaxBlockSize, 0, stream,
         workspace.block_partials, grid, max_norm, grad_norm, grad_scale);
}

}  // namespace fusedvae::gpu
