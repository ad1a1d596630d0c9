// @brief Bias add and bias gradient (column sums) for the Linear layers' fallback paths.
#include "kernels/bias.h"

#include <cstddef>
#include <stdexcept>
#include <string>

#include "kernels/bias_math.cuh"
#include "kernels/launch.cuh"

namespace fusedvae::gpu {
namespace {

constexpr int kColumnsPerBlock = 32;

// ---------------------------------------------------------------------------------------------
// CUDA kernels

// Blocks stride over rows, threads over a row's columns: the bias index needs no division.
__global__ void bias_add_kernel(float* __restrict__ y, const float* __restrict__ bias,
                                const int rows, const int cols) {
  for (int r = blockIdx.x; r < rows; r += gridDim.x) {
    float* row = y + static_cast<size_t>(r) * cols;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) row[c] += bias[c];
  }
}

// A block of 32 columns x kBiasGradRowLanes row lanes: a warp reads 32 neighbouring columns of one
// row (coalesced), each thread keeps one partial of bias_math.cuh's order, and one thread per
// column adds the partials in that order.
__global__ void bias_gradient_kernel(const float* __restrict__ dy, const int rows, const int cols,
                                     float* __restrict__ bias_grad) {
  __shared__ float partials[math::kBiasGradRowLanes][kColumnsPerBlock + 1];  // +1: no bank clash
  const int c = blockIdx.x * kColumnsPerBlock + threadIdx.x;
  const int lane = threadIdx.y;
  float sum = 0.0f;
  if (c < cols)
    for (int r = lane; r < rows; r += math::kBiasGradRowLanes)
      sum += dy[static_cast<size_t>(r) * cols + c];
  partials[lane][threadIdx.x] = sum;
  __syncthreads();
  if (lane == 0 && c < cols) {
    float column[math::kBiasGradRowLanes];
#pragma unroll
    for (int j = 0; j < math::kBiasGradRowLanes; ++j) column[j] = partials[j][threadIdx.x];
    bias_grad[c] = math::combine_bias_partials(column);
  }
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
  // One block per row (strided beyond the grid cap), threads over the row's columns.
  const int block = row_block_size(cols);
  launch("bias_add_kernel", bias_add_kernel, row_stride_grid(rows, block), block, 0, stream, y,
         bias, rows, cols);
}

void bias_gradient(const float* dy, int rows, int cols, float* bias_grad, cudaStream_t stream) {
  check_shape(rows, cols, "bias_gradient");
  // A tiled grid: each block owns kColumnsPerBlock columns, no stride, no cap.
  const dim3 block(kColumnsPerBlock, math::kBiasGradRowLanes);
  const int grid = static_cast<int>(ceil_div(static_cast<size_t>(cols), kColumnsPerBlock));
  launch("bias_gradient_kernel", bias_gradient_kernel, grid, block, 0, stream, dy, rows, cols,
         bias_grad);
}

}  // namespace fusedvae::gpu
