// @brief GPU launcher of the fused AdamW update over the flat parameter buffer (kernel in
// adamw.cu). CPU twin: host/ops/adamw_cpu.h (same name and arguments, without the stream).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "kernels/launch.cuh"
#include "kernels/op_params.h"

namespace fusedvae::gpu {

// One launch updates params, m and v in place (kernels/adamw_math.cuh) from grads *
// *grad_scale. The learning rate and the bias corrections of step t = state->step + 1 are read from
// *state in device memory, so the host never learns the step number (no synchronisation,
// graph-capturable). grad_scale: device scalar written by global_grad_norm, or nullptr for no
// clipping.
void adamw_update(float* params, float* m, float* v, const float* grads, size_t count,
                  const StepState* state, const OptimizerConfig& opt, const float* grad_scale,
                  cudaStream_t stream, int block_size = kDefaultBlockSize);

}  // namespace fusedvae::gpu
