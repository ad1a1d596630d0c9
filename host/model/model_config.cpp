// @brief The MLP VAE's module lists, the flat parameter layout derived from any architecture, its
// PyTorch-style initialisation and the validation of a configuration.
#include "host/model/model_config.h"

#include <stdexcept>
#include <string>

namespace fusedvae {
namespace {

// SplitMix64: a tiny, fully specified generator, so the initial weights are the same on every
// platform and standard library (std::uniform_real_distribution is implementation defined).
uint64_t splitmix64(uint64_t* state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Uniform in [-bound, bound) from the top 24 bits: exactly representable in float.
float uniform_symmetric(uint64_t* state, float bound) {
  const float unit = static_cast<float>(splitmix64(state) >> 40) * (1.0f / 16777216.0f);
  return (2.0f * unit - 1.0f) * bound;
}

}  // namespace

std::vector<const Module*> VaeArchitecture::modules() const {
  std::vector<const Module*> all;
  for (const Module& m : encoder) all.push_back(&m);
  all.push_back(&mu);
  all.push_back(&logvar);
  for (const Module& m : decoder) all.push_back(&m);
  return all;
}

// Hidden layers are numbered 0, 1, ... (a ModuleList of Linear layers, activations not counted).
VaeArchitecture mlp_vae(const ModelConfig& config) {
  validate(config);
  VaeArchitecture arch;
  int width = config.input_dim;
  for (size_t i = 0; i < config.hidden.size(); ++i) {
    const std::string name = "encoder." + std::to_string(i);
    arch.encoder.push_back(linear_module(name, width, config.hidden[i]));
    arch.encoder.push_back(activation_module(name + ".act", config.hidden[i], config.activation));
    width = config.hidden[i];
  }
  arch.mu = linear_module("encoder.mu", width, config.latent_dim);
  arch.logvar = linear_module("encoder.logvar", width, config.latent_dim);
  width = config.latent_dim;
  for (size_t i = 0; i < config.hidden.size(); ++i) {
    const int out = config.hidden[config.hidden.size() - 1 - i];
    const std::string name = "decoder." + std::to_string(i);
    arch.decoder.push_back(linear_module(name, width, out));
    arch.decoder.push_back(activation_module(name + ".act", out, config.activation));
    width = out;
  }
  arch.decoder.push_back(linear_module("decoder.out", width, config.input_dim));
  return arch;
}

size_t ParamTensor::size() const {
  size_t n = 1;
  for (int64_t d : shape) n *= static_cast<size_t>(d);
  return n;
}

size_t ParamLayout::offset_of(const Module& module) const {
  const std::string prefix = module.name + ".";
  for (const ParamTensor& t : tensors)
    if (t.name.compare(0, prefix.size(), prefix) == 0) return t.offset;
  throw std::invalid_argument("parameter layout: module " + module.name + " owns no tensor");
}

ParamSlice ParamLayout::slice_of(const Module& module) const {
  const std::string prefix = module.name + ".";
  ParamSlice slice{offset_of(module), 0};
  for (const ParamTensor& t : tensors)
    if (t.name.compare(0, prefix.size(), prefix) == 0) slice.count += t.size();
  return slice;
}

const ParamTensor& ParamLayout::at(const std::string& name) const {
  for (const ParamTensor& t : tensors)
    if (t.name == name) return t;
  throw std::invalid_argument("parameter layout: no tensor " + name);
}

ParamLayout make_param_layout(const std::vector<const Module*>& modules) {
  ParamLayout layout;
  for (const Module* m : modules)
    for (const TensorShape& t : m->kind->tensors(*m)) {
      ParamTensor tensor{m->name + "." + t.suffix, t.shape, layout.total};
      layout.total += tensor.size();
      layout.tensors.push_back(std::move(tensor));
    }
  return layout;
}

ParamLayout make_param_layout(const VaeArchitecture& architecture) {
  return make_param_layout(architecture.modules());
}

ParamLayout make_param_layout(const ModelConfig& config) {
  return make_param_layout(mlp_vae(config));
}

void init_params_like_pytorch(const std::vector<const Module*>& modules, uint64_t seed,
                              float* params) {
  uint64_t state = seed;
  float* cursor = params;
  for (const Module* m : modules) {
    const ModuleDefinition& def = *m->kind;
    const float bound = def.init_bound(*m);
    for (const TensorShape& t : def.tensors(*m)) {
      const size_t count = ParamTensor{"", t.shape, 0}.size();
      for (size_t i = 0; i < count; ++i) *cursor++ = uniform_symmetric(&state, bound);
    }
  }
}

void init_params_like_pytorch(const VaeArchitecture& architecture, uint64_t seed, float* params) {
  init_params_like_pytorch(architecture.modules(), seed, params);
}

void validate(const ModelConfig& config) {
  auto fail = [](const std::string& why) { throw std::invalid_argument("model config: " + why); };
  if (config.input_dim < 1) fail("input_dim must be >= 1, got " + std::to_string(config.input_dim));
  if (config.latent_dim < 1)
    fail("latent_dim must be >= 1, got " + std::to_string(config.latent_dim));
  for (size_t i = 0; i < config.hidden.size(); ++i)
    if (config.hidden[i] < 1)
      fail("hidden layer " + std::to_string(i) + " must have width >= 1, got " +
           std::to_string(config.hidden[i]));
  if (config.activation != Activation::kRelu && config.activation != Activation::kTanh)
    fail("unknown activation " + std::to_string(static_cast<int>(config.activation)));
  if (!(config.clamp.min < config.clamp.max))
    fail("logvar clamp needs min < max, got [" + std::to_string(config.clamp.min) + ", " +
         std::to_string(config.clamp.max) + "]");
  if (config.recon.kind == ReconLossKind::kGaussian && !(config.recon.gaussian_sigma > 0.0f))
    fail("gaussian sigma must be > 0, got " + std::to_string(config.recon.gaussian_sigma));
  if (config.recon.kind == ReconLossKind::kSmoothL1 && !(config.recon.smooth_l1_beta >= 0.0f))
    fail("smooth_l1 beta must be >= 0, got " + std::to_string(config.recon.smooth_l1_beta));
  const int kind = static_cast<int>(config.recon.kind);
  if (kind < 0 || kind > static_cast<int>(ReconLossKind::kSmoothL1))
    fail("unknown reconstruction loss " + std::to_string(kind));
}

}  // namespace fusedvae
