// @brief Fused AdamW over the flat parameter buffer: one launch, step scalars read on the device.
#include "kernels/adamw.h"

#include <algorithm>
#include <stdexcept>

#include "kernels/cuda_check.h"
#include "kernels/optimizer_math.cuh"
#include "kernels/step_math.cuh"

namespace fusedvae::gpu {
namespace {

// ---------------------------------------------------------------------------------------------
// CUDA kernels

// Each thread forms the step scalars once (two pow in double) and then walks the buffer with a
// grid stride; elementwise, so the result does not depend on the launch configuration.
__global__ void adamw_update_kernel(float* __restrict__ params, float* __restrict__ m,
                                    float* __restrict__ v, const float* __restrict__ grads,
                                    const size_t count, const StepState* __restrict__ state,
                                    const OptimizerConfig opt,
                                    const float* __restrict__ grad_scale) {
  const math::AdamStepScalars s =
      math::adam_step_scalars(opt, *state, grad_scale ? *grad_scale : 1.0f);
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    float p = params[i], mi = m[i], vi = v[i];
    math::adamw_update(p, mi, vi, grads[i], s);
    params[i] = p;
    m[i] = mi;
    v[i] = vi;
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Kernel launchers

void adamw_update(float* params, float* m, float* v, const float* grads, size_t count,
                  const StepState* state, const OptimizerConfig& opt, const float* grad_scale,
                  cudaStream_t stream, int block_size) {
  if (count == 0) return;
  if (block_size < 32 || block_size > 1024 || block_size % 32 != 0)
    throw std::invalid_argument("adamw_update: block size must be a multiple of 32 in [32, 1024]");
  // Enough blocks to fill any current GPU a few times over; the grid stride covers the rest.
  const size_t wanted = (count + block_size - 1) / block_size;
  const int grid = static_cast<int>(std::min<size_t>(wanted, 4096));
  adamw_update_kernel<<<grid, block_size, 0, stream>>>(params, m, v, grads, count, state, opt,
                                                       grad_scale);
  FUSEDVAE_CHECK_LAUNCH("adamw_update_kernel");
}

}  // namespace fusedvae::gpu
