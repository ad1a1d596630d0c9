// @brief The registry of module kinds and their layers on each backend (one entry per kind: the
// one place a new kind is registered), and the fusion of activations into the layer before them.
#include "host/train/module_registry.h"

#include <stdexcept>
#include <string>

#include "host/model/gru_module.h"

namespace fusedvae {

// Each kind's layers, defined beside their backends (host/train/cpu/, host/train/gpu/).
std::unique_ptr<LayerRun> make_linear_cpu(Backend&, const Module&, const LayerContext&,
                                          const float* params, float* grads);
std::unique_ptr<LayerRun> make_linear_gpu(Backend&, const Module&, const LayerContext&,
                                          const float* params, float* grads);
std::unique_ptr<SequenceRun> make_gru_cpu(Backend&, const Module&, const float* params,
                                          float* grads);
std::unique_ptr<SequenceRun> make_gru_gpu(Backend&, const Module&, const float* params,
                                          float* grads);

namespace {

// A kind of module and its layer on each backend: a layer over rows, or over sequences.
struct ModuleImplementations {
  const ModuleDefinition* kind;
  LayerFactory cpu = nullptr;
  LayerFactory gpu = nullptr;
  SequenceFactory cpu_sequence = nullptr;
  SequenceFactory gpu_sequence = nullptr;
};

// The module kinds with a layer of their own. (Activation modules have none: build_stack fuses
// each into the layer before it.)
const std::vector<ModuleImplementations>& registry() {
  static const std::vector<ModuleImplementations> kinds = {
      {&linear_definition(), make_linear_cpu, make_linear_gpu},
      {&gru_definition(), nullptr, nullptr, make_gru_cpu, make_gru_gpu},
  };
  return kinds;
}

const ModuleImplementations& implementations_of(const Module& module) {
  for (const ModuleImplementations& entry : registry())
    if (entry.kind == module.kind) return entry;
  throw std::invalid_argument(std::string("module ") + module.name + ": no backend implements a " +
                              module.kind->kind_name + " layer on its own");
}

}  // namespace

std::unique_ptr<LayerRun> build_layer(Backend& backend, const Module& module,
                                      const LayerContext& context, const ParamLayout& layout,
                                      float* params, float* grads) {
  const ModuleImplementations& impl = implementations_of(module);
  const LayerFactory factory = backend.kind() == BackendKind::kCpu ? impl.cpu : impl.gpu;
  if (factory == nullptr)
    throw std::invalid_argument("module " + module.name + ": a " + module.kind->kind_name +
                                " maps sequences, not rows");
  const size_t offset = layout.offset_of(module);
  return factory(backend, module, context, params + offset, grads + offset);
}

std::unique_ptr<SequenceRun> build_sequence_layer(Backend& backend, const Module& module,
                                                  const ParamLayout& layout, float* params,
                                                  float* grads) {
  const ModuleImplementations& impl = implementations_of(module);
  const SequenceFactory factory =
      backend.kind() == BackendKind::kCpu ? impl.cpu_sequence : impl.gpu_sequence;
  if (factory == nullptr)
    throw std::invalid_argument("module " + module.name + ": a " + module.kind->kind_name +
                                " maps rows, not sequences");
  const size_t offset = layout.offset_of(module);
  return factory(backend, module, params + offset, grads + offset);
}

std::vector<std::unique_ptr<LayerRun>> build_stack(Backend& backend,
                                                   const std::vector<Module>& modules,
                                                   const ParamLayout& layout, float* params,
                                                   float* grads, bool input_needs_grad) {
  std::vector<std::unique_ptr<LayerRun>> layers;
  Activation input_act = Activation::kIdentity;
  for (size_t i = 0; i < modules.size(); ++i) {
    const Module& module = modules[i];
    if (module.is(activation_definition()))
      throw std::invalid_argument("module " + module.name +
                                  ": an activation must follow a layer with parameters");
    LayerContext context;
    context.input_act = input_act;
    context.needs_input_grad = !layers.empty() || input_needs_grad;
    if (i + 1 < modules.size() && modules[i + 1].is(activation_definition())) {
      context.output_act = modules[i + 1].activation;
      ++i;
    }
    layers.push_back(build_layer(backend, module, context, layout, params, grads));
    input_act = context.output_act;
  }
  return layers;
}

std::vector<ParamSlice> stack_param_slices(const std::vector<Module>& modules,
                                           const ParamLayout& layout) {
  std::vector<ParamSlice> slices;
  for (const Module& module : modules)  // activations are fused into the layer before them
    if (!module.is(activation_definition())) slices.push_back(layout.slice_of(module));
  return slices;
}

}  // namespace fusedvae
