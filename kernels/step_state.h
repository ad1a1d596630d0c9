// @brief GPU launcher of the step-state advance (kernel in step_state.cu). CPU twin:
// host/ops/step_state_cpu.h.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/op_params.h"

namespace fusedvae::gpu {

// On the device: step += 1, draw_index += 1, kl_weight and lr evaluated for the new step
// (kernels/step_state_math.cuh). total_steps = 0: the run length is unknown and cosine holds lr.
void advance_step_state(StepState* state, const KlSchedule& kl, const OptimizerConfig& opt,
                        uint64_t total_steps, cudaStream_t stream);

}  // namespace fusedvae::gpu
