// @brief The free-bits KL floor: per-dimension batch-mean KL, and the masked KL gradient.
#include "kernels/free_bits.h"

#include <stdexcept>

#include "kernels/block_reduce.cuh"
#include "kernels/launch.cuh"
#include "kernels/reparam_kl_math.cuh"
#include "kernels/free_bits_math.cuh"

namespace fusedvae::gpu {
namespace {

// ---------------------------------------------------------------------------------------------
// CUDA kernels

// One block: for each latent column in turn, the block sums its KL over the rows (block-stride
// partials, then block_sum's fixed tree), and thread 0 accumulates the floored total in column
// order. The latent size is small (tens), so one block is enough and keeps the order fixed.
__global__ void free_bits_forward_kernel(const float* __restrict__ mu,
                                         const float* __restrict__ logvar, const int batch,
                                         const int dim, const LogvarClamp clamp,
                                         const float free_bits, float* __restrict__ kl_dim_mean,
                                         float* __restrict__ kl_floored) {
  __shared__ float warp_partials[kWarpSize];
  float floored = 0.0f;
  for (int col = 0; col < dim; ++col) {
    float partial = 0.0f;
    for (int row = threadIdx.x; row < batch; row += blockDim.x) {
      const size_t i = static_cast<size_t>(row) * dim + col;
      partial += math::kl_term(mu[i], math::clamp_logvar(logvar[i], clamp.min, clamp.max));
    }
    const float column_sum = block_sum(partial, warp_partials);
    if (threadIdx.x == 0) {
      const float mean = column_sum / static_cast<float>(batch);
      kl_dim_mean[col] = mean;
      floored += mean > free_bits ? mean : free_bits;
    }
  }
  if (threadIdx.x == 0) *kl_floored = floored;
}

// Elementwise over [batch, dim].
__global__ void free_bits_backward_kernel(const float* __restrict__ mu,
                                          const float* __restrict__ logvar,
                                          const float* __restrict__ kl_dim_mean, const int batch,
                                          const int dim, const LogvarClamp clamp,
                                          const float free_bits,
                                          const float* __restrict__ kl_weight, const float kl_scale,
                                          float* __restrict__ dmu, float* __restrict__ dlogvar) {
  const size_t total = static_cast<size_t>(batch) * dim;
  const float w = *kl_weight * kl_scale;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const int col = static_cast<int>(i % dim);
    const float wj = w * math::free_bits_pass(kl_dim_mean[col], free_bits);
    const float raw_lv = logvar[i];
    const float lv = math::clamp_logvar(raw_lv, clamp.min, clamp.max);
    dmu[i] += wj * math::dkl_dmu(mu[i]);
    dlogvar[i] += wj * math::clamp_pass(raw_lv, clamp.min, clamp.max) * math::dkl_dlogvar(lv);
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Kernel launchers

void free_bits_forward(const float* mu, const float* logvar, int batch, int dim, LogvarClamp clamp,
                       float free_bits, float* kl_dim_mean, float* kl_floored,
                       cudaStream_t stream) {
  if (batch < 1 || dim < 1) throw std::invalid_argument("free_bits: batch and dim must be >= 1");
  // One block; its size fixes the order of the column sums.
  launch("free_bits_forward_kernel", free_bits_forward_kernel, 1, kDefaultBlockSize, 0, stream, mu,
         logvar, batch, dim, clamp, free_bits, kl_dim_mean, kl_floored);
}

void free_bits_backward(const float* mu, const float* logvar, const float* kl_dim_mean, int batch,
                        int dim, LogvarClamp clamp, float free_bits, const float* kl_weight,
                        float loss_scale, BatchReduction reduction, float* dmu, float* dlogvar,
                        cudaStream_t stream) {
  if (batch < 1 || dim < 1) throw std::invalid_argument("free_bits: batch and dim must be >= 1");
  const size_t total = static_cast<size_t>(batch) * dim;
  launch("free_bits_backward_kernel", free_bits_backward_kernel,
         grid_stride_grid(total, kDefaultBlockSize), kDefaultBlockSize, 0, stream, mu, logvar,
         kl_dim_mean, batch, dim, clamp, free_bits, kl_weight,
         loss_scale * batch_reduction_scale(reduction, batch), dmu, dlogvar);
}

}  // namespace fusedvae::gpu
