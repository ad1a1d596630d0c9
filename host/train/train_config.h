// @brief Everything a training run is configured with (the CLI flags and the config.json keys).
#pragma once

#include <cstdint>
#include <string>

#include "host/model/model_config.h"

namespace fusedvae {

enum class LrSchedule : int { kConstant = 0, kCosine = 1 };

struct OptimizerConfig {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;  // decoupled (AdamW); 0 is plain Adam
  LrSchedule schedule = LrSchedule::kConstant;
  float min_lr = 0.0f;         // cosine decays from lr to min_lr over the run
  float max_grad_norm = 0.0f;  // clip by the global norm; 0 = off
};

enum class KlScheduleKind : int { kConstant = 0, kLinear = 1, kLogistic = 2, kCyclical = 3 };

// DyAD's annealing (ERRATA.md): linear w0 * min(1, step / x0); logistic w0 / (1 + exp(-k (step -
// x0))). Cyclical (Fu et al. 2019): each cycle of `cycle_steps` ramps linearly from 0 to w0 over
// the first `cycle_ratio` of it, then holds w0.
struct KlSchedule {
  KlScheduleKind kind = KlScheduleKind::kConstant;
  float weight = 1.0f;  // w0
  float x0 = 2500.0f;
  float k = 0.0025f;
  int64_t cycle_steps = 10000;
  float cycle_ratio = 0.5f;
  float free_bits = 0.0f;  // nats per latent dimension, floor on the batch-mean KL; 0 = off
};

struct TrainConfig {
  ModelConfig model;
  OptimizerConfig optimizer;
  KlSchedule kl;
  BatchReduction reduction = BatchReduction::kMean;
  int batch_size = 128;
  int epochs = 10;
  uint64_t seed = 0;
  bool binarize = false;  // dynamic binarisation of the inputs (Bernoulli)
  bool tf32 = false;      // GPU matrix products in TF32
  // The GPU trainer captures train_step once as a CUDA graph and replays it (bitwise the same
  // results as launching the kernels one by one; fewer host launches). The CPU trainer ignores it.
  bool cuda_graph = true;
};

}  // namespace fusedvae
