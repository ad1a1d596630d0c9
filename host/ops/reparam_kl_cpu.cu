// @brief CPU twins of the reparameterization + KL ops. Compiled by nvcc (host code only) so that
// cuRAND's Philox, made host-callable in philox_normal.cuh, draws the same eps as the kernels.
#include "host/ops/reparam_kl_cpu.h"

#include <stdexcept>
#include <vector>

#include "kernels/philox_normal.cuh"
#include "kernels/vae_math.cuh"

namespace fusedvae::cpu {
namespace {

void check_shape(int batch, int dim) {
  if (batch < 1 || dim < 1) throw std::invalid_argument("reparam_kl: batch and dim must be >= 1");
}

// Fills `row_eps` with the eps of one row at this draw (the kernels' grouping by four columns).
void philox_row(RngState rng, int row, int dim, float* row_eps) {
  const uint64_t draw = *rng.draw_index;
  const int groups = static_cast<int>(philox_groups_per_row(dim));
  for (int g = 0; g < groups; ++g) {
    const float4 e4 = philox_normal4(rng.seed, draw, row, g, dim);
    for (int k = 0; k < 4 && g * 4 + k < dim; ++k) row_eps[g * 4 + k] = float4_component(e4, k);
  }
}

// `row_eps(row, buffer)` returns a pointer to the eps of that row.
template <typename RowEps>
void forward(const float* mu, const float* logvar, int batch, int dim, RowEps row_eps,
             LogvarClamp clamp, BatchReduction reduction, float* z, float* kl_per_sample,
             float* kl_reduced) {
  check_shape(batch, dim);
  check_logvar_clamp(clamp, "reparam_kl_forward");
  std::vector<float> buffer(dim);
  double batch_kl = 0.0;
  for (int row = 0; row < batch; ++row) {
    const size_t base = static_cast<size_t>(row) * dim;
    const float* eps = row_eps(row, buffer.data());
    double row_kl = 0.0;
    for (int col = 0; col < dim; ++col) {
      const float m = mu[base + col];
      const float lv = math::clamp_logvar(logvar[base + col], clamp.min, clamp.max);
      z[base + col] = math::reparameterize(m, lv, eps[col]);
      row_kl += math::kl_term(m, lv);
    }
    kl_per_sample[row] = static_cast<float>(row_kl);
    batch_kl += kl_per_sample[row];
  }
  *kl_reduced = static_cast<float>(batch_kl) * batch_reduction_scale(reduction, batch);
}

template <typename RowEps>
void backward(const float* dz, const float* mu, const float* logvar, int batch, int dim,
              RowEps row_eps, const float* kl_weight, float loss_scale, LogvarClamp clamp,
              BatchReduction reduction, float* dmu, float* dlogvar) {
  check_shape(batch, dim);
  check_logvar_clamp(clamp, "reparam_kl_backward");
  const float w = *kl_weight * (loss_scale * batch_reduction_scale(reduction, batch));
  std::vector<float> buffer(dim);
  for (int row = 0; row < batch; ++row) {
    const size_t base = static_cast<size_t>(row) * dim;
    const float* eps = row_eps(row, buffer.data());
    for (int col = 0; col < dim; ++col) {
      const size_t idx = base + col;
      const float raw_lv = logvar[idx];
      const float lv = math::clamp_logvar(raw_lv, clamp.min, clamp.max);
      dmu[idx] = dz[idx] + w * math::dkl_dmu(mu[idx]);
      dlogvar[idx] = math::clamp_pass(raw_lv, clamp.min, clamp.max) *
                     (dz[idx] * math::dz_dlogvar(lv, eps[col]) + w * math::dkl_dlogvar(lv));
    }
  }
}

}  // namespace

void reparam_kl_forward(const float* mu, const float* logvar, int batch, int dim, RngState rng,
                        LogvarClamp clamp, BatchReduction reduction, float* z, float* kl_per_sample,
                        float* kl_reduced) {
  auto row_eps = [&](int row, float* buffer) {
    philox_row(rng, row, dim, buffer);
    return static_cast<const float*>(buffer);
  };
  forward(mu, logvar, batch, dim, row_eps, clamp, reduction, z, kl_per_sample, kl_reduced);
}

void reparam_kl_forward_given_eps(const float* mu, const float* logvar, const float* eps, int batch,
                                  int dim, LogvarClamp clamp, BatchReduction reduction, float* z,
                                  float* kl_per_sample, float* kl_reduced) {
  auto row_eps = [&](int row, float*) { return eps + static_cast<size_t>(row) * dim; };
  forward(mu, logvar, batch, dim, row_eps, clamp, reduction, z, kl_per_sample, kl_reduced);
}

void reparam_kl_backward(const float* dz, const float* mu, const float* logvar, int batch, int dim,
                         RngState rng, const float* kl_weight, float loss_scale, LogvarClamp clamp,
                         BatchReduction reduction, float* dmu, float* dlogvar) {
  auto row_eps = [&](int row, float* buffer) {
    philox_row(rng, row, dim, buffer);
    return static_cast<const float*>(buffer);
  };
  backward(dz, mu, logvar, batch, dim, row_eps, kl_weight, loss_scale, clamp, reduction, dmu,
           dlogvar);
}

void reparam_kl_backward_given_eps(const float* dz, const float* mu, const float* logvar,
                                   const float* eps, int batch, int dim, const float* kl_weight,
                                   float loss_scale, LogvarClamp clamp, BatchReduction reduction,
                                   float* dmu, float* dlogvar) {
  auto row_eps = [&](int row, float*) { return eps + static_cast<size_t>(row) * dim; };
  backward(dz, mu, logvar, batch, dim, row_eps, kl_weight, loss_scale, clamp, reduction, dmu,
           dlogvar);
}

void draw_normal_eps(int batch, int dim, RngState rng, float* eps) {
  check_shape(batch, dim);
  for (int row = 0; row < batch; ++row)
    philox_row(rng, row, dim, eps + static_cast<size_t>(row) * dim);
}

}  // namespace fusedvae::cpu
