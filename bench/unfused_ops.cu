// @brief The unfused (PyTorch-eager-like) baseline kernels: one simple kernel per operator.
#include "bench/unfused_ops.h"

#include "kernels/block_reduce.cuh"
#include "kernels/launch.cuh"
#include "kernels/reparam_kl.h"
#include "kernels/reparam_kl_math.cuh"
#include "kernels/recon_loss_math.cuh"

namespace fusedvae::bench::unfused {
namespace {

// ---------------------------------------------------------------------------------------------
// CUDA kernels

constexpr int kBlock = gpu::kDefaultBlockSize;

#define FUSEDVAE_GRID_STRIDE(i, n)                                                     \
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<size_t>(gridDim.x) * blockDim.x)

__global__ void clamp_kernel(const float* __restrict__ in, size_t n, float lo, float hi,
                             float* __restrict__ out) {
  FUSEDVAE_GRID_STRIDE(i, n) out[i] = math::clamp_logvar(in[i], lo, hi);
}

__global__ void exp_scaled_kernel(const float* __restrict__ in, size_t n, float scale,
                                  float* __restrict__ out) {
  FUSEDVAE_GRID_STRIDE(i, n) out[i] = expf(scale * in[i]);
}

__global__ void mul_kernel(const float* __restrict__ a, const float* __restrict__ b, size_t n,
                           float* __restrict__ out) {
  FUSEDVAE_GRID_STRIDE(i, n) out[i] = a[i] * b[i];
}

__global__ void add_kernel(const float* __restrict__ a, const float* __restrict__ b, size_t n,
                           float* __restrict__ out) {
  FUSEDVAE_GRID_STRIDE(i, n) out[i] = a[i] + b[i];
}

// out = in * (*device_factor) * host_factor (device_factor may be null: 1).
// `in` may be `out` (the loss scale applied in place), so neither is __restrict__.
__global__ void scale_kernel(const float* in, size_t n, const float* __restrict__ device_factor,
                             float host_factor, float* out) {
  const float f = (device_factor ? *device_factor : 1.0f) * host_factor;
  FUSEDVAE_GRID_STRIDE(i, n) out[i] = in[i] * f;
}

__global__ void kl_elements_kernel(const float* __restrict__ mu,
                                   const float* __restrict__ logvar_clamped, size_t n,
                                   float* __restrict__ out) {
  FUSEDVAE_GRID_STRIDE(i, n) out[i] = math::kl_term(mu[i], logvar_clamped[i]);
}

// w * dKL/dlogvar with w = *kl_weight * scale.
__global__ void dkl_dlogvar_kernel(const float* __restrict__ logvar_clamped, size_t n,
                                   const float* __restrict__ kl_weight, float scale,
                                   float* __restrict__ out) {
  const float w = *kl_weight * scale;
  FUSEDVAE_GRID_STRIDE(i, n) out[i] = w * math::dkl_dlogvar(logvar_clamped[i]);
}

// torch.clamp's backward: the gradient where the clamp passed logvar through, 0 elsewhere.
__global__ void clamp_mask_kernel(const float* __restrict__ grad, const float* __restrict__ logvar,
                                  size_t n, float lo, float hi, float* __restrict__ out) {
  FUSEDVAE_GRID_STRIDE(i, n) out[i] = math::clamp_pass(logvar[i], lo, hi) * grad[i];
}

template <ReconLossKind kKind>
__global__ void loss_elements_kernel(const float* __restrict__ x, const float* __restrict__ y,
                                     size_t n, ReconLoss params, float* __restrict__ out) {
  FUSEDVAE_GRID_STRIDE(i, n) out[i] = math::recon_term<kKind>(x[i], y[i], params).loss;
}

template <ReconLossKind kKind>
__global__ void loss_grad_kernel(const float* __restrict__ x, const float* __restrict__ y, size_t n,
                                 ReconLoss params, float* __restrict__ out) {
  FUSEDVAE_GRID_STRIDE(i, n) out[i] = math::recon_term<kKind>(x[i], y[i], params).grad;
}

// One block per row; a fixed-order block sum.
__global__ void row_sum_kernel(const float* __restrict__ in, int cols, float* __restrict__ out) {
  __shared__ float warp_partials[kWarpSize];
  const float* row = in + static_cast<size_t>(blockIdx.x) * cols;
  float sum = 0.0f;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) sum += row[c];
  sum = block_sum(sum, warp_partials);
  if (threadIdx.x == 0) out[blockIdx.x] = sum;
}

// One block for the whole vector (the batch sum is short): fixed order, scaled at the end.
__global__ void total_sum_kernel(const float* __restrict__ in, int n, float scale,
                                 float* __restrict__ out) {
  __shared__ float warp_partials[kWarpSize];
  float sum = 0.0f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) sum += in[i];
  sum = block_sum(sum, warp_partials);
  if (threadIdx.x == 0) *out = sum * scale;
}

#undef FUSEDVAE_GRID_STRIDE

// ---------------------------------------------------------------------------------------------
// Kernel launchers

// Eager launches enough blocks to cover the tensor, one element per thread: this baseline models
// PyTorch's elementwise launches, not the fused ops' grid policy (capped at 65535 blocks, the
// grid stride covering the rest).
int elementwise_grid(size_t n) {
  return gpu::capped_grid(gpu::ceil_div(n, kBlock), 65535);
}

