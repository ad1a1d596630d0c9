// @brief GPU launchers of a hidden layer's bias + activation and its backward (kernels in
// activation.cu; scalar math in activation_math.cuh). The cuBLASLt Linear layers use them where no
// epilogue applies: tanh always (cuBLASLt has no tanh epilogue), ReLU when the fused epilogue is
// not offered. CPU twins: host/ops/activation_cpu.h (same names and arguments, without the stream).
#pragma once

#include <cuda_runtime.h>

#include "kernels/op_params.h"

namespace fusedvae::gpu {

// In place on y [rows, cols] (the product x W^T): y = act(y + bias).
void bias_activation_forward(float* y, const float* bias, int rows, int cols, Activation act,
                             cudaStream_t stream);

// In place on dy [rows, cols]: dy *= act'(.) written from the layer's output y.
void activation_backward(const float* y, float* dy, int rows, int cols, Activation act,
                         cudaStream_t stream);

}  // namespace fusedvae::gpu
