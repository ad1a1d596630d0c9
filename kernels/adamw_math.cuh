// @brief AdamW's step scalars and per-parameter update, shared by the fused kernel and its CPU
// twin.
#pragma once

#include <cmath>

#include "kernels/host_device.cuh"
#include "kernels/op_params.h"

namespace fusedvae::math {

// Bias corrections for step t (1-based), computed once per step, not per parameter.
struct AdamStepScalars {
  float lr;
  float beta1, beta2, eps, weight_decay;
  float inv_bias_correction1;       // 1 / (1 - beta1^t)
  float inv_sqrt_bias_correction2;  // 1 / sqrt(1 - beta2^t)
  float grad_scale;                 // global-norm clipping factor (1 when not clipping)
};

// AdamW (Loshchilov & Hutter): decoupled weight decay, then the Adam step; m, v updated in place.
// Matches torch.optim.AdamW: p -= lr*wd*p; p -= lr * m_hat / (sqrt(v_hat) + eps).
FUSEDVAE_HD void adamw_update(float& param, float& m, float& v, float grad,
                              const AdamStepScalars& s) {
  const float g = grad * s.grad_scale;
  m = s.beta1 * m + (1.0f - s.beta1) * g;
  v = s.beta2 * v + (1.0f - s.beta2) * g * g;
  const float m_hat = m * s.inv_bias_correction1;
  const float denom = std::sqrt(v) * s.inv_sqrt_bias_correction2 + s.eps;
  param -= s.lr * s.weight_decay * param;
  param -= s.lr * m_hat / denom;
}

// The scalars of AdamW step t = state.step + 1. The bias corrections are formed in double: at t =
// 1, 1 - beta2 = 1e-3 would keep only four digits in float.
FUSEDVAE_HD AdamStepScalars adam_step_scalars(const OptimizerConfig& opt, const StepState& state,
                                              float grad_scale) {
  const double t = static_cast<double>(state.step + 1);
  const double correction1 = 1.0 - std::pow(static_cast<double>(opt.beta1), t);
  const double correction2 = 1.0 - std::pow(static_cast<double>(opt.beta2), t);
  AdamStepScalars s;
  s.lr = state.lr;
  s.beta1 = opt.beta1;
  s.beta2 = opt.beta2;
  s.eps = opt.eps;
  s.weight_decay = opt.weight_decay;
  s.inv_bias_correction1 = static_cast<float>(1.0 / correction1);
  s.inv_sqrt_bias_correction2 = static_cast<float>(1.0 / std::sqrt(correction2));
  s.grad_scale = grad_scale;
  return s;
}

}  // namespace fusedvae::math
