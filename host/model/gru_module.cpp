// @brief The GRU module: nn.GRU's tensors and initialisation.
#include "host/model/gru_module.h"

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <vector>

namespace fusedvae {
namespace {

std::vector<TensorShape> gru_tensors(const Module& m) {
  const int64_t h3 = 3 * static_cast<int64_t>(m.hidden);
  const int dirs = m.bidirectional ? 2 : 1;
  std::vector<TensorShape> tensors;
  for (int layer = 0; layer < m.layers; ++layer) {
    const int64_t in = layer == 0 ? m.in : static_cast<int64_t>(dirs) * m.hidden;
    for (int d = 0; d < dirs; ++d) {
      const std::string suffix = "_l" + std::to_string(layer) + (d == 1 ? "_reverse" : "");
      tensors.push_back({"weight_ih" + suffix, {h3, in}});
      tensors.push_back({"weight_hh" + suffix, {h3, m.hidden}});
      tensors.push_back({"bias_ih" + suffix, {h3}});
      tensors.push_back({"bias_hh" + suffix, {h3}});
    }
  }
  return tensors;
}

// nn.GRU's reset_parameters: every tensor ~ U(-1/sqrt(H), 1/sqrt(H)).
float gru_init_bound(const Module& m) {
  return 1.0f / std::sqrt(static_cast<float>(m.hidden));
}

}  // namespace

const ModuleDefinition& gru_definition() {
  static const ModuleDefinition definition{"gru", gru_tensors, gru_init_bound};
  return definition;
}

Module gru_module(const std::string& name, int in, int hidden, int layers, bool bidirectional) {
  if (in < 1 || hidden < 1 || layers < 1)
    throw std::invalid_argument("gru module " + name +
                                ": in, hidden and layers must be >= 1, got " + std::to_string(in) +
                                ", " + std::to_string(hidden) + ", " + std::to_string(layers));
  Module m;
  m.kind = &gru_definition();
  m.name = name;
  m.in = in;
  m.hidden = hidden;
  m.layers = layers;
  m.bidirectional = bidirectional;
  m.out = (bidirectional ? 2 : 1) * hidden;
  return m;
}

}  // namespace fusedvae
