// @brief Fused reconstruction losses: loss per sample, batch reduction and gradient in one pass.
#include "kernels/recon_loss.h"

#include <stdexcept>

#include "kernels/block_reduce.cuh"
#include "kernels/launch.cuh"
#include "kernels/recon_loss_math.cuh"

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
  auto lane_loss = [&](int row, int lane) {
    const size_t base = static_cast<size_t>(row) * dim;
    float loss = 0.0f;
    for (int col = lane; col < dim; col += kWarpSize) {
      const auto term = math::recon_term<kKind>(output[base + col], target[base + col], params);
      grad_output[base + col] = grad_scale * term.grad;
      loss += term.loss;
    }
    return loss;
  };
  reduce_rows_per_warp(batch, lane_loss, batch_scale, loss_per_sample, loss_reduced, workspace);
}

// ---------------------------------------------------------------------------------------------
// Kernel launchers

}  // namespace

void recon_loss_forward_backward(const float* output, const float* target, int batch, int dim,
                                 ReconLoss loss, BatchReduction reduction, float loss_scale,
                                 float* loss_per_sample, float* loss_reduced, float* grad_output,
                                 ReductionWorkspace workspace, cudaStream_t stream,
                                 int block_size) {
  if (batch < 1 || dim < 1) throw std::invalid_argument("recon_loss: batch and dim must be >= 1");
  check_block_size(block_size, "recon_loss");
  check_recon_loss(loss, "recon_loss");
  const float batch_scale = batch_reduction_scale(reduction, batch);
  const float grad_scale = loss_scale * batch_scale;
  math::with_recon_kind(loss.kind, [&](auto kind) {
    // A reducing grid: one warp per row, capped at kReduceMaxBlocks (fixes the batch sum's order).
    launch("recon_loss_kernel", recon_loss_kernel<decltype(kind)::value>,
           row_reduction_grid(batch, block_size), block_size, 0, stream, output, target, batch, dim,
           loss, batch_scale, grad_scale, loss_per_sample, loss_reduced, grad_output, workspace);
  });
}

}  // namespace fusedvae::gpu
