// @brief The step state's advance (step, Philox draw, KL weight, learning rate) and the schedules
// behind it, as __host__ __device__ functions of the step: the GPU advances them on the device (no
// host sync, graph-capturable) and the CPU twin shares them.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/op_params.h"
#include "kernels/host_device.cuh"

namespace fusedvae::math {

FUSEDVAE_HD float kl_weight_at(const KlSchedule& s, uint64_t step) {
  const float t = static_cast<float>(step);
  switch (s.kind) {
    case KlScheduleKind::kLinear:
      return s.x0 > 0.0f ? s.weight * (t / s.x0 < 1.0f ? t / s.x0 : 1.0f) : s.weight;
    case KlScheduleKind::kLogistic:
      return s.weight / (1.0f + std::exp(-s.k * (t - s.x0)));
    case KlScheduleKind::kCyclical: {
      const float cycle = static_cast<float>(s.cycle_steps);
      const float phase = static_cast<float>(step % static_cast<uint64_t>(s.cycle_steps)) / cycle;
      const float ramp = s.cycle_ratio > 0.0f ? phase / s.cycle_ratio : 1.0f;
      return s.weight * (ramp < 1.0f ? ramp : 1.0f);
    }
    case KlScheduleKind::kConstant:
    default:
      return s.weight;
  }
}

// Cosine decays from lr to min_lr over total_steps (in lr_stairs flat stretches when > 0, each at
// the value of its first step); constant holds lr.
FUSEDVAE_HD float lr_at(const OptimizerConfig& o, uint64_t step, uint64_t total_steps) {
  if (o.schedule != LrSchedule::kCosine || total_steps == 0) return o.lr;
  double progress = step < total_steps ? static_cast<double>(step) / total_steps : 1.0;
  if (o.lr_stairs > 0 && step < total_steps) {
    const uint64_t stairs = static_cast<uint64_t>(o.lr_stairs);
    progress = static_cast<double>(step * stairs / total_steps) / static_cast<double>(stairs);
  }
  const double cosine = 0.5 * (1.0 + std::cos(3.14159265358979323846 * progress));
  return static_cast<float>(o.min_lr + (o.lr - o.min_lr) * cosine);
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

}  // namespace fusedvae::math
