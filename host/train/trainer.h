// @brief The training loop's backend interface: one implementation on the CPU (CPU twins +
// oneDNN), one on the GPU (kernels + cuBLASLt). The CLI drives either through this interface.
//
// One step, in the order the data flows: gather + normalise the batch, encoder, reparameterize +
// KL, decoder, reconstruction loss (+ its gradient), decoder backward, reparameterize + KL
// backward, encoder backward, global-norm clipping, AdamW, advance the schedules (step counter,
// random-number draw, KL weight, learning rate). On the GPU the step issues no host
// synchronisation: the step state below lives in device memory.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "host/data/dataset.h"
#include "host/train/train_config.h"
#include "kernels/op_params.h"

namespace fusedvae {

// StepState (the state that advances every step) lives in kernels/op_params.h.

// Losses of the last step, in nats per sample (whatever the batch reduction).
struct StepLosses {
  float loss = 0.0f;  // recon + kl_weight * kl, as optimised (with free bits: the floored KL,
                      // sum_j max(KL_j, free_bits); `kl` stays the plain KL)
  float recon = 0.0f;
  float kl = 0.0f;
  float kl_weight = 0.0f;
  float lr = 0.0f;
  float grad_norm = 0.0f;  // before clipping
  uint64_t step = 0;
};

// Adam moments, mirroring the flat parameter buffer.
struct OptimizerState {
  std::vector<float> m;
  std::vector<float> v;
  StepState step_state;
};

// Per-sample evaluation, all in nats: recon at z = mu, analytic KL, a one-sample Monte-Carlo
// ELBO, and the importance-weighted bound on log p(x) with K samples (IWAE; K = 0 skips it).
struct EvalResult {
  std::vector<float> recon;
  std::vector<float> kl;
  std::vector<float> elbo;  // recon and KL of a sampled z: -(recon_z + kl)
  std::vector<float> iwae;  // log p(x) lower bound; empty if K = 0
  double mean_recon = 0, mean_kl = 0, mean_elbo = 0, mean_iwae = 0;
};

class Trainer {
 public:
  virtual ~Trainer() = default;
  virtual std::string device_name()
      const = 0;  // "cpu (oneDNN 2.6.3 (avx2), N threads)", "NVIDIA H100 ..."
  virtual const TrainConfig& config() const = 0;

  // The training set stays resident (on the device for the GPU trainer). Leaves epoch 0's order
  // in place, so the trainer is never without a valid shuffle.
  virtual void set_train_data(const Dataset& data) = 0;
  virtual int batches_per_epoch() const = 0;  // the last partial batch is dropped
  // Shuffles the training set for this epoch (on the device), from (seed, epoch).
  virtual void start_epoch(int epoch) = 0;
  // One full step on batch `batch_in_epoch` of the current shuffle. Does not synchronise.
  virtual void train_step(int batch_in_epoch) = 0;
  // Synchronises and reads the losses of the last step.
  // A non-finite value (NaN/inf in the data, divergence) is not raised inside the step, because the
  // GPU could only learn of it through a synchronisation: it shows here as a non-finite `loss` (the
  // parameters are then non-finite too), and the caller (the CLI) stops the run with a message.
  virtual StepLosses last_losses() = 0;

  // A full step on a batch given on the host (already normalised to [0, 1]), with eps given on the
  // host ([rows, latent]) or drawn from Philox when `eps` is null. For the reference tests.
  virtual void train_step_on(const float* batch, int rows, const float* eps) = 0;

  virtual std::vector<float> params() const = 0;     // flat, ParamLayout order
  virtual std::vector<float> gradients() const = 0;  // of the last step, before clipping
  virtual void set_params(const std::vector<float>& params) = 0;
  virtual OptimizerState optimizer_state() const = 0;
  virtual void set_optimizer_state(const OptimizerState& state) = 0;

  // Inference on host data (normalised rows). Seeded, independent of the training draws.
  // logvar is returned clamped (model.clamp), as the model uses it.
  virtual void encode(const float* x, int rows, float* mu, float* logvar) = 0;
  // Decoder outputs mapped to data space: sigmoid(logits) for Bernoulli, the mean otherwise.
  virtual void decode(const float* z, int rows, float* x_mean) = 0;
  // Monte-Carlo sample k of dataset row r (k = 0 for the ELBO's, k >= 1 for IWAE's) is row r of
  // Philox draw k of math::stream_seed(seed, kEvaluation) (kernels/rng_streams.cuh); with binarize
  // the data are binarised once at draw 0 of stream_seed(seed, kBinarize). Rows go through in
  // chunks of batch_size, but every draw is keyed by the dataset row, so the numbers depend on the
  // seed and not on the batch size.
  virtual EvalResult evaluate(const Dataset& data, int iwae_samples, uint64_t seed) = 0;
};

std::unique_ptr<Trainer> make_cpu_trainer(const TrainConfig& config);
// The same trainer on any backend (host/train/backend.h): a wrapped one, as the benchmark's
// op timer (bench/timed_backend.h).
class Backend;
std::unique_ptr<Trainer> make_trainer(const TrainConfig& config, std::unique_ptr<Backend> backend);
// Throws std::runtime_error when no CUDA device is usable.
std::unique_ptr<Trainer> make_gpu_trainer(const TrainConfig& config);
bool cuda_device_present(std::string* reason);

}  // namespace fusedvae
