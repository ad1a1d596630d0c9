// @brief The importance-weighted bound's per-sample arithmetic, in double: one sample's log weight
// and the numerically stable log-mean-exp over K samples. The CPU trainer has the same formulas
// inline (host/train/cpu_trainer.cpp); this header is meant to serve both.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/op_params.h"
#include "kernels/vae_math.cuh"

namespace fusedvae {

// log p(x|z) + log p(z) - log q(z|x) for one row, where recon = -log p(x|z) in nats, z = mu +
// sigma * eps, and logvar is the head's raw output (clamped here as in the reparameterization).
// The 1/2 log(2 pi) of p(z) and q(z|x) cancel, and (z - mu) / sigma is eps itself.
inline double iwae_log_weight(float recon, const float* z, const float* eps, const float* logvar,
                              int latent_dim, LogvarClamp clamp) {
  double log_w = -static_cast<double>(recon);
  for (int j = 0; j < latent_dim; ++j) {
    const double zj = z[j], e = eps[j];
    const double lv = math::clamp_logvar(logvar[j], clamp.min, clamp.max);
    log_w += -0.5 * zj * zj + 0.5 * e * e + 0.5 * lv;
  }
  return log_w;
}

// log(mean(exp(a_k))), shifted by the maximum so that no term overflows.
inline double log_mean_exp(const std::vector<double>& a) {
  const double top = *std::max_element(a.begin(), a.end());
  if (!std::isfinite(top)) return top;
  double sum = 0.0;
  for (double v : a) sum += std::exp(v - top);
  return top + std::log(sum / static_cast<double>(a.size()));
}

}  // namespace fusedvae
