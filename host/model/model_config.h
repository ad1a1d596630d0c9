// @brief The MLP VAE as a list of modules, and the flat parameter buffer derived from it.
//
// Encoder: input D -> hidden layers (activation) -> two heads, mu and logvar, of size d.
// Decoder: d -> hidden layers (activation) -> D outputs (logits for Bernoulli, means otherwise).
// Every layer is a PyTorch nn.Linear: weight [out, in] row-major, then bias [out]; y = x W^T + b.
// The parameter layout, the initialisation and the checkpoint's tensor names all follow from the
// module lists (host/model/modules.h); python_ref/model_spec.py is the same description in Python.
// All parameters live in one float buffer carved in module order; the gradient buffer mirrors it,
// so the optimizer walks flat memory in one launch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "host/model/modules.h"
#include "kernels/op_params.h"

namespace fusedvae {

struct ModelConfig {
  int input_dim = 784;
  std::vector<int> hidden = {400};  // encoder widths; the decoder mirrors them in reverse order
  int latent_dim = 20;
  Activation activation = Activation::kRelu;
  ReconLoss recon;
  LogvarClamp clamp;
};

// A VAE as data: the encoder's trunk, the two heads that read the trunk's output, the decoder.
struct VaeArchitecture {
  std::vector<Module> encoder;  // x [D] -> h
  Module mu;                    // h -> mu [d]
  Module logvar;                // h -> logvar [d] (raw; the reparameterization clamps it)
  std::vector<Module> decoder;  // z [d] -> outputs [D]

  std::vector<const Module*> modules() const;  // carving order: encoder, mu, logvar, decoder
};

// The MLP VAE: encoder.{i} Linear + activation per hidden width, heads encoder.mu and
// encoder.logvar, decoder.{i} Linear + activation per hidden width in reverse, decoder.out.
VaeArchitecture mlp_vae(const ModelConfig& config);

// One tensor in the flat buffer.
struct ParamTensor {
  std::string name;  // safetensors name, "<module>.<suffix>"
  std::vector<int64_t> shape;
  size_t offset = 0;
  size_t size() const;
};

// A module's tensors in the flat buffer: [offset, offset + count), carved one after another.
struct ParamSlice {
  size_t offset = 0;
  size_t count = 0;
};

struct ParamLayout {
  std::vector<ParamTensor> tensors;  // carving order
  size_t total = 0;                  // floats in the flat buffer
  // Offset of the module's first tensor (for a Linear: the weight, then the bias after it).
  size_t offset_of(const Module& module) const;
  ParamSlice slice_of(const Module& module) const;
  const ParamTensor& at(const std::string& name) const;
};

// The tensors of `modules`, carved in that order (any architecture: the MLP VAE, DyAD's).
ParamLayout make_param_layout(const std::vector<const Module*>& modules);
ParamLayout make_param_layout(const VaeArchitecture& architecture);
ParamLayout make_param_layout(const ModelConfig& config);  // of mlp_vae(config)

// PyTorch's default initialisation (nn.Linear: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias),
// drawn from a seeded generator in carving order (reproducible, not bit-identical to torch's own
// generator).
void init_params_like_pytorch(const std::vector<const Module*>& modules, uint64_t seed,
                              float* params);
void init_params_like_pytorch(const VaeArchitecture& architecture, uint64_t seed, float* params);

// Throws std::invalid_argument with a one-line reason for sizes < 1 and the like.
void validate(const ModelConfig& config);

}  // namespace fusedvae
