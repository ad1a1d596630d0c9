// @brief The elementwise companions of the cuBLASLt Linear layers, for what no epilogue does: bias
// + activation (tanh always; ReLU and bias when the fused epilogue is not offered), the activation
// derivative in the backward, and a deterministic bias gradient. CPU twins:
// host/ops/linear_activation_cpu.h (same names and arguments, without the stream).
#pragma once

#include <cuda_runtime.h>

namespace fusedvae {

// The nonlinearity after a Linear layer (kIdentity for the heads and the output layer).
enum class LinearAct : int { kIdentity = 0, kRelu = 1, kTanh = 2 };

namespace gpu {

// y[r, c] = act(y[r, c] + bias[c]) in place, y [rows, cols] row-major; bias may be null (the
// matmul epilogue already added it).
void bias_activation_forward(float* y, const float* bias, int rows, int cols, LinearAct act,
                             cudaStream_t stream);

// grad[r, c] *= act'(at the forward output y[r, c]) in place: ReLU passes where y > 0, tanh
// multiplies by 1 - y^2. Nothing to do for kIdentity.
void activation_backward(float* grad, const float* y, int rows, int cols, LinearAct act,
                         cudaStream_t stream);

// bias_grad[c] = sum over r of grad[r, c], rows summed in increasing order (bitwise reproducible).
void bias_gradient(const float* grad, int rows, int cols, float* bias_grad, cudaStream_t stream);

}  // namespace gpu
}  // namespace fusedvae
