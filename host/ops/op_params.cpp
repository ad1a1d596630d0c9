// @brief Names of the reconstruction losses, as the CLI, configs and checkpoints spell them.
#include "kernels/op_params.h"

#include <cstring>

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

}  // namespace fusedvae
