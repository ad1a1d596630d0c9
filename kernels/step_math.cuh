// @brief The scalar math of a training step outside the VAE's own ops: the AdamW step scalars, the
// global-norm clipping factor and the step-state advance, shared by the kernels and the CPU twins.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/op_params.h"
#include "kernels/optimizer_math.cuh"
#include "kernels/schedules.cuh"
#include "kernels/vae_math.cuh"

namespace fusedvae::math {

// The random streams of a run, each keyed by its own Philox seed derived from the run's seed, so
// that no two of them share numbers. The reparameterisation uses the run's seed itself (the tests
// give the reference the same seed).
enum class RngStream : uint64_t { kReparam = 0, kBinarize = 1, kEvaluation = 2 };

FUSEDVAE_HD uint64_t stream_seed(uint64_t seed, RngStream stream) {
  if (stream == RngStream::kReparam) return seed;
  // One SplitMix64 round of seed + stream * golden ratio: distinct streams, well-mixed keys.
  uint64_t z = seed + static_cast<uint64_t>(stream) * 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Added to the norm before dividing, as torch.nn.utils.clip_grad_norm_ does.
constexpr float kClipEpsilon = 1e-6f;

// min(1, max_norm / (norm + 1e-6)); 1 when clipping is off (max_norm <= 0). A non-finite norm gives
// a non-finite factor on purpose: the update then poisons the parameters visibly instead of
// silently skipping the step (the trainer reports the non-finite loss, the CLI stops).
FUSEDVAE_HD float clip_factor(double norm, float max_norm) {
  if (!(max_norm > 0.0f)) return 1.0f;
  const double factor = static_cast<double>(max_norm) / (norm + static_cast<double>(kClipEpsilon));
  const bool is_nan = factor != factor;
  return (factor < 1.0 || is_nan) ? static_cast<float>(factor) : 1.0f;
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

// The state before the first step: step 0, draw 0, the schedules evaluated at step 0.
FUSEDVAE_HD StepState initial_step_state(const KlSchedule& kl, const OptimizerConfig& opt,
                                         uint64_t total_steps) {
  StepState s;
  s.step = 0;
  s.draw_index = 0;
  s.kl_weight = kl_weight_at(kl, 0);
  s.lr = lr_at(opt, 0, total_steps);
  return s;
}

// After a step: one more step taken, the next Philox draw, the schedules for the next step.
// total_steps = 0 means the run length is unknown (train_step_on): cosine then holds lr.
FUSEDVAE_HD void advance_step_state(StepState& s, const KlSchedule& kl, const OptimizerConfig& opt,
                                    uint64_t total_steps) {
  s.step += 1;
  s.draw_index += 1;
  s.kl_weight = kl_weight_at(kl, s.step);
  s.lr = lr_at(opt, s.step, total_steps);
}

// Free bits (Kingma et al. 2016, "Improved variational inference with inverse autoregressive
// flow"): the KL term becomes sum_j max(KL_j, free_bits), KL_j the batch mean of latent dimension
// j's KL. A dimension under the floor gets no KL gradient; at the floor it still learns, as for
// torch.clamp.
FUSEDVAE_HD float free_bits_pass(float kl_dim_mean, float free_bits) {
  return kl_dim_mean >= free_bits ? 1.0f : 0.0f;
}

}  // namespace fusedvae::math
