// @brief The plain float32 matrix product (see reference_matmul.h).
#include "kernels/reference_matmul.h"

#include <stdexcept>
#include <string>

#include "kernels/launch.cuh"

namespace fusedvae::gpu {
namespace {

// ---------------------------------------------------------------------------------------------
// CUDA kernels

constexpr int kTile = 16;

// A 2-D tiled grid: thread (x, y) of block (bx, by) owns C[by * 16 + y][bx * 16 + x].
__global__ void reference_matmul_kernel(const bool trans_a, const bool trans_b, const int m,
                                        const int n, const int k, const float* __restrict__ a,
                                        const float* __restrict__ b, float* __restrict__ c,
                                        const bool accumulate) {
  const int row = static_cast<int>(blockIdx.y) * kTile + static_cast<int>(threadIdx.y);
  const int col = static_cast<int>(blockIdx.x) * kTile + static_cast<int>(threadIdx.x);
  if (row >= m || col >= n) return;
  float acc = 0.0f;
  for (int i = 0; i < k; ++i) {
    const float av =
        trans_a ? a[static_cast<size_t>(i) * m + row] : a[static_cast<size_t>(row) * k + i];
    const float bv =
        trans_b ? b[static_cast<size_t>(col) * k + i] : b[static_cast<size_t>(i) * n + col];
    acc += av * bv;
  }
  float* out = c + static_cast<size_t>(row) * n + col;
  *out = accumulate ? *out + acc : acc;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Kernel launchers

void reference_matmul(bool trans_a, bool trans_b, int m, int n, int k, const float* a,
                      const float* b, float* c, bool accumulate, cudaStream_t stream) {
  if (m < 1 || n < 1 || k < 1)
    throw std::invalid_argument("reference_matmul: m, n and k must be >= 1, got " +
                                std::to_string(m) + ", " + std::to_string(n) + ", " +
                                std::to_string(k));
  const dim3 block(kTile, kTile);
  const dim3 grid(static_cast<unsigned>(ceil_div(static_cast<size_t>(n), kTile)),
                  static_cast<unsigned>(ceil_div(static_cast<size_t>(m), kTile)));
  if (grid.y > 65535) throw std::invalid_argument("reference_matmul: m too large");
  launch("reference_matmul_kernel", reference_matmul_kernel, grid, block, 0, stream, trans_a,
         trans_b, m, n, k, a, b, c, accumulate);
}

}  // namespace fusedvae::gpu
