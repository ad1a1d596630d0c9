// @brief The kinds of module: their tensors and their initialisation.
#include "host/model/modules.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace fusedvae {
namespace {

std::vector<TensorShape> linear_tensors(const Module& m) {
  return {{"weight", {m.out, m.in}}, {"bias", {m.out}}};
}
// nn.Linear's reset_parameters: weight and bias ~ U(-1/sqrt(in), 1/sqrt(in)).
float linear_init_bound(const Module& m) {
  return 1.0f / std::sqrt(static_cast<float>(m.in));
}

std::vector<TensorShape> no_tensors(const Module&) {
  return {};
}
float no_init(const Module&) {
  return 0.0f;
}

// The registry of module kinds, indexed by ModuleKind.
const ModuleDefinition kDefinitions[] = {
    {"linear", linear_tensors, linear_init_bound},
    {"activation", no_tensors, no_init},
};

}  // namespace

Module linear_module(const std::string& name, int in, int out) {
  Module m;
  m.kind = ModuleKind::kLinear;
  m.name = name;
  m.in = in;
  m.out = out;
  return m;
}

Module activation_module(const std::string& name, int features, Activation activation) {
  Module m;
  m.kind = ModuleKind::kActivation;
  m.name = name;
  m.in = features;
  m.out = features;
  m.activation = activation;
  return m;
}

const ModuleDefinition& definition_of(ModuleKind kind) {
  const int index = static_cast<int>(kind);
  if (index < 0 || index >= static_cast<int>(std::size(kDefinitions)))
    throw std::invalid_argument("unknown module kind " + std::to_string(index));
  return kDefinitions[index];
}

}  // namespace fusedvae
