// @brief CPU twin of the fused AdamW update: the same scalar math, element by element on the pool.
#include "host/ops/adamw_cpu.h"

#include "host/ops/parallel_cpu.h"
#include "kernels/adamw_math.cuh"

namespace fusedvae::cpu {

void adamw_update(float* params, float* m, float* v, const float* grads, size_t count,
                  const StepState* state, const OptimizerConfig& opt, const float* grad_scale) {
  const math::AdamStepScalars s =
      math::adam_step_scalars(opt, *state, grad_scale ? *grad_scale : 1.0f);
#pragma omp parallel for schedule(static) if (worth_threads(count))
  for (size_t i = 0; i < count; ++i) math::adamw_update(params[i], m[i], v[i], grads[i], s);
}

}  // namespace fusedvae::cpu
