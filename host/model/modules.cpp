// @brief The Linear and activation modules: their tensors and their initialisation.
#include "host/model/modules.h"

#include <cmath>

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

}  // namespace

const ModuleDefinition& linear_definition() {
  static const ModuleDefinition definition{"linear", linear_tensors, linear_init_bound};
  return definition;
}

Module linear_module(const std::string& name, int in, int out) {
  Module m;
  m.kind = &linear_definition();
  m.name = name;
  m.in = in;
  m.out = out;
  return m;
}

const ModuleDefinition& activation_definition() {
  static const ModuleDefinition definition{"activation", no_tensors, no_init};
  return definition;
}

Module activation_module(const std::string& name, int features, Activation activation) {
  Module m;
  m.kind = &activation_definition();
  m.name = name;
  m.in = features;
  m.out = features;
  m.activation = activation;
  return m;
}

}  // namespace fusedvae
