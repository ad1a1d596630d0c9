// @brief AdamW's per-parameter update, shared by the fused kernel and its CPU twin.
#pragma once

#include "kernels/vae_math.cuh"

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

}  // namespace fusedvae::math
