// @brief CPU twins of the bias add and the bias gradient.
#include "host/ops/bias_cpu.h"

#include <cstddef>
#include <stdexcept>
#include <string>

namespace fusedvae::cpu {
namespace {

void check_shape(int rows, int cols, const char* op) {
  if (rows < 1 || cols < 1)
    throw std::invalid_argument(std::string(op) + ": rows and cols must be >= 1, got " +
                                std::to_string(rows) + " x " + std::to_string(cols));
}

}  // namespace

void bias_add(float* y, const float* bias, int rows, int cols) {
  check_shape(rows, cols, "bias_add");
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) y[static_cast<size_t>(r) * cols + c] += bias[c];
}

void bias_gradient(const float* dy, int rows, int cols, float* bias_grad) {
  check_shape(rows, cols, "bias_gradient");
  // Rows in the outer loop: each column still sums its rows in order 0, 1, ... (the kernel's
  // order, so the two stay bitwise equal), while the inner loop walks memory contiguously.
  for (int c = 0; c < cols; ++c) bias_grad[c] = 0.0f;
  for (int r = 0; r < rows; ++r) {
    const float* row = dy + static_cast<size_t>(r) * cols;
    for (int c = 0; c < cols; ++c) bias_grad[c] += row[c];
  }
}

}  // namespace fusedvae::cpu
