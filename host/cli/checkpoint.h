// @brief Checkpoints of a run: model.safetensors (PyTorch names and shapes, the architecture in
// __metadata__) and optimizer.safetensors (Adam moments and the step state), the pair committed as
// one unit.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "host/data/dataset.h"
#include "host/io/safetensors.h"
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
// The input width a model checkpoint records (__metadata__ input_dim), checked: a positive
// integer. Throws one line naming `path` otherwise.
int checkpoint_input_dim(const io::SafetensorsFile& file, const std::string& path);
// The same two for a file already in memory; `path` names it in messages (fuzzing, tests).
std::vector<float> decode_model(const std::vector<unsigned char>& bytes, const std::string& path,
                                const ModelConfig& expected, CheckpointInfo* info);
OptimizerState decode_optimizer(const std::vector<unsigned char>& bytes, const std::string& path,
                                size_t param_count, CheckpointInfo* info);

// ---- The pair as one unit.
// A checkpoint is <run>/checkpoints/epoch-NNNNNN/{model,optimizer}.safetensors. Both files are
// written (and fsynced) in a temporary folder that one rename then commits, so a crash at any
// moment leaves each checkpoint whole or absent. After the commit, <run>/model.safetensors and
// <run>/optimizer.safetensors, where eval, sample, reconstruct and python_ref/torch_vae.py read
// them, are replaced (each atomically) by hard links to the new pair (copies where the file system
// has no hard links), and only then are older checkpoints removed. A failure (full disk, vanished
// directory) removes the temporary folder and throws one line naming the path; the previous
// checkpoint stays.
constexpr const char* kCheckpointsDir = "checkpoints";
void commit_checkpoint(const std::string& run_dir, const ModelConfig& model,
                       const std::vector<float>& params, const OptimizerState& state,
                       const CheckpointInfo& info);

// Points the top-level pair at the committed checkpoint in `checkpoint_dir` and removes the other
// committed checkpoints (the second half of a commit; a resume repeats it, since a crash may have
// come between the commit and this).
void publish_checkpoint(const std::string& run_dir, const std::string& checkpoint_dir);

struct ResumePoint {
  std::vector<float> params;
  OptimizerState state;
  CheckpointInfo info;
  std::string where;                 // the folder the pair was read from
  std::vector<std::string> skipped;  // newer candidates that did not load, one line each
};
// The newest checkpoint of `run_dir` whose two files load and agree (same epoch and step): the
// committed ones in checkpoints/, newest first, then the top-level pair (how run directories
// written before checkpoints/ existed hold it). False when the run has no checkpoint at all; when
// it has some but none loads, throws the newest one's error.
bool find_resume_point(const std::string& run_dir, const ModelConfig& model, ResumePoint* found);
// True when the run directory holds any checkpoint file (committed or top-level).
bool has_checkpoint(const std::string& run_dir);
// Removes checkpoints/ and the temporary folders a killed commit may have left (--overwrite, and
// the leftovers before a resumed run commits again).
void remove_checkpoints(const std::string& run_dir);
void remove_uncommitted_checkpoints(const std::string& run_dir);

}  // namespace fusedvae::cli
