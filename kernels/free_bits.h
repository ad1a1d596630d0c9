// @brief GPU launchers of the free-bits KL floor (kernels in free_bits.cu; scalar math in
// free_bits_math.cuh and reparam_kl_math.cuh). CPU twins: host/ops/free_bits_cpu.h (same names and
// arguments, without stream).
//
// With free bits the optimised KL term is reduce_scale * batch * sum_j max(KL_j, free_bits), where
// KL_j = (1/batch) sum_b KL(b, j) (batch * ... because the batch sum of the plain KL is batch times
// its mean). The trainer runs reparam_kl_forward as usual (its per-sample KL is still the reported
// KL), then free_bits_forward; in the backward, reparam_kl_backward with a zero KL weight (the
// reparameterization path alone), then free_bits_backward adds the floored KL's gradient.
#pragma once

#include <cuda_runtime.h>

#include "kernels/op_params.h"

namespace fusedvae::gpu {

// kl_dim_mean[j] = KL_j; *kl_floored = sum_j max(KL_j, free_bits) (nats per sample). One block,
// columns in order, rows in a fixed block-stride order: deterministic.
void free_bits_forward(const float* mu, const float* logvar, int batch, int dim, LogvarClamp clamp,
                       float free_bits, float* kl_dim_mean, float* kl_floored, cudaStream_t stream);

// Adds to dmu, dlogvar: w * [KL_j >= free_bits] * (mu, clamp_pass * (exp(logvar) - 1) / 2), with
// w = *kl_weight * loss_scale * (1/batch for the mean reduction). kl_weight is device memory.
void free_bits_backward(const float* mu, const float* logvar, const float* kl_dim_mean, int batch,
                        int dim, LogvarClamp clamp, float free_bits, const float* kl_weight,
                        float loss_scale, BatchReduction reduction, float* dmu, float* dlogvar,
                        cudaStream_t stream);

}  // namespace fusedvae::gpu
