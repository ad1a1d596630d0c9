// @brief CPU twins of the free-bits KL floor (kernels/free_bits.h).
#pragma once

#include "kernels/op_params.h"

namespace fusedvae::cpu {

// Column sums in double.
void free_bits_forward(const float* mu, const float* logvar, int batch, int dim, LogvarClamp clamp,
                       float free_bits, float* kl_dim_mean, float* kl_floored);

void free_bits_backward(const float* mu, const float* logvar, const float* kl_dim_mean, int batch,
                        int dim, LogvarClamp clamp, float free_bits, const float* kl_weight,
                        float loss_scale, BatchReduction reduction, float* dmu, float* dlogvar);

}  // namespace fusedvae::cpu
