// @brief Bias + activation, activation derivative and bias gradient kernels for the Linear layers.
#include "kernels/linear_activation.h"

#include <stdexcept>
#include <string>

#include "kernels/cuda_check.h"
#include "kernels/linear_activation_math.cuh"

namespace fusedvae::gpu {
namespace {

constexpr int kBlockSize = 256;
constexpr int kMaxGrid = 65535;

// ---------------------------------------------------------------------------------------------
// CUDA kernels

// The activation is a template parameter so the inner loop carries no branch on it.
template <LinearAct kAct>
__global__ void bias_activation_forward_kernel(float* __restrict__ y,
                                               const float* __restrict__ bias, const size_t count,
                                               const int cols) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const float pre = bias != nullptr ? y[i] + bias[i % cols] : y[i];
    y[i] = math::apply_linear_act(pre, kAct);
  }
}

template <LinearAct kAct>
__global__ void activation_backward_kernel(float* __restrict__ grad, const float* __restrict__ y,
                                           const size_t count) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    grad[i] *= math::linear_act_derivative_from_output(y[i], kAct);
}

// One thread per column: consecutive threads read consecutive columns (coalesced), and each sums
// its column from row 0 upwards, an order fixed by the shape alone.
__global__ void bias_gradient_kernel(const float* __restrict__ grad, const int rows, const int cols,
                                     float* __restrict__ bias_grad) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  float sum = 0.0f;
  for (int r = 0; r < rows; ++r) sum += grad[static_cast<size_t>(r) * cols + c];
  bias_grad[c] = sum;
}

// ---------------------------------------------------------------------------------------------
// Kernel launchers

void check_shape(int rows, int cols, const char* op) {
  if (rows < 1 || cols < 1)
    throw std::invalid_argument(std::string(op) + ": rows and cols must be >= 1");
}

int elementwise_grid(size_t count) {
  const size_t blocks = (count + kBlockSize - 1) / kBlockSize;
  return static_cast<int>(blocks < kMaxGrid ? blocks : kMaxGrid);
}

}  // namespace

void bias_activation_forward(float* y, const float* bias, int rows, int cols, LinearAct act,
                             cudaStream_t stream) {
  check_shape(rows, cols, "bias_activation_forward");
  const size_t count = static_cast<size_t>(rows) * cols;
  const int grid = elementwise_grid(count);
  switch (act) {
    case LinearAct::kRelu:
      bias_activation_forward_kernel<LinearAct::kRelu>
          <<<grid, kBlockSize, 0, stream>>>(y, bias, count, cols);
      break;
    case LinearAct::kTanh:
      bias_activation_forward_kernel<LinearAct::kTanh>
          <<<grid, kBlockSize, 0, stream>>>(y, bias, count, cols);
      break;
    case LinearAct::kIdentity:
      if (bias == nullptr) return;
      bias_activation_forward_kernel<LinearAct::kIdentity>
          <<<grid, kBlockSize, 0, stream>>>(y, bias, count, cols);
      break;
  }
  FUSEDVAE_CHECK_LAUNCH(bias_activation_forward_kernel);
}

void activation_backward(float* grad, const float* y, int rows, int cols, LinearAct act,
                         cudaStream_t stream) {
  check_shape(rows, cols, "activation_backward");
  const size_t count = static_cast<size_t>(rows) * cols;
  const int grid = elementwise_grid(count);
  switch (act) {
    case LinearAct::kRelu:
      activation_backward_kernel<LinearAct::kRelu><<<grid, kBlockSize, 0, stream>>>(grad, y, count);
      break;
    case LinearAct::kTanh:
      activation_backward_kernel<LinearAct::kTanh><<<grid, kBlockSize, 0, stream>>>(grad, y, count);
      break;
    case LinearAct::kIdentity:
      return;
  }
  FUSEDVAE_CHECK_LAUNCH(activation_backward_kernel);
}

void bias_gradient(const float* grad, int rows, int cols, float* bias_grad, cudaStream_t stream) {
  check_shape(rows, cols, "bias_gradient");
  bias_gradient_kernel<<<(cols + kBlockSize - 1) / kBlockSize, kBlockSize, 0, stream>>>(
      grad, rows, cols, bias_grad);
  FUSEDVAE_CHECK_LAUNCH(bias_gradient_kernel);
}

}  // namespace fusedvae::gpu
