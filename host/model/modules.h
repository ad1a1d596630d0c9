// @brief The building blocks of an architecture, as data: a module has a kind, a PyTorch name and
// its feature sizes; what it owns in the flat parameter buffer (its tensors, their shapes and their
// initialisation) follows from its kind alone.
//
// A new kind of module is one entry in the table of modules.cpp (its tensors and initial bound)
// and one line in host/train/module_registry.cpp (its forward and backward on each backend).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/op_params.h"

namespace fusedvae {

enum class ModuleKind : int {
  kLinear = 0,      // nn.Linear: weight [out, in], bias [out]; y = x W^T + b
  kActivation = 1,  // elementwise `activation`, no parameters; in == out
};

struct Module {
  ModuleKind kind = ModuleKind::kLinear;
  std::string name;  // PyTorch prefix of its tensors ("encoder.0", "decoder.out")
  int in = 0;        // features in
  int out = 0;       // features out
  Activation activation = Activation::kRelu;  // kActivation only
};

Module linear_module(const std::string& name, int in, int out);
Module activation_module(const std::string& name, int features, Activation activation);

// One tensor of a module, without its place in the buffer: "<module>.<suffix>" and its shape.
struct TensorShape {
  std::string suffix;  // "weight", "bias"
  std::vector<int64_t> shape;
};

// What a kind of module is, apart from its arithmetic (that lives with each backend).
struct ModuleDefinition {
  const char* kind_name;  // "linear", "activation": error messages and descriptions
  // Its tensors, in the order they are carved (and initialised).
  std::vector<TensorShape> (*tensors)(const Module& module);
  // PyTorch's default initialisation bound: every tensor ~ U(-bound, bound).
  float (*init_bound)(const Module& module);
};

const ModuleDefinition& definition_of(ModuleKind kind);

}  // namespace fusedvae
