// @brief The MLP VAE's architecture and the layout of its parameters in one flat buffer.
//
// Encoder: input D -> hidden layers (activation) -> two heads, mu and logvar, of size d.
// Decoder: d -> hidden layers (activation) -> D outputs (logits for Bernoulli, means otherwise).
// Every layer is a PyTorch nn.Linear: weight [out, in] row-major, then bias [out]; y = x W^T + b.
// All parameters live in one float buffer carved in the order below; the gradient buffer mirrors
// it, so the optimizer walks flat memory in one launch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/op_params.h"

namespace fusedvae {

// Activation, activation_name and parse_activation live in kernels/op_params.h.

struct ModelConfig {
  int input_dim = 784;
  std::vector<int> hidden = {400};  // encoder widths; the decoder mirrors them in reverse order
  int latent_dim = 20;
  Activation activation = Activation::kRelu;
  ReconLoss recon;
  LogvarClamp clamp;
};

// One nn.Linear inside the flat buffer.
struct LinearLayer {
  std::string name;  // PyTorch prefix, e.g. "encoder.0", "encoder.mu", "decoder.out"
  int in = 0;
  int out = 0;
  size_t weight_offset = 0;  // [out, in]
  size_t bias_offset = 0;    // [out]
};

// Layers in the order they are carved: encoder.0.., encoder.mu, encoder.logvar, decoder.0..,
// decoder.out. safetensors names are "<name>.weight" and "<name>.bias".
struct ParamLayout {
  std::vector<LinearLayer> encoder_hidden;
  LinearLayer mu;
  LinearLayer logvar;
  std::vector<LinearLayer> decoder_hidden;
  LinearLayer out;
  size_t total = 0;  // floats in the flat buffer

  std::vector<const LinearLayer*> all() const;  // carving order
};

ParamLayout make_param_layout(const ModelConfig& config);

// nn.Linear's default initialisation: weight and bias ~ U(-1/sqrt(in), 1/sqrt(in)), drawn from a
// seeded generator in carving order (reproducible, not bit-identical to torch's own generator).
void init_params_like_pytorch(const ParamLayout& layout, uint64_t seed, float* params);

// Throws std::invalid_argument with a one-line reason for sizes < 1 and the like.
void validate(const ModelConfig& config);

}  // namespace fusedvae
