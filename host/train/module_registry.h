// @brief From a list of modules to the layers a backend runs: the one place where module kinds
// meet their implementations on each backend.
#pragma once

#include <memory>
#include <vector>

#include "host/model/model_config.h"
#include "host/train/backend.h"

namespace fusedvae {

// Makes one layer of `module` on a backend, bound to its parameters and gradients (the module's
// first tensor in each flat buffer).
using LayerFactory = std::unique_ptr<LayerRun> (*)(Backend& backend, const Module& module,
                                                   const LayerContext& context, const float* params,
                                                   float* grads);

// Makes the recurrent layer of a sequence module (a GRU) on a backend, likewise bound.
using SequenceFactory = std::unique_ptr<SequenceRun> (*)(Backend& backend, const Module& module,
                                                         const float* params, float* grads);

// The layers of a stack of modules, in order. An activation module is fused into the layer before
// it (its output_act) and named as the next layer's input_act; the first layer's input needs a
// gradient only when `input_needs_grad`.
std::vector<std::unique_ptr<LayerRun>> build_stack(Backend& backend,
                                                   const std::vector<Module>& modules,
                                                   const ParamLayout& layout, float* params,
                                                   float* grads, bool input_needs_grad);

// The parameters of each layer build_stack makes of `modules`, in the same order.
std::vector<ParamSlice> stack_param_slices(const std::vector<Module>& modules,
                                           const ParamLayout& layout);

// One layer with an explicit context (the VAE's heads, which share their input).
std::unique_ptr<LayerRun> build_layer(Backend& backend, const Module& module,
                                      const LayerContext& context, const ParamLayout& layout,
                                      float* params, float* grads);

// The recurrent layer of a sequence module (a GRU).
std::unique_ptr<SequenceRun> build_sequence_layer(Backend& backend, const Module& module,
                                                  const ParamLayout& layout, float* params,
                                                  float* grads);

}  // namespace fusedvae
