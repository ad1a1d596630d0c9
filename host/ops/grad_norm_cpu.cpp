// @brief CPU twin of the global gradient norm: sum of squares in double, in index order.
#include "host/ops/grad_norm_cpu.h"

#include <cmath>

#include "kernels/step_math.cuh"

namespace fusedvae::cpu {

void global_grad_norm(const float* grads, size_t count, float max_norm, float* grad_norm,
                      float* grad_scale) {
  double sum = 0.0;
  for (size_t i = 0; i < count; ++i) {
    const double g = grads[i];
    sum += g * g;
  }
  const double norm = std::sqrt(sum);
  *grad_norm = static_cast<float>(norm);
  *grad_scale = math::clip_factor(norm, max_norm);
}

}  // namespace fusedvae::cpu
