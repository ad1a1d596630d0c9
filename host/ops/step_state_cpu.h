// @brief CPU twin of the step-state advance (kernels/step_state.h).
#pragma once

#include <cstdint>

#include "kernels/op_params.h"

namespace fusedvae::cpu {

void advance_step_state(StepState* state, const KlSchedule& kl, const OptimizerConfig& opt,
                        uint64_t total_steps);

}  // namespace fusedvae::cpu
