// @brief The unfused baseline: the same math as the fused ops, as the chain of simple element-wise
// kernels and reductions that PyTorch eager runs, one kernel per operator.
//
// Each kernel is deliberately plain (grid-stride, one element per thread and iteration, scalar
// loads) like an eager TensorIterator kernel; reductions are deterministic (block per row, one
// block for the batch). Intermediates live in caller-provided buffers, allocated once, as the
// caching allocator would hand them out. Counting: forward 8 kernels, backward 8, reconstruction 5.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "kernels/op_params.h"

namespace fusedvae::bench::unfused {

// z = mu + exp(0.5 * clamp(logvar)) * randn; kl_row = sum_j kl_term; kl_reduced = scale * sum.
// Kernels: randn, clamp, exp(0.5 x), mul, add, kl element-wise, row sum, batch sum.
struct ForwardScratch {
  float* eps;             // [n]  (kept: autograd saves it for the backward)
  float* logvar_clamped;  // [n]
  float* stddev;          // [n]  (kept: autograd saves it)
  float* noise;           // [n]  stddev * eps
  float* kl_elements;     // [n]
};
void reparam_kl_forward(const float* mu, const float* logvar, int batch, int dim, RngState rng,
                        LogvarClamp clamp, BatchReduction reduction, float* z, float* kl_per_sample,
                        float* kl_reduced, const ForwardScratch& scratch, cudaStream_t stream);

// The autograd backward of the forward above, from its saved tensors (eps, stddev, clamped
// logvar). Kernels: w*mu, dz + that, dz*eps, *stddev, *0.5, KL's d/dlogvar, add, clamp mask.
struct BackwardScratch {
  float* t0;
  float* t1;
  float* t2;
  float* t3;
};
void reparam_kl_backward(const float* dz, const float* mu, const float* logvar, const float* eps,
                         const float* stddev, const float* logvar_clamped, int batch, int dim,
                         const float* kl_weight, float loss_scale, LogvarClamp clamp,
                         BatchReduction reduction, float* dmu, float* dlogvar,
                         const BackwardScratch& scratch, cudaStream_t stream);

// Loss element-wise, row sum, batch sum; then the gradient element-wise and its scaling by
// loss_scale / batch (autograd's grad of the mean). Five kernels: a favourable count for eager,
// which spends several kernels on BCE-with-logits alone.
void recon_loss_forward_backward(const float* output, const float* target, int batch, int dim,
                                 ReconLoss loss, BatchReduction reduction, float loss_scale,
                                 float* loss_per_sample, float* loss_reduced, float* grad_output,
                                 float* loss_elements, cudaStream_t stream);

}  // namespace fusedvae::bench::unfused