void row_sum(const float* in, int rows, int cols, float* out, cudaStream_t stream) {
  gpu::launch("row_sum_kernel", row_sum_kernel, rows, kBlock, 0, stream, in, cols, out);
}

void total_sum(const float* in, int n, float scale, float* out, cudaStream_t stream) {
  gpu::launch("total_sum_kernel", total_sum_kernel, 1, kBlock, 0, stream, in, n, scale, out);
}

}  // namespace

void reparam_kl_forward(const float* mu, const float* logvar, int batch, int dim, RngState rng,
                        LogvarClamp clamp, BatchReduction reduction, float* z, float* kl_per_sample,
                        float* kl_reduced, const ForwardScratch& s, cudaStream_t stream) {
  const size_t n = static_cast<size_t>(batch) * dim;
  const int grid = elementwise_grid(n);
  gpu::draw_normal_eps(batch, dim, rng, s.eps, stream);  // torch.randn_like
  gpu::launch("clamp_kernel", clamp_kernel, grid, kBlock, 0, stream, logvar, n, clamp.min,
              clamp.max, s.logvar_clamped);
  gpu::launch("exp_scaled_kernel", exp_scaled_kernel, grid, kBlock, 0, stream, s.logvar_clamped, n,
              0.5f, s.stddev);
  gpu::launch("mul_kernel", mul_kernel, grid, kBlock, 0, stream, s.stddev, s.eps, n, s.noise);
  gpu::launch("add_kernel", add_kernel, grid, kBlock, 0, stream, mu, s.noise, n, z);
  gpu::launch("kl_elements_kernel", kl_elements_kernel, grid, kBlock, 0, stream, mu,
              s.logvar_clamped, n, s.kl_elements);
  row_sum(s.kl_elements, batch, dim, kl_per_sample, stream);
  total_sum(kl_per_sample, batch, batch_reduction_scale(reduction, batch), kl_reduced, stream);
}

void reparam_kl_backward(const float* dz, const float* mu, const float* logvar, const float* eps,
                         const float* stddev, const float* logvar_clamped, int batch, int dim,
                         const float* kl_weight, float loss_scale, LogvarClamp clamp,
                         BatchReduction reduction, float* dmu, float* dlogvar,
                         const BackwardScratch& s, cudaStream_t stream) {
  const size_t n = static_cast<size_t>(batch) * dim;
  const int grid = elementwise_grid(n);
  const float scale = loss_scale * batch_reduction_scale(reduction, batch);
  // w * dKL/dmu
  gpu::launch("scale_kernel", scale_kernel, grid, kBlock, 0, stream, mu, n, kl_weight, scale, s.t0);
  gpu::launch("add_kernel", add_kernel, grid, kBlock, 0, stream, dz, s.t0, n, dmu);
  // d/dstddev
  gpu::launch("mul_kernel", mul_kernel, grid, kBlock, 0, stream, dz, eps, n, s.t1);
  // exp's backward
  gpu::launch("mul_kernel", mul_kernel, grid, kBlock, 0, stream, s.t1, stddev, n, s.t2);
  // the 0.5 inside exp
  gpu::launch("scale_kernel", scale_kernel, grid, kBlock, 0, stream, s.t2, n, nullptr, 0.5f, s.t1);
  gpu::launch("dkl_dlogvar_kernel", dkl_dlogvar_kernel, grid, kBlock, 0, stream, logvar_clamped, n,
              kl_weight, scale, s.t3);
  // autograd accumulation
  gpu::launch("add_kernel", add_kernel, grid, kBlock, 0, stream, s.t1, s.t3, n, s.t2);
  gpu::launch("clamp_mask_kernel", clamp_mask_kernel, grid, kBlock, 0, stream, s.t2, logvar, n,
              clamp.min, clamp.max, dlogvar);
}

void recon_loss_forward_backward(const float* output, const float* target, int batch, int dim,
                                 ReconLoss loss, BatchReduction reduction, float loss_scale,
                                 float* loss_per_sample, float* loss_reduced, float* grad_output,
                                 float* loss_elements, cudaStream_t stream) {
  const size_t n = static_cast<size_t>(batch) * dim;
  const int grid = elementwise_grid(n);
  const float batch_scale = batch_reduction_scale(reduction, batch);
  math::with_recon_kind(loss.kind, [&](auto kind) {
    constexpr ReconLossKind kKind = decltype(kind)::value;
    gpu::launch("loss_elements_kernel", loss_elements_kernel<kKind>, grid, kBlock, 0, stream,
                output, target, n, loss, loss_elements);
    row_sum(loss_elements, batch, dim, loss_per_sample, stream);
    total_sum(loss_per_sample, batch, batch_scale, loss_reduced, stream);
    gpu::launch("loss_grad_kernel", loss_grad_kernel<kKind>, grid, kBlock, 0, stream, output,
                target, n, loss, grad_output);
    gpu::launch("scale_kernel", scale_kernel, grid, kBlock, 0, stream, grad_output, n, nullptr,
                loss_scale * batch_scale, grad_output);
  });
}

}  // namespace fusedvae::bench::unfused
