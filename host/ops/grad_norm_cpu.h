// @brief CPU twin of the global gradient norm and clipping factor (kernels/grad_norm.h).
#pragma once

#include <cstddef>

namespace fusedvae::cpu {

// Sum of squares in double, in a fixed order (eight interleaved partial sums).
void global_grad_norm(const float* grads, size_t count, float max_norm, float* grad_norm,
                      float* grad_scale);

}  // namespace fusedvae::cpu
