// @brief Checkpoints of a run: model.safetensors (PyTorch names and shapes, the architecture in
// __metadata__) and optimizer.safetensors (Adam moments and the step state), each written
// atomically.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "host/data/dataset.h"
#include "host/model/model_config.h"
#include "host/train/trainer.h"

namespace fusedvae::cli {

struct CheckpointInfo {
  int epoch = 0;      // epochs completed
  uint64_t step = 0;  // optimizer steps taken
  // The data's image shape (0 when unknown), so that `sample` can lay out pictures without data.
  int image_height = 0;
  int image_width = 0;
  // The train split's normalisation (normalised = raw * data_scale + data_offset, host/data/load.h)
  // and what the data was stored as, so that new data can be scored without the train split.
  // Checkpoints written before these were recorded lack them (has_normalisation false).
  bool has_normalisation = false;
  float data_scale = 1.0f;
  float data_offset = 0.0f;
  std::string data_dtype;   // "uint8" | "float32"
  std::string data_format;  // "idx" | "npy" | "csv"
};

// Records `train`'s normalisation and storage type, and `format` (idx | npy | csv), in `info`.
void set_data_info(const Dataset& train, const std::string& format, CheckpointInfo* info);

// The architecture as strings, the way __metadata__ stores it (also read by python_ref).
std::map<std::string, std::string> model_metadata(const ModelConfig& model);

void save_model(const std::string& path, const ModelConfig& model, const std::vector<float>& params,
                const CheckpointInfo& info);
// Reads the parameters in ParamLayout order. Throws std::runtime_error with a one-line message when
// the file's architecture differs from `expected` (naming the first differing setting) or a tensor
// is missing or has the wrong shape.
std::vector<float> load_model(const std::string& path, const ModelConfig& expected,
                              CheckpointInfo* info);

void save_optimizer(const std::string& path, const OptimizerState& state,
                    const CheckpointInfo& info);
OptimizerState load_optimizer(const std::string& path, size_t param_count, CheckpointInfo* info);

}  // namespace fusedvae::cli
