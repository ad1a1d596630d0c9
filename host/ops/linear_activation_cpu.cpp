// @brief CPU twins of the Linear layers' bias + activation, activation derivative and bias
// gradient.
#include "host/ops/linear_activation_cpu.h"

#include <cstddef>
#include <stdexcept>
#include <string>

#include "kernels/linear_activation_math.cuh"

namespace fusedvae::cpu {
namespace {

void check_shape(int rows, int cols, const char* op) {
  if (rows < 1 || cols < 1)
    throw std::invalid_argument(std::string(op) + ": rows and cols must be >= 1");
}

}  // namespace

void bias_activation_forward(float* y, const float* bias, int rows, int cols, LinearAct act) {
  check_shape(rows, cols, "bias_activation_forward");
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) {
      float& v = y[static_cast<size_t>(r) * cols + c];
      v = math::apply_linear_act(bias != nullptr ? v + bias[c] : v, act);
    }
}

void activation_backward(float* grad, const float* y, int rows, int cols, LinearAct act) {
  check_shape(rows, cols, "activation_backward");
  const size_t count = static_cast<size_t>(rows) * cols;
  for (size_t i = 0; i < count; ++i) grad[i] *= math::linear_act_derivative_from_output(y[i], act);
}

void bias_gradient(const float* grad, int rows, int cols, float* bias_grad) {
  check_shape(rows, cols, "bias_gradient");
  for (int c = 0; c < cols; ++c) {
    float sum = 0.0f;
    for (int r = 0; r < rows; ++r) sum += grad[static_cast<size_t>(r) * cols + c];
    bias_grad[c] = sum;
  }
}

}  // namespace fusedvae::cpu
