// @brief Hidden-layer activations and their derivatives, shared by the GPU trainer's kernels (tanh
// has no cuBLASLt epilogue) and the CPU twins.
//
// The derivative is written as a function of the activation's output y, not its input: the
// backward pass then needs only the stored activations, never the pre-activations.
#pragma once

#include <cmath>

#include "kernels/op_params.h"
#include "kernels/host_device.cuh"

namespace fusedvae::math {

template <typename T>
FUSEDVAE_HD T activate(Activation a, T x) {
  if (a == Activation::kIdentity) return x;
  if (a == Activation::kTanh) return std::tanh(x);
  return x > T(0) ? x : T(0);
}

// relu'(x) = [y > 0] (0 at x = 0, as PyTorch); tanh'(x) = 1 - y^2.
template <typename T>
FUSEDVAE_HD T activation_grad_from_output(Activation a, T y) {
  if (a == Activation::kIdentity) return T(1);
  if (a == Activation::kTanh) return T(1) - y * y;
  return y > T(0) ? T(1) : T(0);
}

}  // namespace fusedvae::math
