// @brief Candidate float4 layouts of the fused ops (see candidate_ops.h), for measurement only.
#include "bench/candidate_ops.h"

#include <stdexcept>

#include "kernels/block_reduce.cuh"
#include "kernels/launch.cuh"
#include "kernels/philox_normal.cuh"
#include "kernels/reparam_kl_math.cuh"
#include "kernels/recon_loss_math.cuh"

namespace fusedvae::bench::candidate {
namespace {

// ---------------------------------------------------------------------------------------------
// CUDA kernels

constexpr int kBlock = gpu::kDefaultBlockSize;  // as the fused ops

__device__ __forceinline__ float& component(float4& v, int k) {
  return k == 0 ? v.x : (k == 1 ? v.y : (k == 2 ? v.z : v.w));
}
__device__ __forceinline__ float component(const float4& v, int k) {
  return k == 0 ? v.x : (k == 1 ? v.y : (k == 2 ? v.z : v.w));
}

// The fused forward's layout (a warp per row, lane g owning column group g), with one 16-byte
// load per input and one 16-byte store of z per group instead of four scalar accesses each.
__global__ void reparam_kl_forward_vec4_kernel(
    const float* __restrict__ mu, const float* __restrict__ logvar, const PhiloxEps source,
    const int batch, const int dim, const LogvarClamp clamp, const float batch_scale,
    float* __restrict__ z, float* __restrict__ kl_per_sample, float* __restrict__ kl_reduced,
    const ReductionWorkspace workspace) {
  __shared__ float warp_partials[kWarpSize];
  const int lane = threadIdx.x % kWarpSize;
  const int warps_per_block = blockDim.x / kWarpSize;
  const int first_row = blockIdx.x * warps_per_block + threadIdx.x / kWarpSize;
  const int row_stride = gridDim.x * warps_per_block;
  const int groups = dim / 4;
  const uint64_t draw = source.draw();
  float block_rows_kl = 0.0f;
  for (int row = first_row; row < batch; row += row_stride) {
    const float4* mu4 = reinterpret_cast<const float4*>(mu + static_cast<size_t>(row) * dim);
    const float4* lv4 = reinterpret_cast<const float4*>(logvar + static_cast<size_t>(row) * dim);
    float4* z4 = reinterpret_cast<float4*>(z + static_cast<size_t>(row) * dim);
    float row_kl = 0.0f;
    for (int g = lane; g < groups; g += kWarpSize) {
      const float4 m = mu4[g];
      const float4 raw = lv4[g];
      const float4 e = source.group(draw, row, g, dim);
      float4 out;
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const float lv = math::clamp_logvar(component(raw, k), clamp.min, clamp.max);
        component(out, k) = math::reparameterize(component(m, k), lv, component(e, k));
        row_kl += math::kl_term(component(m, k), lv);
      }
      z4[g] = out;
    }
    row_kl = warp_sum(row_kl);
    if (lane == 0) {
      kl_per_sample[row] = row_kl;
      block_rows_kl += row_kl;
    }
  }
  const float block_kl = block_sum(lane == 0 ? block_rows_kl : 0.0f, warp_partials);
  finish_grid_sum(block_kl, batch_scale, kl_reduced, workspace, warp_partials);
}

// The fused backward's layout (a thread per column group), with 16-byte loads and stores.
__global__ void reparam_kl_backward_vec4_kernel(
    const float* __restrict__ dz, const float* __restrict__ mu, const float* __restrict__ logvar,
    const PhiloxEps source, const int batch, const int dim, const float* __restrict__ kl_weight,
    const float kl_scale, const LogvarClamp clamp, float* __restrict__ dmu,
    float* __restrict__ dlogvar) {
  const int groups = dim / 4;
  const size_t total_groups = static_cast<size_t>(batch) * groups;
  const float w = *kl_weight * kl_scale;
  const uint64_t draw = source.draw();
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < total_groups;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const int row = static_cast<int>(i / groups);
    const int g = static_cast<int>(i % groups);
    const float4 up = reinterpret_cast<const float4*>(dz)[i];
    const float4 m = reinterpret_cast<const float4*>(mu)[i];
    const float4 raw = reinterpret_cast<const float4*>(logvar)[i];
    const float4 e = source.group(draw, row, g, dim);
    float4 out_mu, out_lv;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const float r = component(raw, k);
      const float lv = math::clamp_logvar(r, clamp.min, clamp.max);
      const float u = component(up, k);
      component(out_mu, k) = u + w * math::dkl_dmu(component(m, k));
      component(out_lv, k) =
          math::clamp_pass(r, clamp.min, clamp.max) *
          (u * math::dz_dlogvar(lv, component(e, k)) + w * math::dkl_dlogvar(lv));
    }
    reinterpret_cast<float4*>(dmu)[i] = out_mu;
    reinterpret_cast<float4*>(dlogvar)[i] = out_lv;
  }
}

