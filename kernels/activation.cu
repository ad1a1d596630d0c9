// @brief A hidden layer's bias + activation and the activation's backward, elementwise.
#include "kernels/activation.h"

#include <cstddef>
#include <stdexcept>
#include <string>

#include "kernels/activation.cuh"
#include "kernels/cuda_check.h"

namespace fusedvae::gpu {
namespace {

constexpr int kBlockSize = 256;
constexpr size_t kMaxGrid = 65535;

// ---------------------------------------------------------------------------------------------
// CUDA kernels

// Grid-stride loops over the flat [rows, cols] buffer; each element is independent, so the result
// does not depend on the launch configuration.
__global__ void bias_activation_forward_kernel(float* __restrict__ y,
                                               const float* __restrict__ bias, const size_t count,
                                               const int cols, const Activation act) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    y[i] = math::activate(act, y[i] + bias[i % cols]);
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

int elementwise_grid(size_t count) {
  const size_t blocks = (count + kBlockSize - 1) / kBlockSize;
  return static_cast<int>(blocks < kMaxGrid ? blocks : kMaxGrid);
}

}  // namespace

void bias_activation_forward(float* y, const float* bias, int rows, int cols, Activation act,
                             cudaStream_t stream) {
  const size_t count = checked_count(rows, cols, "bias_activation_forward");
  bias_activation_forward_kernel<<<elementwise_grid(count), kBlockSize, 0, stream>>>(y, bias, count,
                                                                                     cols, act);
  FUSEDVAE_CHECK_LAUNCH(bias_activation_forward_kernel);
}

void activation_backward(const float* y, float* dy, int rows, int cols, Activation act,
                         cudaStream_t stream) {
  const size_t count = checked_count(rows, cols, "activation_backward");
  activation_backward_kernel<<<elementwise_grid(count), kBlockSize, 0, stream>>>(y, dy, count, act);
  FUSEDVAE_CHECK_LAUNCH(activation_backward_kernel);
}

}  // namespace fusedvae::gpu
