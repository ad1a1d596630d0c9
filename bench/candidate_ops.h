// @brief Candidate layouts of the fused ops, measured beside them so that a kernel change can be
// judged on numbers: the same math with 16-byte (float4) loads and stores, for dim % 4 == 0.
//
// reparam_kl forward and backward keep the fused kernels' work split and summation order exactly
// (lane g owns column group g, components added in order), so their outputs are bitwise those of
// kernels/reparam_kl.cu; the harness checks that. The reconstruction candidate gives each lane
// groups of four consecutive columns (a different, still fixed, summation order) with the shared
// per-element math (math::recon_term). Not used by the library: these are proposals, validated
// like everything else.
#pragma once

#include <cuda_runtime.h>

#include "kernels/op_params.h"
#include "kernels/reduction_workspace.h"

namespace fusedvae::bench::candidate {

// True when the float4 paths apply: dim a multiple of 4 (rows stay 16-byte aligned).
inline bool applies(int dim) {
  return dim % 4 == 0;
}

void reparam_kl_forward(const float* mu, const float* logvar, int batch, int dim, RngState rng,
                        LogvarClamp clamp, BatchReduction reduction, float* z, float* kl_per_sample,
                        float* kl_reduced, ReductionWorkspace workspace, cudaStream_t stream);

void reparam_kl_backward(const float* dz, const float* mu, const float* logvar, int batch, int dim,
                         RngState rng, const float* kl_weight, float loss_scale, LogvarClamp clamp,
                         BatchReduction reduction, float* dmu, float* dlogvar, cudaStream_t stream);

void recon_loss_forward_backward(const float* output, const float* target, int batch, int dim,
                                 ReconLoss loss, BatchReduction reduction, float loss_scale,
                                 float* loss_per_sample, float* loss_reduced, float* grad_output,
                                 ReductionWorkspace workspace, cudaStream_t stream);

}  // namespace fusedvae::bench::candidate
