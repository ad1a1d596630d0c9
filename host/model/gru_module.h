// @brief The GRU as a module kind (PyTorch's nn.GRU, batch_first): its tensors, with nn.GRU's
// names and shapes, and its initialisation.
//
// A sequence module: it maps [batch, steps, in] to [batch, steps, out]. Its arithmetic is the GRU
// op (host/ops/gru_cpu.h, whose flat parameter order is this carving); on each backend it is a
// SequenceRun (host/train/backend.h), registered in host/train/module_registry.cpp.
#pragma once

#include <string>

#include "host/model/modules.h"

namespace fusedvae {

// Per layer k, per direction (forward, then "_reverse"): weight_ih_l{k} [3H, in_k],
// weight_hh_l{k} [3H, H], bias_ih_l{k} [3H], bias_hh_l{k} [3H], gate order r, z, n; in_0 = in,
// in_k = dirs * H above. All ~ U(-1/sqrt(H), 1/sqrt(H)), as nn.GRU's reset_parameters.
const ModuleDefinition& gru_definition();
Module gru_module(const std::string& name, int in, int hidden, int layers, bool bidirectional);

}  // namespace fusedvae
