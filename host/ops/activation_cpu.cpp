// @brief CPU twins of the hidden layers' bias + activation and its backward.
#include "host/ops/activation_cpu.h"

#include <cstddef>

#include "host/ops/parallel_cpu.h"
#include "kernels/activation_math.cuh"

namespace fusedvae::cpu {

void bias_activation_forward(float* y, const float* bias, int rows, int cols, Activation act) {
#pragma omp parallel for schedule(static) if (worth_threads(rows, cols))
  for (int r = 0; r < rows; ++r) {
    float* row = y + static_cast<size_t>(r) * cols;
    for (int c = 0; c < cols; ++c) row[c] = math::activate(act, row[c] + bias[c]);
  }
}

void activation_backward(const float* y, float* dy, int rows, int cols, Activation act) {
  const size_t n = static_cast<size_t>(rows) * cols;
#pragma omp parallel for schedule(static) if (worth_threads(n))
  for (size_t i = 0; i < n; ++i) dy[i] *= math::activation_grad_from_output(act, y[i]);
}

}  // namespace fusedvae::cpu
