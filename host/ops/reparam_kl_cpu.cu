// @brief CPU twins of the reparameterization + KL ops. Compiled by nvcc (host code only) so that
// cuRAND's Philox, made host-callable in philox_normal.cuh, draws the same eps as the kernels.
#include "host/ops/reparam_kl_cpu.h"

#include <stdexcept>

#include "host/ops/parallel_cpu.h"
#include "kernels/philox_normal.cuh"
#include "kernels/reparam_kl_math.cuh"

namespace fusedvae::cpu {
namespace {

void check_shape(int batch, int dim) {
  if (batch < 1 || dim < 1) throw std::invalid_argument("reparam_kl: batch and dim must be >= 1");
}

// The kernels' loop order: rows, then groups of four columns (one eps group each).
template <typename EpsSource>
void forward(const float* mu, const float* logvar, int batch, int dim, EpsSource eps_source,
             LogvarClamp clamp, BatchReduction reduction, float* z, float* kl_per_sample,
             float* kl_reduced) {
  check_shape(batch, dim);
  check_logvar_clamp(clamp, "reparam_kl_forward");
  const int groups = static_cast<int>(philox_groups_per_row(dim));
  const uint64_t draw = eps_source.draw();
#pragma omp parallel for schedule(static) if (worth_threads_drawing(batch, dim))
  for (int row = 0; row < batch; ++row) {
    const size_t base = static_cast<size_t>(row) * dim;
    double row_kl = 0.0;
    for (int g = 0; g < groups; ++g) {
      const float4 e4 = eps_source.group(draw, row, g, dim);
      for (int k = 0; k < 4 && g * 4 + k < dim; ++k) {
        const size_t idx = base + g * 4 + k;
        const float m = mu[idx];
        const float lv = math::clamp_logvar(logvar[idx], clamp.min, clamp.max);
        z[idx] = math::reparameterize(m, lv, float4_component(e4, k));
        row_kl += math::kl_term(m, lv);
      }
    }
    kl_per_sample[row] = static_cast<float>(row_kl);
  }
  double batch_kl = 0.0;  // in row order, after the rows
  for (int row = 0; row < batch; ++row) batch_kl += kl_per_sample[row];
  *kl_reduced = static_cast<float>(batch_kl) * batch_reduction_scale(reduction, batch);
}

template <typename EpsSource>
void backward(const float* dz, const float* mu, const float* logvar, int batch, int dim,
              EpsSource eps_source, const float* kl_weight, float loss_scale, LogvarClamp clamp,
              BatchReduction reduction, float* dmu, float* dlogvar) {
  check_shape(batch, dim);
  check_logvar_clamp(clamp, "reparam_kl_backward");
  const float w = *kl_weight * (loss_scale * batch_reduction_scale(reduction, batch));
  const int groups = static_cast<int>(philox_groups_per_row(dim));
  const uint64_t draw = eps_source.draw();
#pragma omp parallel for schedule(static) if (worth_threads_drawing(batch, dim))
  for (int row = 0; row < batch; ++row) {
    const size_t base = static_cast<size_t>(row) * dim;
    for (int g = 0; g < groups; ++g) {
      const float4 e4 = eps_source.group(draw, row, g, dim);
      for (int k = 0; k < 4 && g * 4 + k < dim; ++k) {
        const size_t idx = base + g * 4 + k;
        const float raw_lv = logvar[idx];
        const float lv = math::clamp_logvar(raw_lv, clamp.min, clamp.max);
        dmu[idx] = dz[idx] + w * math::dkl_dmu(mu[idx]);
        dlogvar[idx] =
            math::clamp_pass(raw_lv, clamp.min, clamp.max) *
            (dz[idx] * math::dz_dlogvar(lv, float4_component(e4, k)) + w * math::dkl_dlogvar(lv));
      }
    }
  }
}

}  // namespace

void reparam_kl_forward(const float* mu, const float* logvar, int batch, int dim, RngState rng,
                        LogvarClamp clamp, BatchReduction reduction, float* z, float* kl_per_sample,
                        float* kl_reduced) {
  forward(mu, logvar, batch, dim, philox_eps(rng), clamp, reduction, z, kl_per_sample, kl_reduced);
}

void reparam_kl_forward_given_eps(const float* mu, const float* logvar, const float* eps, int batch,
                                  int dim, LogvarClamp clamp, BatchReduction reduction, float* z,
                                  float* kl_per_sample, float* kl_reduced) {
  forward(mu, logvar, batch, dim, GivenEps{eps}, clamp, reduction, z, kl_per_sample, kl_reduced);
}

void reparam_kl_backward(const float* dz, const float* mu, const float* logvar, int batch, int dim,
                         RngState rng, const float* kl_weight, float loss_scale, LogvarClamp clamp,
                         BatchReduction reduction, float* dmu, float* dlogvar) {
  backward(dz, mu, logvar, batch, dim, philox_eps(rng), kl_weight, loss_scale, clamp, reduction,
           dmu, dlogvar);
}

void reparam_kl_backward_given_eps(const float* dz, const float* mu, const float* logvar,
                                   const float* eps, int batch, int dim, const float* kl_weight,
                                   float loss_scale, LogvarClamp clamp, BatchReduction reduction,
                                   float* dmu, float* dlogvar) {
  backward(dz, mu, logvar, batch, dim, GivenEps{eps}, kl_weight, loss_scale, clamp, reduction, dmu,
           dlogvar);
}

void draw_normal_eps(int batch, int dim, RngState rng, float* eps, float scale) {
  check_shape(batch, dim);
  const PhiloxEps source = philox_eps(rng);
  const int groups = static_cast<int>(philox_groups_per_row(dim));
  const uint64_t draw = source.draw();
  for (int row = 0; row < batch; ++row)
    for (int g = 0; g < groups; ++g) {
      const float4 e4 = source.group(draw, row, g, dim);
      for (int k = 0; k < 4 && g * 4 + k < dim; ++k)
        eps[static_cast<size_t>(row) * dim + g * 4 + k] = scale * float4_component(e4, k);
    }
}

}  // namespace fusedvae::cpu
