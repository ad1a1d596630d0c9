// @brief A plain float32 matrix product on the GPU (kernel in reference_matmul.cu): one thread per
// output, the k sum in order 0..K-1. Not fast: the stand-in for cuBLASLt where cuBLASLt cannot run
// (the CPU SIMT harness, which runs the GRU op's whole step with it) and a second opinion in tests.
#pragma once

#include <cuda_runtime.h>

namespace fusedvae::gpu {

// Row-major C [m, n] = op(A) op(B) (+ C when accumulate), op(A) [m, k], op(B) [k, n]; A is stored
// [m, k], or [k, m] when trans_a (then op(A) = A^T); B is stored [k, n], or [n, k] when trans_b.
// Contiguous rows (leading dimension = the stored row length).
void reference_matmul(bool trans_a, bool trans_b, int m, int n, int k, const float* a,
                      const float* b, float* c, bool accumulate, cudaStream_t stream);

}  // namespace fusedvae::gpu
