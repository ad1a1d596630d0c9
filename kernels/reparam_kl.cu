// @brief Fused reparameterization + KL divergence, forward and backward, with in-kernel Philox eps.
#include "kernels/reparam_kl.h"

#include <stdexcept>

#include "kernels/block_reduce.cuh"
#include "kernels/cuda_check.h"
#include "kernels/launch.cuh"
#include "kernels/philox_normal.cuh"
#include "kernels/reparam_kl_math.cuh"

namespace fusedvae::gpu {
namespace {

// ---------------------------------------------------------------------------------------------
// CUDA kernels

// One warp per row; each lane owns groups of four consecutive columns (one Philox call each), so
// the per-row KL sum has an order fixed by `dim` alone. The batch sum ends in finish_grid_sum.
template <typename EpsSource>
__global__ void reparam_kl_forward_kernel(
    const float* __restrict__ mu, const float* __restrict__ logvar, const EpsSource eps_source,
    const int batch, const int dim, const LogvarClamp clamp, const float batch_scale,
    float* __restrict__ z, float* __restrict__ kl_per_sample, float* __restrict__ kl_reduced,
    const ReductionWorkspace workspace) {
  const int groups = static_cast<int>(philox_groups_per_row(dim));
  const uint64_t draw = eps_source.draw();
  auto lane_kl = [&](int row, int lane) {
    const size_t base = static_cast<size_t>(row) * dim;
    float kl = 0.0f;
    for (int g = lane; g < groups; g += kWarpSize) {
      const float4 e4 = eps_source.group(draw, row, g, dim);
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const int col = g * 4 + k;
        if (col < dim) {
          const float m = mu[base + col];
          const float lv = math::clamp_logvar(logvar[base + col], clamp.min, clamp.max);
          z[base + col] = math::reparameterize(m, lv, float4_component(e4, k));
          kl += math::kl_term(m, lv);
        }
      }
    }
    return kl;
  };
  reduce_rows_per_warp(batch, lane_kl, batch_scale, kl_per_sample, kl_reduced, workspace);
}

// One thread per group of four columns: elementwise, no reduction.
template <typename EpsSource>
__global__ void reparam_kl_backward_kernel(const float* __restrict__ dz,
                                           const float* __restrict__ mu,
                                           const float* __restrict__ logvar,
                                           const EpsSource eps_source, const int batch,
                                           const int dim, const float* __restrict__ kl_weight,
                                           const float kl_scale, const LogvarClamp clamp,
                                           float* __restrict__ dmu, float* __restrict__ dlogvar) {
  const int groups = static_cast<int>(philox_groups_per_row(dim));
  const size_t total_groups = static_cast<size_t>(batch) * groups;
  const float w = *kl_weight * kl_scale;
  const uint64_t draw = eps_source.draw();
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < total_groups;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const int row = static_cast<int>(i / groups);
    const int g = static_cast<int>(i % groups);
    const size_t base = static_cast<size_t>(row) * dim;
    const float4 e4 = eps_source.group(draw, row, g, dim);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const int col = g * 4 + k;
      if (col < dim) {
        const size_t idx = base + col;
        const float raw_lv = logvar[idx];
        const float lv = math::clamp_logvar(raw_lv, clamp.min, clamp.max);
        const float upstream = dz[idx];
        dmu[idx] = upstream + w * math::dkl_dmu(mu[idx]);
        dlogvar[idx] =
            math::clamp_pass(raw_lv, clamp.min, clamp.max) *
            (upstream * math::dz_dlogvar(lv, float4_component(e4, k)) + w * math::dkl_dlogvar(lv));
      }
    }
  }
}

__global__ void draw_normal_eps_kernel(const int batch, const int dim, const PhiloxEps source,
                                       const float scale, float* __restrict__ eps) {
  const int groups = static_cast<int>(philox_groups_per_row(dim));
  const size_t total_groups = static_cast<size_t>(batch) * groups;
  const uint64_t draw = source.draw();
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < total_groups;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const int row = static_cast<int>(i / groups);
    const int g = static_cast<int>(i % groups);
    const float4 e4 = source.group(draw, row, g, dim);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const int col = g * 4 + k;
      if (col < dim) eps[static_cast<size_t>(row) * dim + col] = scale * float4_component(e4, k);
    }
  }
}

__global__ void advance_draw_index_kernel(uint64_t* draw_index, uint64_t draws) {
  *draw_index += draws;
}

// ---------------------------------------------------------------------------------------------
// Kernel launchers

void check_shape(int batch, int dim, int block_size, const char* op) {
  if (batch < 1 || dim < 1) throw std::invalid_argument("reparam_kl: batch and dim must be >= 1");
  check_block_size(block_size, op);
}

// Elementwise launches: one thread per group of four columns, grid-stride (launch.cuh's cap).
int group_grid(int batch, int dim, int block_size) {
  return grid_stride_grid(static_cast<size_t>(batch) * philox_groups_per_row(dim), block_size);
}

