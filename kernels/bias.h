// @brief GPU launchers of the bias add and the bias gradient of a Linear layer, used where the
// cuBLASLt BIAS / BGRADB epilogues are not offered (kernels in bias.cu). CPU twins:
// host/ops/bias_cpu.h (same names and arguments, without the stream).
#pragma once

#include <cuda_runtime.h>

namespace fusedvae::gpu {

// In place on y [rows, cols]: y[r, c] += bias[c].
void bias_add(float* y, const float* bias, int rows, int cols, cudaStream_t stream);

// bias_grad[c] = sum over r of dy[r, c], in float, in the order of kernels/bias_math.cuh (32 row
// lanes, then pairwise): fixed by the shape alone, so the result is bitwise reproducible and equal
// to the CPU twin's.
void bias_gradient(const float* dy, int rows, int cols, float* bias_grad, cudaStream_t stream);

}  // namespace fusedvae::gpu
