// @brief A hidden layer's bias + activation and the activation's backward, elementwise.
#include "kernels/activation.h"

#include <cstddef>
#include <stdexcept>
#include <string>

#include "kernels/activation_math.cuh"
#include "kernels/launch.cuh"

namespace fusedvae::gpu {
namespace {

// ---------------------------------------------------------------------------------------------
// CUDA kernels

// Blocks stride over rows, threads over the columns of a row: the bias index is the column itself
// (no per-element division), and each element is independent, so the result does not depend on
// the launch configuration.
__global__ void bias_activation_forward_kernel(float* __restrict__ y,
                                               const float* __restrict__ bias, const int rows,
                                               const int cols, const Activation act) {
  for (int r = blockIdx.x; r < rows; r += gridDim.x) {
    float* row = y + static_cast<size_t>(r) * cols;
    for (int c = threadIdx.x; c < cols; c += blockDim.x)
      row[c] = math::activate(act, row[c] + bias[c]);
  }
}

__global__ void activation_backward_kernel(const float* __restrict__ y, float* __restrict__ dy,
                                           const size_t count, const Activation act) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    dy[i] *= math::activation_grad_from_output(act, y[i]);
}

// ---------------------------------------------------------------------------------------------
// Kernel launchers

size_t checked_count(int rows, int cols, const char* op) {
  if (rows < 1 || cols < 1)
    throw std::invalid_argument(std::string(op) + ": rows and cols must be >= 1, got " +
                                std::to_string(rows) + " x " + std::to_string(cols));
  return static_cast<size_t>(rows) * static_cast<size_t>(cols);
}

}  // namespace

void bias_activation_forward(float* y, const float* bias, int rows, int cols, Activation act,
                             cudaStream_t stream) {
  checked_count(rows, cols, "bias_activation_forward");
  // One block per row (strided beyond the grid cap), as many threads as columns up to the default
  // block, a whole number of warps.
  const int block = row_block_size(cols);
  launch("bias_activation_forward_kernel", bias_activation_forward_kernel,
         row_stride_grid(rows, block), block, 0, stream, y, bias, rows, cols, act);
}

void activation_backward(const float* y, float* dy, int rows, int cols, Activation act,
                         cudaStream_t stream) {
  const size_t count = checked_count(rows, cols, "activation_backward");
  launch("activation_backward_kernel", activation_backward_kernel,
         grid_stride_grid(count, kDefaultBlockSize), kDefaultBlockSize, 0, stream, y, dy, count,
         act);
}

}  // namespace fusedvae::gpu
