// @brief CPU twins of the free-bits KL floor: the same scalar math, sums in double.
#include "host/ops/free_bits_cpu.h"

#include <stdexcept>

#include "kernels/reparam_kl_math.cuh"
#include "kernels/free_bits_math.cuh"

namespace fusedvae::cpu {

void free_bits_forward(const float* mu, const float* logvar, int batch, int dim, LogvarClamp clamp,
                       float free_bits, float* kl_dim_mean, float* kl_floored) {
  if (batch < 1 || dim < 1) throw std::invalid_argument("free_bits: batch and dim must be >= 1");
  double floored = 0.0;
  for (int col = 0; col < dim; ++col) {
    double sum = 0.0;
    for (int row = 0; row < batch; ++row) {
      const size_t i = static_cast<size_t>(row) * dim + col;
      sum += math::kl_term(mu[i], math::clamp_logvar(logvar[i], clamp.min, clamp.max));
    }
    kl_dim_mean[col] = static_cast<float>(sum / batch);
    floored += kl_dim_mean[col] > free_bits ? kl_dim_mean[col] : free_bits;
  }
  *kl_floored = static_cast<float>(floored);
}

void free_bits_backward(const float* mu, const float* logvar, const float* kl_dim_mean, int batch,
                        int dim, LogvarClamp clamp, float free_bits, const float* kl_weight,
                        float loss_scale, BatchReduction reduction, float* dmu, float* dlogvar) {
  if (batch < 1 || dim < 1) throw std::invalid_argument("free_bits: batch and dim must be >= 1");
  const float w = *kl_weight * (loss_scale * batch_reduction_scale(reduction, batch));
  for (int row = 0; row < batch; ++row)
    for (int col = 0; col < dim; ++col) {
      const size_t i = static_cast<size_t>(row) * dim + col;
      const float wj = w * math::free_bits_pass(kl_dim_mean[col], free_bits);
      const float raw_lv = logvar[i];
      const float lv = math::clamp_logvar(raw_lv, clamp.min, clamp.max);
      dmu[i] += wj * math::dkl_dmu(mu[i]);
      dlogvar[i] += wj * math::clamp_pass(raw_lv, clamp.min, clamp.max) * math::dkl_dlogvar(lv);
    }
}

}  // namespace fusedvae::cpu
