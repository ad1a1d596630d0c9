// @brief The flat parameter layout of the MLP VAE, its PyTorch-style initialisation and validation.
#include "host/model/model_config.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace fusedvae {
namespace {

// Appends one nn.Linear (weight then bias) at the end of the buffer.
LinearLayer carve(const std::string& name, int in, int out, size_t* cursor) {
  LinearLayer layer;
  layer.name = name;
  layer.in = in;
  layer.out = out;
  layer.weight_offset = *cursor;
  *cursor += static_cast<size_t>(in) * out;
  layer.bias_offset = *cursor;
  *cursor += static_cast<size_t>(out);
  return layer;
}

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

std::vector<const LinearLayer*> ParamLayout::all() const {
  std::vector<const LinearLayer*> layers;
  for (const auto& l : encoder_hidden) layers.push_back(&l);
  layers.push_back(&mu);
  layers.push_back(&logvar);
  for (const auto& l : decoder_hidden) layers.push_back(&l);
  layers.push_back(&out);
  return layers;
}

// Hidden layers are numbered 0, 1, ... (a ModuleList of Linear layers, activations not counted).
ParamLayout make_param_layout(const ModelConfig& config) {
  validate(config);
  ParamLayout layout;
  size_t cursor = 0;
  int width = config.input_dim;
  for (size_t i = 0; i < config.hidden.size(); ++i) {
    layout.encoder_hidden.push_back(
        carve("encoder." + std::to_string(i), width, config.hidden[i], &cursor));
    width = config.hidden[i];
  }
  layout.mu = carve("encoder.mu", width, config.latent_dim, &cursor);
  layout.logvar = carve("encoder.logvar", width, config.latent_dim, &cursor);
  width = config.latent_dim;
  for (size_t i = 0; i < config.hidden.size(); ++i) {
    const int out = config.hidden[config.hidden.size() - 1 - i];
    layout.decoder_hidden.push_back(carve("decoder." + std::to_string(i), width, out, &cursor));
    width = out;
  }
  layout.out = carve("decoder.out", width, config.input_dim, &cursor);
  layout.total = cursor;
  return layout;
}

void init_params_like_pytorch(const ParamLayout& layout, uint64_t seed, float* params) {
  uint64_t state = seed;
  for (const LinearLayer* layer : layout.all()) {
    const float bound = 1.0f / std::sqrt(static_cast<float>(layer->in));
    const size_t weights = static_cast<size_t>(layer->in) * layer->out;
    for (size_t i = 0; i < weights; ++i)
      params[layer->weight_offset + i] = uniform_symmetric(&state, bound);
    for (int i = 0; i < layer->out; ++i)
      params[layer->bias_offset + i] = uniform_symmetric(&state, bound);
  }
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
