// @brief DyAD's module list (docs/dyad_model.md, "Parameters").
#include "host/model/dyad_model.h"

#include <stdexcept>
#include <string>

#include "host/model/gru_module.h"

namespace fusedvae {

std::vector<int> DyadModelConfig::response_channels() const {
  std::vector<int> response;
  for (int c = 0; c < channels; ++c) {
    bool is_input = false;
    for (int d : decoder_channels) is_input = is_input || d == c;
    if (!is_input) response.push_back(c);
  }
  return response;
}

void validate(const DyadModelConfig& config) {
  auto fail = [](const std::string& why) { throw std::invalid_argument("dyad model: " + why); };
  auto at_least_one = [&](const char* what, int value) {
    if (value < 1) fail(std::string(what) + " must be >= 1, got " + std::to_string(value));
  };
  at_least_one("channels", config.channels);
  at_least_one("steps", config.steps);
  at_least_one("hidden", config.hidden);
  at_least_one("layers", config.layers);
  at_least_one("latent", config.latent);
  if (config.decoder_channels.empty()) fail("the decoder needs at least one input channel");
  for (size_t i = 0; i < config.decoder_channels.size(); ++i) {
    const int c = config.decoder_channels[i];
    if (c < 0 || c >= config.channels)
      fail("decoder channel " + std::to_string(c) + " outside [0, " +
           std::to_string(config.channels) + ")");
    for (size_t j = 0; j < i; ++j)
      if (config.decoder_channels[j] == c) fail("decoder channel " + std::to_string(c) + " twice");
  }
  if (config.responses() < 1)
    fail("every channel is a decoder input: no response channel is left to predict");
}

std::vector<const Module*> DyadArchitecture::modules() const {
  std::vector<const Module*> all = {&encoder_rnn,   &hidden2mean, &hidden2log_v,
                                    &latent2hidden, &decoder_rnn, &outputs2response};
  for (const Module& m : mean2mileage) all.push_back(&m);
  return all;
}

DyadArchitecture dyad_architecture(const DyadModelConfig& config) {
  validate(config);
  const int states = config.final_states() * config.hidden;
  const int dirs_hidden = config.directions() * config.hidden;
  DyadArchitecture arch;
  arch.encoder_rnn = gru_module("encoder_rnn", config.channels, config.hidden, config.layers,
                                config.bidirectional);
  arch.hidden2mean = linear_module("hidden2mean", states, config.latent);
  arch.hidden2log_v = linear_module("hidden2log_v", states, config.latent);
  arch.latent2hidden = linear_module("latent2hidden", config.latent, states);
  arch.decoder_rnn = gru_module("decoder_rnn", config.decoder_inputs(), config.hidden,
                                config.layers, config.bidirectional);
  arch.outputs2response = linear_module("outputs2response", dirs_hidden, config.responses());
  // nn.Sequential(Linear, ReLU, Linear): the ReLU is index 1 and owns no tensor.
  arch.mean2mileage = {
      linear_module("mean2mileage.0", config.latent, config.mileage_hidden()),
      activation_module("mean2mileage.1", config.mileage_hidden(), Activation::kRelu),
      linear_module("mean2mileage.2", config.mileage_hidden(), 1)};
  return arch;
}

}  // namespace fusedvae
