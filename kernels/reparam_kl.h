// @brief GPU launchers of the fused reparameterization + KL ops (kernels in reparam_kl.cu).
//
// Tensors are float32, row-major [batch, dim], in device memory. Every launcher takes an explicit
// stream and checks its launch. The CPU twins in host/ops/reparam_kl_cpu.h have the same names
// and argument order, without the workspace and the stream.
//
// Input range with finite outputs (tests/test_reparam_kl.cpp checks it): any logvar, infinities
// included (the clamp bounds it before use); |mu| and |dz| up to 1e3, eps as drawn (|eps| < 6.7);
// kl_weight in [0, 1], loss_scale up to 65536. NaN inputs propagate.
#pragma once

#include <cuda_runtime.h>

#include "kernels/launch.cuh"
#include "kernels/op_params.h"
#include "kernels/reduction_workspace.h"

namespace fusedvae::gpu {

// z = mu + exp(logvar/2) * eps with eps ~ N(0, 1) from Philox at draw *rng.draw_index;
// kl_per_sample[b] = sum_j 1/2 (mu^2 + exp(logvar) - logvar - 1); *kl_reduced = the batch sum or
// mean of kl_per_sample. logvar is clamped by `clamp` first.
void reparam_kl_forward(const float* mu, const float* logvar, int batch, int dim, RngState rng,
                        LogvarClamp clamp, BatchReduction reduction, float* z, float* kl_per_sample,
                        float* kl_reduced, ReductionWorkspace workspace, cudaStream_t stream,
                        int block_size = kDefaultBlockSize);

// The same with eps given (for tests against the float64 reference).
void reparam_kl_forward_given_eps(const float* mu, const float* logvar, const float* eps, int batch,
                                  int dim, LogvarClamp clamp, BatchReduction reduction, float* z,
                                  float* kl_per_sample, float* kl_reduced,
                                  ReductionWorkspace workspace, cudaStream_t stream,
                                  int block_size = kDefaultBlockSize);

// Gradients of L = (upstream loss through z) + kl_weight * reduce(KL) * loss_scale:
//   dmu     = dz + w * mu
//   dlogvar = [clamp passes] * (dz * exp(logvar/2) * eps / 2 + w * (exp(logvar) - 1) / 2)
// with w = *kl_weight * loss_scale * (1/batch for the mean reduction). eps is regenerated from the
// same Philox draw as the forward; kl_weight points to device memory.
void reparam_kl_backward(const float* dz, const float* mu, const float* logvar, int batch, int dim,
                         RngState rng, const float* kl_weight, float loss_scale, LogvarClamp clamp,
                         BatchReduction reduction, float* dmu, float* dlogvar, cudaStream_t stream,
                         int block_size = kDefaultBlockSize);

void reparam_kl_backward_given_eps(const float* dz, const float* mu, const float* logvar,
                                   const float* eps, int batch, int dim, const float* kl_weight,
                                   float loss_scale, LogvarClamp clamp, BatchReduction reduction,
                                   float* dmu, float* dlogvar, cudaStream_t stream,
                                   int block_size = kDefaultBlockSize);

// The eps that reparam_kl_forward uses at this draw, written out (tests, IWAE, sampling), times
// `scale` (DyAD's noise_scale draws z = mu + scale * sigma * eps through the given-eps ops; a scale
// of 1 gives the unscaled bits).
void draw_normal_eps(int batch, int dim, RngState rng, float* eps, cudaStream_t stream,
                     int block_size = kDefaultBlockSize, float scale = 1.0f);

// Advances *draw_index by `draws` on the device (graph-capturable).
void advance_draw_index(uint64_t* draw_index, uint64_t draws, cudaStream_t stream);

}  // namespace fusedvae::gpu
