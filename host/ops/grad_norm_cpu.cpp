// @brief CPU twin of the global gradient norm: sum of squares in double, in a fixed order.
#include "host/ops/grad_norm_cpu.h"

#include <cmath>

#include "kernels/grad_norm_math.cuh"

namespace fusedvae::cpu {

void global_grad_norm(const float* grads, size_t count, float max_norm, float* grad_norm,
                      float* grad_scale) {
  // kLanes interleaved partial sums (element i goes to lane i % kLanes), added up lane by lane at
  // the end: a fixed order, so the result is the same every run, and kLanes independent chains,
  // so the additions do not wait on each other (one chain made this 8% of the CPU trainer's main
  // thread).
  constexpr size_t kLanes = 8;
  double lanes[kLanes] = {};
  size_t i = 0;
  for (; i + kLanes <= count; i += kLanes)
    for (size_t k = 0; k < kLanes; ++k) {
      const double g = grads[i + k];
      lanes[k] += g * g;
    }
  for (size_t k = 0; i < count; ++i, ++k) {
    const double g = grads[i];
    lanes[k] += g * g;
  }
  double sum = 0.0;
  for (const double lane : lanes) sum += lane;
  const double norm = std::sqrt(sum);
  *grad_norm = static_cast<float>(norm);
  *grad_scale = math::clip_factor(norm, max_norm);
}

}  // namespace fusedvae::cpu
