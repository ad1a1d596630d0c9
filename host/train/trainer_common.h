// @brief What every Trainer backend shares outside the arithmetic of a step: input checks, the
// evaluation result's shape and means, and the importance-weighted bound's per-sample arithmetic in
// double (one sample's log weight, the stable log-mean-exp over K samples), for the CPU and GPU
// trainers alike.
#pragma once

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "host/data/dataset.h"
#include "host/model/model_config.h"
#include "host/train/trainer.h"
#include "kernels/op_params.h"
#include "kernels/reparam_kl_math.cuh"

namespace fusedvae {

// Every setting a trainer relies on, checked once at construction with a one-line reason (the CLI
// checks its flags too, but the library must not divide by a zero cycle or step with a NaN rate).
inline void check_train_config(const TrainConfig& config) {
  validate(config.model);
  auto fail = [](const std::string& what) { throw std::invalid_argument("train config: " + what); };
  const OptimizerConfig& o = config.optimizer;
  const KlSchedule& kl = config.kl;
  if (config.batch_size < 1)
    fail("batch_size must be >= 1, got " + std::to_string(config.batch_size));
  if (config.epochs < 0) fail("epochs must be >= 0, got " + std::to_string(config.epochs));
  if (!(o.lr > 0.0f) || !std::isfinite(o.lr)) fail("lr must be > 0, got " + std::to_string(o.lr));
  if (!(o.min_lr >= 0.0f && o.min_lr <= o.lr)) fail("min_lr must lie in [0, lr]");
  if (!(o.beta1 >= 0.0f && o.beta1 < 1.0f)) fail("beta1 must lie in [0, 1)");
  if (!(o.beta2 >= 0.0f && o.beta2 < 1.0f)) fail("beta2 must lie in [0, 1)");
  if (!(o.eps > 0.0f)) fail("adam eps must be > 0");
  if (!(o.weight_decay >= 0.0f)) fail("weight_decay must be >= 0");
  if (!(o.max_grad_norm >= 0.0f)) fail("max_grad_norm must be >= 0 (0 = off)");
  if (!(kl.weight >= 0.0f) || !std::isfinite(kl.weight)) fail("kl weight must be >= 0");
  if (!(kl.free_bits >= 0.0f) || !std::isfinite(kl.free_bits))
    fail("kl.free_bits must be >= 0, got " + std::to_string(kl.free_bits));
  if (kl.kind == KlScheduleKind::kLinear && !(kl.x0 >= 0.0f)) fail("kl x0 must be >= 0");
  if (kl.kind == KlScheduleKind::kLogistic && !std::isfinite(kl.k * kl.x0))
    fail("kl k and x0 must be finite");
  if (kl.kind == KlScheduleKind::kCyclical && kl.cycle_steps < 1)
    fail("kl cycle_steps must be >= 1, got " + std::to_string(kl.cycle_steps));
  if (kl.kind == KlScheduleKind::kCyclical && !(kl.cycle_ratio >= 0.0f && kl.cycle_ratio <= 1.0f))
    fail("kl cycle_ratio must lie in [0, 1]");
}

// The training set must match the model and hold at least one batch.
inline void check_train_data(const Dataset& data, const TrainConfig& config) {
  if (data.dim != config.model.input_dim)
    throw std::invalid_argument(data.source + ": rows have " + std::to_string(data.dim) +
                                " values, the model expects input_dim " +
                                std::to_string(config.model.input_dim));
  if (data.rows < config.batch_size)
    throw std::invalid_argument(data.source + ": " + std::to_string(data.rows) +
                                " rows, fewer than one batch of " +
                                std::to_string(config.batch_size));
}

inline void check_evaluation_input(const Dataset& data, int input_dim, int iwae_samples) {
  if (data.dim != input_dim)
    throw std::invalid_argument(data.source + ": rows have " + std::to_string(data.dim) +
                                " values, the model expects input_dim " +
                                std::to_string(input_dim));
  if (iwae_samples < 0) throw std::invalid_argument("evaluate: IWAE samples must be >= 0");
}

inline EvalResult sized_eval_result(int rows, int iwae_samples) {
  EvalResult result;
  result.recon.resize(rows);
  result.kl.resize(rows);
  result.elbo.resize(rows);
  if (iwae_samples > 0) result.iwae.resize(rows);
  return result;
}

inline double mean_in_double(const std::vector<float>& values) {
  double sum = 0.0;
  for (float v : values) sum += v;
  return values.empty() ? 0.0 : sum / static_cast<double>(values.size());
}

inline void fill_eval_means(EvalResult* result) {
  result->mean_recon = mean_in_double(result->recon);
  result->mean_kl = mean_in_double(result->kl);
  result->mean_elbo = mean_in_double(result->elbo);
  result->mean_iwae = mean_in_double(result->iwae);
}

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

// The Monte-Carlo part of evaluate(), the same for every trainer: in each chunk of rows, sample
// k = 0 gives the one-sample ELBO and samples k = 1..K the IWAE log weights, whose log-mean-exp
// finishes the chunk. Scratch is sized once for the largest chunk.
class MonteCarloEval {
 public:
  MonteCarloEval(EvalResult* result, int chunk_rows, int iwae_samples, int latent_dim,
                 LogvarClamp clamp)
      : result_(result),
        iwae_samples_(iwae_samples),
        latent_dim_(latent_dim),
        clamp_(clamp),
        log_weights_(chunk_rows, std::vector<double>(std::max(iwae_samples, 1))) {}

  // recon: [rows] of the sampled z; z, eps, logvar: [rows, latent], read for k >= 1 only.
  void add_sample(int k, int first, int rows, const float* recon, const float* z, const float* eps,
                  const float* logvar) {
    for (int r = 0; r < rows; ++r) {
      if (k == 0) {
        result_->elbo[first + r] = -(recon[r] + result_->kl[first + r]);
        continue;
      }
      const size_t at = static_cast<size_t>(r) * latent_dim_;
      log_weights_[r][k - 1] =
          iwae_log_weight(recon[r], z + at, eps + at, logvar + at, latent_dim_, clamp_);
    }
  }

  void finish_chunk(int first, int rows) {
    if (iwae_samples_ == 0) return;
    for (int r = 0; r < rows; ++r)
      result_->iwae[first + r] = static_cast<float>(log_mean_exp(log_weights_[r]));
  }

 private:
  EvalResult* result_;
  int iwae_samples_;
  int latent_dim_;
  LogvarClamp clamp_;
  std::vector<std::vector<double>> log_weights_;
};

}  // namespace fusedvae
