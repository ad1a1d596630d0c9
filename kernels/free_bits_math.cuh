// @brief Free bits' gate, shared by the free-bits kernels and their CPU twins (the KL itself is in
// reparam_kl_math.cuh).
#pragma once

#include "kernels/host_device.cuh"

namespace fusedvae::math {

// Free bits (Kingma et al. 2016, "Improved variational inference with inverse autoregressive
// flow"): the KL term becomes sum_j max(KL_j, free_bits), KL_j the batch mean of latent dimension
// j's KL. A dimension under the floor gets no KL gradient; at the floor it still learns, as for
// torch.clamp.
FUSEDVAE_HD float free_bits_pass(float kl_dim_mean, float free_bits) {
  return kl_dim_mean >= free_bits ? 1.0f : 0.0f;
}

}  // namespace fusedvae::math
