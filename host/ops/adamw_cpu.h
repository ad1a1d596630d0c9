// @brief CPU twin of the fused AdamW update (kernels/adamw.h).
#pragma once

#include <cstddef>

#include "kernels/op_params.h"

namespace fusedvae::cpu {

// Host pointers throughout; grad_scale may be null (no clipping).
void adamw_update(float* params, float* m, float* v, const float* grads, size_t count,
                  const StepState* state, const OptimizerConfig& opt, const float* grad_scale);

}  // namespace fusedvae::cpu
