// @brief The reparameterization's and the KL's scalar formulas, written once for the CUDA kernels
// (reparam_kl.cu, free_bits.cu) and their CPU twins.
//
// Every function is __host__ __device__ and templated on the scalar type: the ops instantiate them
// with float, and the finite-difference tests instantiate them with double to pin each derivative
// (tests/test_vae_math.cpp). The correct forms, which the seed chapter (README, Conventions) got
// wrong in places: KL = -1/2 sum(1 + logvar - mu^2 - exp(logvar)) >= 0; for z = mu + sigma * eps,
// dz/dmu = 1, dz/dsigma = eps and dz/dlogvar = sigma * eps / 2; dKL/dmu = mu and
// dKL/dlogvar = (exp(logvar) - 1) / 2.
#pragma once

#include <cmath>

#include "kernels/host_device.cuh"

namespace fusedvae::math {

template <typename T>
FUSEDVAE_HD T clamp_logvar(T logvar, T lo, T hi) {
  return logvar < lo ? lo : (logvar > hi ? hi : logvar);
}

// 1 where the clamp passes logvar through (the gradient flows), 0 where it is active. The range
// ends belong to the pass-through region, so a logvar sitting exactly on a bound still learns.
template <typename T>
FUSEDVAE_HD T clamp_pass(T logvar, T lo, T hi) {
  return (logvar < lo || logvar > hi) ? T(0) : T(1);
}

// sigma = exp(logvar / 2): the standard deviation of q(z|x).
template <typename T>
FUSEDVAE_HD T stddev_from_logvar(T logvar) {
  return std::exp(logvar * T(0.5));
}

// z = mu + sigma * eps. dz/dmu = 1 (not sigma*eps as the chapter says), dz/dsigma = eps.
template <typename T>
FUSEDVAE_HD T reparameterize(T mu, T logvar, T eps) {
  return mu + stddev_from_logvar(logvar) * eps;
}

// dz/dlogvar = sigma * eps / 2.
template <typename T>
FUSEDVAE_HD T dz_dlogvar(T logvar, T eps) {
  return stddev_from_logvar(logvar) * eps * T(0.5);
}

// KL(N(mu, sigma^2) || N(0, 1)) for one latent dimension:
//   -1/2 (1 + logvar - mu^2 - exp(logvar)) = 1/2 (mu^2 + exp(logvar) - logvar - 1) >= 0.
// Written with expm1 so that exp(logvar) - 1 keeps its digits when logvar is near 0, where the
// term is smallest and cancellation would otherwise dominate.
template <typename T>
FUSEDVAE_HD T kl_term(T mu, T logvar) {
  return T(0.5) * (mu * mu + (std::expm1(logvar) - logvar));
}

// dKL/dmu = mu.
template <typename T>
FUSEDVAE_HD T dkl_dmu(T mu) {
  return mu;
}

// dKL/dlogvar = (exp(logvar) - 1) / 2.
template <typename T>
FUSEDVAE_HD T dkl_dlogvar(T logvar) {
  return T(0.5) * std::expm1(logvar);
}

}  // namespace fusedvae::math
