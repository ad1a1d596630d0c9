// @brief The training step and the scoring of DyAD's sequence VAE (docs/dyad_model.md), written
// once for every backend (host/train/backend.h): the GRUs, the Linear layers, the fused
// reparameterization + KL, the fused SmoothL1 and squared-error losses, AdamW and the schedules.
//
// One step, in the order the data flows: gather the batch (all channels, the decoder's input
// channels, the response channels, the mileage) -> encoder GRU -> its final states per sample ->
// mu, logvar -> z = mu + noise_scale * sigma * eps (+ KL) -> latent2hidden -> the decoder's initial
// states -> decoder GRU -> per-step Linear to the response channels -> SmoothL1; the mileage head
// on mu -> squared error; then the backward of all of it, AdamW, the schedules. As in the VAE
// trainer, everything that changes per step lives in the backend's memory (a CUDA graph replays
// the step on the GPU).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "host/model/dyad_model.h"
#include "host/train/backend.h"
#include "kernels/op_params.h"

namespace fusedvae {

struct DyadTrainConfig {
  DyadModelConfig model;
  // DyAD: AdamW, weight decay 1e-6, cosine per epoch (lr_stairs = epochs) to cosine_factor * lr.
  OptimizerConfig optimizer;
  KlSchedule kl;  // DyAD: linear, weight anneal0, x0 500
  int batch_size = 64;
  int epochs = 10;
  uint64_t seed = 0;
  float noise_scale = 1.0f;  // z = mu + noise_scale * sigma * eps (docs/dyad_model.md)
  float nll_weight = 10.0f;
  float label_weight = 0.01f;
  float smooth_l1_beta = 1.0f;
  LogvarClamp clamp;
  bool tf32 = false;
  bool cuda_graph = true;
};

// Throws std::invalid_argument with a one-line reason.
void validate(const DyadTrainConfig& config);

// Normalised snippets in host memory: x [count, steps, channels] (every channel, the set's order)
// and the normalised mileage [count] (may be null where no loss needs it: scoring).
struct SnippetBatch {
  const float* x = nullptr;
  const float* mileage = nullptr;
  int count = 0;
};

// The loss of the last step and its parts (docs/dyad_model.md): loss = nll_weight * recon +
// label_weight * mileage + kl_weight * kl.
struct DyadLosses {
  float loss = 0, recon = 0, mileage = 0, kl = 0;  // recon: SmoothL1 mean; kl: sum / batch
  float kl_weight = 0, lr = 0;
  uint64_t step = 0;
};

// The forward values of the last train_step_on (the reference tests compare them).
struct DyadStepOutputs {
  std::vector<float> mu, logvar, z;  // [B, d]; logvar raw (before the clamp)
  std::vector<float> pred;           // [B, T, Cr]
  std::vector<float> mileage_pred;   // [B]
  std::vector<float> kl_per_sample;  // [B]
};

// At z = mu, per snippet: the score (mean squared error of the response channels), and mu.
struct DyadScores {
  std::vector<float> score;  // [count]
  std::vector<float> mu;     // [count, d]
};

class DyadTrainer {
 public:
  virtual ~DyadTrainer() = default;
  virtual std::string device_name() const = 0;
  virtual const DyadTrainConfig& config() const = 0;
  virtual size_t param_count() const = 0;

  // The training snippets stay resident in the backend's memory; epoch 0's order is set.
  virtual void set_train_data(const SnippetBatch& data) = 0;
  virtual int batches_per_epoch() const = 0;  // the last partial batch is dropped
  virtual void start_epoch(int epoch) = 0;
  virtual void train_step(int batch_in_epoch) = 0;  // does not synchronise
  virtual DyadLosses last_losses() = 0;             // synchronises

  // One step on snippets given on the host, with eps [count, d] given (the noise_scale still
  // applies) or drawn from Philox when null. For the reference tests.
  virtual void train_step_on(const SnippetBatch& batch, const float* eps) = 0;
  virtual DyadStepOutputs last_outputs() const = 0;

  virtual std::vector<float> params() const = 0;  // flat, in the carving order
  virtual std::vector<float> gradients() const = 0;
  virtual void set_params(const std::vector<float>& params) = 0;

  // Scores in chunks of batch_size snippets; each snippet's numbers depend on it alone.
  virtual DyadScores score(const SnippetBatch& data) = 0;
};

// Throws std::invalid_argument on a bad configuration.
std::unique_ptr<DyadTrainer> make_dyad_trainer(const DyadTrainConfig& config,
                                               std::unique_ptr<Backend> backend);

}  // namespace fusedvae
