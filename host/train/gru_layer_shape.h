// @brief The GRU layer's shape on either backend (host/train/cpu/gru_layer_cpu.cpp,
// host/train/gpu/gru_layer_gpu.cpp): the module's sizes with a batch and a sequence length, which
// stays the one it was first prepared for.
#pragma once

#include <stdexcept>
#include <string>

#include "host/model/modules.h"
#include "host/ops/gru_cpu.h"

namespace fusedvae {

// *prepared_steps: 0 until the first call, then the length every later call must ask for.
inline cpu::GruShape gru_layer_shape(const Module& module, int batch, int steps,
                                     int* prepared_steps) {
  if (*prepared_steps != 0 && steps != *prepared_steps)
    throw std::logic_error("GRU " + module.name + ": prepared for " +
                           std::to_string(*prepared_steps) + " steps, asked for " +
                           std::to_string(steps));
  *prepared_steps = steps;
  cpu::GruShape shape;
  shape.batch = batch;
  shape.steps = steps;
  shape.input = module.in;
  shape.hidden = module.hidden;
  shape.layers = module.layers;
  shape.bidirectional = module.bidirectional;
  return shape;
}

}  // namespace fusedvae
