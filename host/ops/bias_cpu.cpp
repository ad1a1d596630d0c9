// @brief CPU twins of the bias add and the bias gradient.
#include "host/ops/bias_cpu.h"

#include <algorithm>
#include <cstddef>
#include <stdexcept>
#include <string>

#include "host/ops/parallel_cpu.h"
#include "kernels/bias_math.cuh"

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
#pragma omp parallel for schedule(static) if (worth_threads(rows, cols))
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) y[static_cast<size_t>(r) * cols + c] += bias[c];
}

void bias_gradient(const float* dy, int rows, int cols, float* bias_grad) {
  check_shape(rows, cols, "bias_gradient");
  // The kernel's order (bias_math.cuh), a tile of columns at a time so that the row loop walks
  // memory contiguously and the partials stay on the stack; tiles are independent, one per
  // thread at a time.
  constexpr int kTile = 64;
  constexpr int kLanes = math::kBiasGradRowLanes;
  const int tiles = (cols + kTile - 1) / kTile;
#pragma omp parallel for schedule(static) if (worth_threads(rows, cols))
  for (int tile = 0; tile < tiles; ++tile) {
    const int c0 = tile * kTile;
    const int width = std::min(kTile, cols - c0);
    float partials[kLanes][kTile] = {};
    for (int r = 0; r < rows; ++r) {
      const float* row = dy + static_cast<size_t>(r) * cols + c0;
      float* lane = partials[r % kLanes];
      for (int c = 0; c < width; ++c) lane[c] += row[c];
    }
    for (int c = 0; c < width; ++c) {
      float column[kLanes];
      for (int j = 0; j < kLanes; ++j) column[j] = partials[j][c];
      bias_grad[c0 + c] = math::combine_bias_partials(column);
    }
  }
}

}  // namespace fusedvae::cpu
