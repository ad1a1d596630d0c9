// @brief The reconstruction losses' scalar formulas (loss and gradient of one feature), written
// once for the CUDA kernel (recon_loss.cu) and its CPU twin; templated on the scalar type, so the
// finite-difference tests (tests/test_vae_math.cpp) instantiate them with double.
#pragma once

#include <cmath>
#include <type_traits>

#include "kernels/host_device.cuh"
#include "kernels/op_params.h"

namespace fusedvae::math {

// Reconstruction losses: each returns the loss of one feature and its derivative with respect to
// the decoder output x, given the target y.

template <typename T>
struct LossAndGrad {
  T loss;
  T grad;
};

// Logistic sigmoid without overflow for large |x|, given e = exp(-|x|): 1 / (1 + e) for x >= 0,
// e / (1 + e) below. Written as one expression (a select, then one division) so that the CPU
// twin's loop vectorises; the values are those of the two-branch form.
template <typename T>
FUSEDVAE_HD T sigmoid_from_exp_neg_abs(T x, T e) {
  return (x >= T(0) ? T(1) : e) / (T(1) + e);
}

template <typename T>
FUSEDVAE_HD T sigmoid(T x) {
  return sigmoid_from_exp_neg_abs(x, std::exp(-std::fabs(x)));
}

// Bernoulli negative log-likelihood of target y given logit x, in the stable form
//   max(x, 0) - x*y + log1p(exp(-|x|)),  d/dx = sigmoid(x) - y,
// with one exp shared by the loss and the sigmoid.
template <typename T>
FUSEDVAE_HD LossAndGrad<T> bernoulli_logits(T x, T y) {
  const T e = std::exp(-std::fabs(x));
  const T loss = (x > T(0) ? x : T(0)) - x * y + std::log1p(e);
  return {loss, sigmoid_from_exp_neg_abs(x, e) - y};
}

// 1/2 log(2 pi): the Gaussian NLL's constant, so that ELBOs are in nats.
template <typename T>
FUSEDVAE_HD T half_log_two_pi() {
  return T(0.91893853320467274178032973640562);
}

// Gaussian negative log-likelihood with fixed sigma:
//   (x - y)^2 / (2 sigma^2) + log(sigma) + 1/2 log(2 pi),  d/dx = (x - y) / sigma^2.
template <typename T>
FUSEDVAE_HD LossAndGrad<T> gaussian_nll(T x, T y, T sigma) {
  const T r = (x - y) / sigma;
  return {T(0.5) * r * r + std::log(sigma) + half_log_two_pi<T>(), r / sigma};
}

// Plain squared error (x - y)^2,  d/dx = 2 (x - y).
template <typename T>
FUSEDVAE_HD LossAndGrad<T> squared_error(T x, T y) {
  const T r = x - y;
  return {r * r, T(2) * r};
}

// SmoothL1 with threshold beta (PyTorch's definition): 0.5 r^2 / beta where |r| < beta, else
// |r| - 0.5 beta. beta = 0 is plain L1, whose derivative at r = 0 is taken as 0.
template <typename T>
FUSEDVAE_HD LossAndGrad<T> smooth_l1(T x, T y, T beta) {
  const T r = x - y;
  const T a = std::fabs(r);
  if (a < beta) return {T(0.5) * r * r / beta, r / beta};
  const T sign = r > T(0) ? T(1) : (r < T(0) ? T(-1) : T(0));
  return {a - T(0.5) * beta, sign};
}

// One feature's reconstruction loss and gradient for a loss chosen at compile time (the kernels are
// instantiated per kind so the inner loop carries no branch on it).
template <ReconLossKind kKind, typename T>
FUSEDVAE_HD LossAndGrad<T> recon_term(T x, T y, const ReconLoss& params) {
  if constexpr (kKind == ReconLossKind::kBernoulliLogits) return bernoulli_logits(x, y);
  if constexpr (kKind == ReconLossKind::kGaussian)
    return gaussian_nll(x, y, static_cast<T>(params.gaussian_sigma));
  if constexpr (kKind == ReconLossKind::kMse) return squared_error(x, y);
  if constexpr (kKind == ReconLossKind::kSmoothL1)
    return smooth_l1(x, y, static_cast<T>(params.smooth_l1_beta));
}

// Calls f(std::integral_constant<ReconLossKind, kind>{}): turns the run-time choice of loss into
// the compile-time one that recon_term wants, in one place for the kernels and the CPU twin.
template <typename F>
decltype(auto) with_recon_kind(ReconLossKind kind, F&& f) {
  switch (kind) {
    case ReconLossKind::kGaussian:
      return f(std::integral_constant<ReconLossKind, ReconLossKind::kGaussian>{});
    case ReconLossKind::kMse:
      return f(std::integral_constant<ReconLossKind, ReconLossKind::kMse>{});
    case ReconLossKind::kSmoothL1:
      return f(std::integral_constant<ReconLossKind, ReconLossKind::kSmoothL1>{});
    case ReconLossKind::kBernoulliLogits:
    default:
      return f(std::integral_constant<ReconLossKind, ReconLossKind::kBernoulliLogits>{});
  }
}

}  // namespace fusedvae::math
