// @brief The global-norm clipping factor, shared by the gradient-norm kernel and its CPU twin.
#pragma once

#include "kernels/host_device.cuh"

namespace fusedvae::math {

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

}  // namespace fusedvae::math
