// @brief Everything a training run is configured with (the CLI flags and the config.json keys).
#pragma once

#include <cstdint>
#include <string>

#include "host/model/model_config.h"
#include "kernels/op_params.h"

namespace fusedvae {

// OptimizerConfig, LrSchedule, KlSchedule and KlScheduleKind are plain parameter types of the ops:
// they live in kernels/op_params.h (included through model_config.h and below).

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
