// @brief DyAD's sequence VAE as a list of modules (docs/dyad_model.md): a bidirectional GRU
// encoder whose final states give mu and logvar, a GRU decoder started from latent2hidden(z) over
// the decoder-input channels, a per-step Linear to the response channels and a mileage head on mu.
// The module names are PyTorch's (python_ref/dyad/dyad_torch.py loads the same safetensors).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "host/model/model_config.h"
#include "host/model/modules.h"

namespace fusedvae {

struct DyadModelConfig {
  int channels = 7;                   // C: every channel, the encoder's input
  std::vector<int> decoder_channels;  // indices of the decoder's input channels, in order
  int steps = 128;                    // T: snippet length
  int hidden = 64;                    // H
  int layers = 1;                     // L
  bool bidirectional = true;
  int latent = 32;  // d

  int directions() const { return bidirectional ? 2 : 1; }
  int final_states() const { return layers * directions(); }                        // F
  int decoder_inputs() const { return static_cast<int>(decoder_channels.size()); }  // Ci
  int responses() const { return channels - decoder_inputs(); }                     // Cr
  int mileage_hidden() const { return hidden / 2 > 1 ? hidden / 2 : 1; }            // M
  // The response channels: every channel not in decoder_channels, in the set's order.
  std::vector<int> response_channels() const;
};

// Throws std::invalid_argument with a one-line reason (sizes < 1, a decoder channel out of range
// or given twice, no response channel left).
void validate(const DyadModelConfig& config);

struct DyadArchitecture {
  Module encoder_rnn;                // GRU(C -> H), L layers
  Module hidden2mean;                // Linear(F H -> d)
  Module hidden2log_v;               // Linear(F H -> d)
  Module latent2hidden;              // Linear(d -> F H)
  Module decoder_rnn;                // GRU(Ci -> H), L layers
  Module outputs2response;           // Linear(dirs H -> Cr), every step
  std::vector<Module> mean2mileage;  // Linear(d -> M), ReLU, Linear(M -> 1)

  std::vector<const Module*> modules() const;  // carving order (docs/dyad_model.md)
};

DyadArchitecture dyad_architecture(const DyadModelConfig& config);

}  // namespace fusedvae
