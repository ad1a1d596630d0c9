// @brief Names of the reconstruction losses and activations, as the CLI, configs and checkpoints
// spell them, and the argument checks of kernels/op_params.h.
#include "kernels/op_params.h"

#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

namespace fusedvae {
namespace {
struct NamedLoss {
  ReconLossKind kind;
  const char* name;
};
constexpr NamedLoss kLossNames[] = {{ReconLossKind::kBernoulliLogits, "bernoulli"},
                                    {ReconLossKind::kGaussian, "gaussian"},
                                    {ReconLossKind::kMse, "mse"},
                                    {ReconLossKind::kSmoothL1, "smooth_l1"}};

struct NamedActivation {
  Activation activation;
  const char* name;
};
constexpr NamedActivation kActivationNames[] = {
    {Activation::kRelu, "relu"}, {Activation::kTanh, "tanh"}, {Activation::kIdentity, "identity"}};
}  // namespace

const char* recon_loss_name(ReconLossKind kind) {
  for (const auto& entry : kLossNames)
    if (entry.kind == kind) return entry.name;
  return "unknown";
}

bool parse_recon_loss_kind(const char* name, ReconLossKind* kind) {
  for (const auto& entry : kLossNames)
    if (std::strcmp(entry.name, name) == 0) {
      *kind = entry.kind;
      return true;
    }
  return false;
}

void check_logvar_clamp(LogvarClamp clamp, const char* op) {
  if (!(std::isfinite(clamp.min) && std::isfinite(clamp.max) && clamp.min <= clamp.max))
    throw std::invalid_argument(std::string(op) + ": logvar clamp needs finite min <= max, got [" +
                                std::to_string(clamp.min) + ", " + std::to_string(clamp.max) + "]");
}

void check_recon_loss(const ReconLoss& loss, const char* op) {
  if (loss.kind == ReconLossKind::kGaussian &&
      !(std::isfinite(loss.gaussian_sigma) && loss.gaussian_sigma > 0.0f))
    throw std::invalid_argument(std::string(op) + ": gaussian sigma must be finite and > 0, got " +
                                std::to_string(loss.gaussian_sigma));
  if (loss.kind == ReconLossKind::kSmoothL1 &&
      !(std::isfinite(loss.smooth_l1_beta) && loss.smooth_l1_beta >= 0.0f))
    throw std::invalid_argument(std::string(op) + ": smooth_l1 beta must be finite and >= 0, got " +
                                std::to_string(loss.smooth_l1_beta));
}

const char* activation_name(Activation a) {
  for (const auto& entry : kActivationNames)
    if (entry.activation == a) return entry.name;
  return "unknown";
}

bool parse_activation(const std::string& name, Activation* a) {
  for (const auto& entry : kActivationNames)
    if (name == entry.name) {
      *a = entry.activation;
      return true;
    }
  return false;
}

}  // namespace fusedvae