template <typename EpsSource>
void launch_forward(const float* mu, const float* logvar, EpsSource source, int batch, int dim,
                    LogvarClamp clamp, BatchReduction reduction, float* z, float* kl_per_sample,
                    float* kl_reduced, ReductionWorkspace workspace, cudaStream_t stream,
                    int block_size) {
  check_shape(batch, dim, block_size, "reparam_kl_forward");
  check_logvar_clamp(clamp, "reparam_kl_forward");
  // A reducing grid: one warp per row, capped at kReduceMaxBlocks (fixes the batch sum's order).
  launch("reparam_kl_forward_kernel", reparam_kl_forward_kernel<EpsSource>,
         row_reduction_grid(batch, block_size), block_size, 0, stream, mu, logvar, source, batch,
         dim, clamp, batch_reduction_scale(reduction, batch), z, kl_per_sample, kl_reduced,
         workspace);
}

template <typename EpsSource>
void launch_backward(const float* dz, const float* mu, const float* logvar, EpsSource source,
                     int batch, int dim, const float* kl_weight, float loss_scale,
                     LogvarClamp clamp, BatchReduction reduction, float* dmu, float* dlogvar,
                     cudaStream_t stream, int block_size) {
  check_shape(batch, dim, block_size, "reparam_kl_backward");
  check_logvar_clamp(clamp, "reparam_kl_backward");
  launch("reparam_kl_backward_kernel", reparam_kl_backward_kernel<EpsSource>,
         group_grid(batch, dim, block_size), block_size, 0, stream, dz, mu, logvar, source, batch,
         dim, kl_weight, loss_scale * batch_reduction_scale(reduction, batch), clamp, dmu, dlogvar);
}

}  // namespace

void reparam_kl_forward(const float* mu, const float* logvar, int batch, int dim, RngState rng,
                        LogvarClamp clamp, BatchReduction reduction, float* z, float* kl_per_sample,
                        float* kl_reduced, ReductionWorkspace workspace, cudaStream_t stream,
                        int block_size) {
  launch_forward(mu, logvar, philox_eps(rng), batch, dim, clamp, reduction, z, kl_per_sample,
                 kl_reduced, workspace, stream, block_size);
}

void reparam_kl_forward_given_eps(const float* mu, const float* logvar, const float* eps, int batch,
                                  int dim, LogvarClamp clamp, BatchReduction reduction, float* z,
                                  float* kl_per_sample, float* kl_reduced,
                                  ReductionWorkspace workspace, cudaStream_t stream,
                                  int block_size) {
  launch_forward(mu, logvar, GivenEps{eps}, batch, dim, clamp, reduction, z, kl_per_sample,
                 kl_reduced, workspace, stream, block_size);
}

void reparam_kl_backward(const float* dz, const float* mu, const float* logvar, int batch, int dim,
                         RngState rng, const float* kl_weight, float loss_scale, LogvarClamp clamp,
                         BatchReduction reduction, float* dmu, float* dlogvar, cudaStream_t stream,
                         int block_size) {
  launch_backward(dz, mu, logvar, philox_eps(rng), batch, dim, kl_weight, loss_scale, clamp,
                  reduction, dmu, dlogvar, stream, block_size);
}

void reparam_kl_backward_given_eps(const float* dz, const float* mu, const float* logvar,
                                   const float* eps, int batch, int dim, const float* kl_weight,
                                   float loss_scale, LogvarClamp clamp, BatchReduction reduction,
                                   float* dmu, float* dlogvar, cudaStream_t stream,
                                   int block_size) {
  launch_backward(dz, mu, logvar, GivenEps{eps}, batch, dim, kl_weight, loss_scale, clamp,
                  reduction, dmu, dlogvar, stream, block_size);
}

void draw_normal_eps(int batch, int dim, RngState rng, float* eps, cudaStream_t stream,
                     int block_size, float scale) {
  check_shape(batch, dim, block_size, "draw_normal_eps");
  launch("draw_normal_eps_kernel", draw_normal_eps_kernel, group_grid(batch, dim, block_size),
         block_size, 0, stream, batch, dim, philox_eps(rng), scale, eps);
}

void advance_draw_index(uint64_t* draw_index, uint64_t draws, cudaStream_t stream) {
  launch("advance_draw_index_kernel", advance_draw_index_kernel, 1, 1, 0, stream, draw_index,
         draws);
}

ReductionWorkspace create_reduction_workspace() {
  ReductionWorkspace ws;
  FUSEDVAE_CUDA_CHECK(cudaMalloc(&ws.block_partials, kReduceMaxBlocks * sizeof(float)));
  FUSEDVAE_CUDA_CHECK(cudaMalloc(&ws.blocks_done, sizeof(unsigned int)));
  FUSEDVAE_CUDA_CHECK(cudaMemset(ws.blocks_done, 0, sizeof(unsigned int)));
  // cudaMemset of device memory may return before it has run, and it runs on the legacy default
  // stream, which does not order work on a cudaStreamNonBlocking stream: without this wait the
  // first reducing kernel on such a stream could read an unzeroed counter and never elect (or
  // elect early) its last block. Set-up only, never per step.
  FUSEDVAE_CUDA_CHECK(cudaDeviceSynchronize());
  return ws;
}

void destroy_reduction_workspace(ReductionWorkspace* ws) {
  cudaFree(ws->block_partials);
  cudaFree(ws->blocks_done);
  *ws = ReductionWorkspace{};
}

}  // namespace fusedvae::gpu
