// @brief Bias add and bias gradient (column sums) for the Linear layers' fallback paths.
#include "kernels/bias.h"

#include <cstddef>
#include <stdexcept>
#include <string>

#include "kernels/cuda_check.h"

namespace fusedvae::gpu {
namespace {

constexpr int kBlockSize = 256;
constexpr size_t kMaxGrid = 65535;

// ---------------------------------------------------------------------------------------------
// CUDA kernels

__global__ void bias_add_kernel(float* __restrict__ y, const float* __restrict__ bias,
                                const size_t count, const int cols) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    y[i] += bias[i % cols];
}

// One thread per column: neighbouring threads read neighbouring columns (coalesced), and each adds
// its column from row 0 upwards.
__global__ void bias_gradient_kernel(const float* __restrict__ dy, const int rows, const int cols,
                                     float* __restrict__ bias_grad) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  float sum = 0.0f;
  for (int r = 0; r < rows; ++r) sum += dy[static_cast<size_t>(r) * cols + c];
  bias_grad[c] = sum;
}

// ---------------------------------------------------------------------------------------------
// Kernel launchers

void check_shape(int rows, int cols, const char* op) {
  if (rows < 1 || cols < 1)
    throw std::invalid_argument(std::string(op) + ": rows and cols must be >= 1, got " +
                                std::to_string(rows) + " x " + std::to_string(cols));
}

}  // namespace

void bias_add(float* y, const float* bias, int rows, int cols, cudaStream_t stream) {
  check_shape(rows, cols, "bias_add");
  const size_t count = static_cast<size_t>(rows) * cols;
  const size_t blocks = (count + kBlockSize - 1) / kBlockSize;
  bias_add_kernel<<<static_cast<int>(blocks < kMaxGrid ? blocks : kMaxGrid), kBlockSize, 0,
                    stream>>>(y, bias, count, cols);
  FUSEDVAE_CHECK_LAUNCH(bias_add_kernel);
}

void bias_gradient(const float* dy, int rows, int cols, float* bias_grad, cudaStream_t stream) {
  check_shape(rows, cols, "bias_gradient");
  bias_gradient_kernel<<<(cols + kBlockSize - 1) / kBlockSize, kBlockSize, 0, stream>>>(
      dy, rows, cols, bias_grad);
  FUSEDVAE_CHECK_LAUNCH(bias_gradient_kernel);
}

}  // namespace fusedvae::gpu
