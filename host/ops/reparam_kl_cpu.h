// @brief CPU twins of the fused reparameterization + KL ops (kernels/reparam_kl.h).
//
// Same names, arguments and scalar formulas as the GPU ops; host pointers throughout (including
// rng.draw_index and kl_weight). Sums are accumulated in double and rounded once, so the twin is at
// least as accurate as the kernel it mirrors.
#pragma once

#include "kernels/op_params.h"

namespace fusedvae::cpu {

void reparam_kl_forward(const float* mu, const float* logvar, int batch, int dim, RngState rng,
                        LogvarClamp clamp, BatchReduction reduction, float* z, float* kl_per_sample,
                        float* kl_reduced);

void reparam_kl_forward_given_eps(const float* mu, const float* logvar, const float* eps, int batch,
                                  int dim, LogvarClamp clamp, BatchReduction reduction, float* z,
                                  float* kl_per_sample, float* kl_reduced);

void reparam_kl_backward(const float* dz, const float* mu, const float* logvar, int batch, int dim,
                         RngState rng, const float* kl_weight, float loss_scale, LogvarClamp clamp,
                         BatchReduction reduction, float* dmu, float* dlogvar);

void reparam_kl_backward_given_eps(const float* dz, const float* mu, const float* logvar,
                                   const float* eps, int batch, int dim, const float* kl_weight,
                                   float loss_scale, LogvarClamp clamp, BatchReduction reduction,
                                   float* dmu, float* dlogvar);

void draw_normal_eps(int batch, int dim, RngState rng, float* eps, float scale = 1.0f);

}  // namespace fusedvae::cpu
