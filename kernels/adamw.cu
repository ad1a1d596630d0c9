// @brief Fused AdamW over the flat parameter buffer: one launch, step scalars read on the device.
#include "kernels/adamw.h"

#include "kernels/launch.cuh"
#include "kernels/adamw_math.cuh"

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
  check_block_size(block_size, "adamw_update");
  // The grid-stride cap (launch.cuh) spreads each thread's step scalars over several elements.
  launch("adamw_update_kernel", adamw_update_kernel, grid_stride_grid(count, block_size),
         block_size, 0, stream, params, m, v, grads, count, state, opt, grad_scale);
}

}  // namespace fusedvae::gpu
