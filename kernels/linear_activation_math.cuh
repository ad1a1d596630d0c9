// @brief Scalar math of the Linear layers' activations, shared by the kernels and the CPU twins.
#pragma once

#include <cmath>

#include "kernels/linear_activation.h"
#include "kernels/vae_math.cuh"

namespace fusedvae::math {

template <typename T>
FUSEDVAE_HD T apply_linear_act(T pre, LinearAct act) {
  if (act == LinearAct::kRelu) return pre > T(0) ? pre : T(0);
  if (act == LinearAct::kTanh) return std::tanh(pre);
  return pre;
}

// d act / d pre, written in terms of the output y = act(pre) so the backward needs no stored
// pre-activation: ReLU's is 1 where y > 0 (0 at pre = 0, as torch), tanh's is 1 - y^2.
template <typename T>
FUSEDVAE_HD T linear_act_derivative_from_output(T y, LinearAct act) {
  if (act == LinearAct::kRelu) return y > T(0) ? T(1) : T(0);
  if (act == LinearAct::kTanh) return T(1) - y * y;
  return T(1);
}

}  // namespace fusedvae::math