// A warp per row; lane l owns column groups l, l + 32, ... (16-byte loads and stores).
template <ReconLossKind kKind>
__global__ void recon_loss_vec4_kernel(
    const float* __restrict__ output, const float* __restrict__ target, const int batch,
    const int dim, const ReconLoss params, const float batch_scale, const float grad_scale,
    float* __restrict__ loss_per_sample, float* __restrict__ loss_reduced,
    float* __restrict__ grad_output, const ReductionWorkspace workspace) {
  __shared__ float warp_partials[kWarpSize];
  const int lane = threadIdx.x % kWarpSize;
  const int warps_per_block = blockDim.x / kWarpSize;
  const int first_row = blockIdx.x * warps_per_block + threadIdx.x / kWarpSize;
  const int row_stride = gridDim.x * warps_per_block;
  const int groups = dim / 4;
  float block_rows_loss = 0.0f;
  for (int row = first_row; row < batch; row += row_stride) {
    const size_t base = static_cast<size_t>(row) * dim;
    const float4* x4 = reinterpret_cast<const float4*>(output + base);
    const float4* y4 = reinterpret_cast<const float4*>(target + base);
    float4* g4 = reinterpret_cast<float4*>(grad_output + base);
    float row_loss = 0.0f;
    for (int g = lane; g < groups; g += kWarpSize) {
      const float4 x = x4[g];
      const float4 y = y4[g];
      float4 grad;
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const auto term = math::recon_term<kKind>(component(x, k), component(y, k), params);
        component(grad, k) = grad_scale * term.grad;
        row_loss += term.loss;
      }
      g4[g] = grad;
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

void check(int batch, int dim) {
  if (batch < 1 || dim < 1 || !applies(dim))
    throw std::invalid_argument("candidate ops: batch >= 1 and dim a positive multiple of 4");
}

int row_grid(int batch) {
  return row_reduction_grid(batch, kBlock);
}

}  // namespace

void reparam_kl_forward(const float* mu, const float* logvar, int batch, int dim, RngState rng,
                        LogvarClamp clamp, BatchReduction reduction, float* z, float* kl_per_sample,
                        float* kl_reduced, ReductionWorkspace workspace, cudaStream_t stream) {
  check(batch, dim);
  gpu::launch("reparam_kl_forward_vec4_kernel", reparam_kl_forward_vec4_kernel, row_grid(batch),
              kBlock, 0, stream, mu, logvar, philox_eps(rng), batch, dim, clamp,
              batch_reduction_scale(reduction, batch), z, kl_per_sample, kl_reduced, workspace);
}

void reparam_kl_backward(const float* dz, const float* mu, const float* logvar, int batch, int dim,
                         RngState rng, const float* kl_weight, float loss_scale, LogvarClamp clamp,
                         BatchReduction reduction, float* dmu, float* dlogvar,
                         cudaStream_t stream) {
  check(batch, dim);
  // The fused backward's grid policy (kernels/launch.cuh), so the layouts compare like for like.
  const size_t groups = static_cast<size_t>(batch) * (dim / 4);
  gpu::launch("reparam_kl_backward_vec4_kernel", reparam_kl_backward_vec4_kernel,
              gpu::grid_stride_grid(groups, kBlock), kBlock, 0, stream, dz, mu, logvar,
              philox_eps(rng), batch, dim, kl_weight,
              loss_scale * batch_reduction_scale(reduction, batch), clamp, dmu, dlogvar);
}

void recon_loss_forward_backward(const float* output, const float* target, int batch, int dim,
                                 ReconLoss loss, BatchReduction reduction, float loss_scale,
                                 float* loss_per_sample, float* loss_reduced, float* grad_output,
                                 ReductionWorkspace workspace, cudaStream_t stream) {
  check(batch, dim);
  const float batch_scale = batch_reduction_scale(reduction, batch);
  math::with_recon_kind(loss.kind, [&](auto kind) {
    gpu::launch("recon_loss_vec4_kernel", recon_loss_vec4_kernel<decltype(kind)::value>,
                row_grid(batch), kBlock, 0, stream, output, target, batch, dim, loss, batch_scale,
                loss_scale * batch_scale, loss_per_sample, loss_reduced, grad_output, workspace);
  });
}

}  // namespace fusedvae::bench::candidate
