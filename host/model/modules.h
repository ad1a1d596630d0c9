// @brief The building blocks of an architecture, as data: a module has a kind, a PyTorch name and
// its feature sizes; what it owns in the flat parameter buffer (its tensors, their shapes and their
// initialisation) follows from its kind alone.
//
// A kind is a ModuleDefinition. A new kind of module is its definition and builder in a file of
// its own beside this one (gru_module.h), its layer on each backend (host/train/cpu/,
// host/train/gpu/), and one line in host/train/module_registry.cpp that names them together.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/op_params.h"

namespace fusedvae {

struct Module;

// One tensor of a module, without its place in the buffer: "<module>.<suffix>" and its shape.
struct TensorShape {
  std::string suffix;  // "weight", "bias"
  std::vector<int64_t> shape;
};

// What a kind of module is, apart from its arithmetic (that lives with each backend). Modules
// point to their kind's one definition, which is also what identifies the kind.
struct ModuleDefinition {
  const char* kind_name;  // "linear", "activation": error messages and descriptions
  // Its tensors, in the order they are carved (and initialised).
  std::vector<TensorShape> (*tensors)(const Module& module);
  // PyTorch's default initialisation bound: every tensor ~ U(-bound, bound).
  float (*init_bound)(const Module& module);
};

struct Module {
  const ModuleDefinition* kind = nullptr;
  std::string name;  // PyTorch prefix of its tensors ("encoder.0", "decoder.out")
  int in = 0;        // features in
  int out = 0;       // features out
  Activation activation = Activation::kIdentity;  // activation modules only
  // Recurrent modules only (host/model/gru_module.h): out = (bidirectional ? 2 : 1) * hidden.
  int hidden = 0;
  int layers = 0;
  bool bidirectional = false;

  bool is(const ModuleDefinition& definition) const { return kind == &definition; }
};

// nn.Linear: weight [out, in], bias [out]; y = x W^T + b.
const ModuleDefinition& linear_definition();
Module linear_module(const std::string& name, int in, int out);

// An elementwise activation, no parameters; in == out.
const ModuleDefinition& activation_definition();
Module activation_module(const std::string& name, int features, Activation activation);

}  // namespace fusedvae
