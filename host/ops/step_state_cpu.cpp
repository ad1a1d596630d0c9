// @brief CPU twin of the step-state advance.
#include "host/ops/step_state_cpu.h"

#include "kernels/step_state_math.cuh"

namespace fusedvae::cpu {

void advance_step_state(StepState* state, const KlSchedule& kl, const OptimizerConfig& opt,
                        uint64_t total_steps) {
  math::advance_step_state(*state, kl, opt, total_steps);
}

}  // namespace fusedvae::cpu
