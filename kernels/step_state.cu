// @brief Advancing the step state (step, Philox draw, KL weight, learning rate) on the device.
#include "kernels/step_state.h"

#include "kernels/launch.cuh"
#include "kernels/step_state_math.cuh"

namespace fusedvae::gpu {
namespace {

// ---------------------------------------------------------------------------------------------
// CUDA kernels

// One thread: the state is four scalars. A kernel rather than a host write so that the step never
// waits for the host and a captured CUDA graph replays it.
__global__ void advance_step_state_kernel(StepState* state, const KlSchedule kl,
                                          const OptimizerConfig opt, const uint64_t total_steps) {
  math::advance_step_state(*state, kl, opt, total_steps);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Kernel launchers

void advance_step_state(StepState* state, const KlSchedule& kl, const OptimizerConfig& opt,
                        uint64_t total_steps, cudaStream_t stream) {
  launch("advance_step_state_kernel", advance_step_state_kernel, 1, 1, 0, stream, state, kl, opt,
         total_steps);
}

}  // namespace fusedvae::gpu
