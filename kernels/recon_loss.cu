// @brief Fused reconstruction losses: loss per sample, batch reduction and gradient in one pass.
#include "kernels/recon_loss.h"

#include <stdexcept>

#include "kernels/block_reduce.cuh"
#include "kernels/cuda_check.h"
#include "kernels/vae_math.cuh"

namespace fusedvae::gpu {
namespace {

// ---------------------------------------------------------------------------------------------
// CUDA kernels

// One warp per row, lanes striding over the features: the per-row sum has an order fixed by `dim`
// alone, the batch sum ends in finish_grid_sum (no float atomics).
template <ReconLossKind kKind>
__global__ void recon_loss_kernel(const float* __restrict__ output,
                                  const float* __restrict__ target, const int batch, const int dim,
                                  const ReconLoss params, const float batch_scale,
                                  const float grad_scale, float* __restrict__ loss_per_sample,
                                  float* __restrict__ loss_reduced, float* __restrict__ grad_output,
                                  const ReductionWorkspace workspace) {
  __shared__ float warp_partials[kWarpSize];
  const int lane = threadIdx.x % kWarpSize;
  const int warps_per_block = blockDim.x / kWarpSize;
  const int first_row = blockIdx.x * warps_per_block + threadIdx.x / kWarpSize;
  const int row_stride = gridDim.x * warps_per_block;

  float block_rows_loss = 0.0f;  // meaningful in lane 0
  for (int row = first_row; row < batch; row += row_stride) {
    const size_t base = static_cast<size_t>(row) * dim;
    float row_loss = 0.0f;
    for (int col = lane; col < dim; col += kWarpSize) {
      const auto term = math::recon_term<kKind>(output[base + col], target[base + col], params);
      grad_output[base + col] = grad_scale * term.grad;
      row_loss += term.loss;
    }
    row_loss = warp_sum(row_loss);
    if (lane == 0) {
      loss_per_sample[row] = row_loss;
      block_rows_loss += row_loss;
    }
  }
  const float block_loss = block_sum(lane == 0 ? block_rows_loss : 0.0f, warp_partials);
  finish_grid_sum(block_loss, batch_scale, loss_reduced, workspace, warp_partials);
}

// ---------------------------------------------------------------------------------------------
// Kernel launchers

template <ReconLossKind kKind>
void launch(const float* output, const float* target, int batch, int dim, ReconLoss loss,
            float batch_scale, float grad_scale, float* loss_per_sample, float* loss_reduced,
            float* grad_output, ReductionWorkspace workspace, cudaStream_t stream, int block_size) {
  const int warps_per_block = block_size / kWarpSize;
  int blocks = (batch + warps_per_block - 1) / warps_per_block;
  if (blocks > kReduceMaxBlocks) blocks = kReduceMaxBlocks;
  recon_loss_kernel<kKind>
      <<<blocks, block_size, 0, stream>>>(output, target, batch, dim, loss, batch_scale, grad_scale,
                                          loss_per_sample, loss_reduced, grad_output, workspace);
  FUSEDVAE_CHECK_LAUNCH(recon_loss_kernel);
}

}  // namespace

void recon_loss_forward_backward(const float* output, const float* target, int batch, int dim,
                                 ReconLoss loss, BatchReduction reduction, float loss_scale,
                                 float* loss_per_sample, float* loss_reduced, float* grad_output,
                                 ReductionWorkspace workspace, cudaStream_t stream,
                                 int block_size) {
  if (batch < 1 || dim < 1) throw std::invalid_argument("recon_loss: batch and dim must be >= 1");
  if (block_size < kWarpSize || block_size > 1024 || block_size % kWarpSize != 0)
    throw std::invalid_argument("recon_loss: block size must be a multiple of 32 in [32, 1024]");
  check_recon_loss(loss, "recon_loss");
  const float batch_scale = batch_reduction_scale(reduction, batch);
  const float grad_scale = loss_scale * batch_scale;
  math::with_recon_kind(loss.kind, [&](auto kind) {
    launch<decltype(kind)::value>(output, target, batch, dim, loss, batch_scale, grad_scale,
                                  loss_per_sample, loss_reduced, grad_output, workspace, stream,
                                  block_size);
  });
}

}  // namespace fusedvae::gpu
