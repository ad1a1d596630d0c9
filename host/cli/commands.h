// @brief The fusedvae subcommands as functions (train, eval, sample, reconstruct), independent of
// argument parsing so that tests drive them directly.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "host/cli/checkpoint.h"
#include "host/cli/run_config.h"
#include "host/data/dataset.h"
#include "host/train/trainer.h"

namespace fusedvae::cli {

// File names inside a run directory.
namespace run_files {
constexpr const char* kConfig = "config.json";
constexpr const char* kMetrics = "metrics.jsonl";
constexpr const char* kModel = "model.safetensors";
constexpr const char* kOptimizer = "optimizer.safetensors";
constexpr const char* kReconstructions = "reconstructions.png";
constexpr const char* kSamples = "samples.png";
constexpr const char* kLossCurves = "loss_curves.png";
constexpr const char* kLatent = "latent.png";
}  // namespace run_files

// Loads the splits a configuration names (host/data/load.h). Tests substitute generated data.
using DataLoader = std::function<DataSplits(const RunConfig&)>;
DataSplits load_run_data(const RunConfig& config);
// The format of the run's train data (idx | npy | csv): --format, or the train file's extension.
std::string run_data_format(const RunConfig& config);

// One file to score instead of a split of the run's data (eval and reconstruct --file).
struct DataFile {
  std::string path;  // empty: use the split
  std::string labels;
  std::string format = "auto";  // auto | idx | npy | csv
  std::string label_column;     // CSV
};

// The trainer for `device` (auto | cpu | gpu). auto takes the GPU when cuda_device_present() and
// otherwise the CPU, saying so in one line on `out`.
std::unique_ptr<Trainer> make_trainer_for(const TrainConfig& config, const std::string& device,
                                          std::ostream& out);

struct TrainRequest {
  RunConfig config;
  std::string run_dir;     // empty: runs/<UTC timestamp>
  bool resume = false;     // continue the checkpoint in run_dir (config = its config.json)
  bool overwrite = false;  // allow starting afresh in a directory that already holds a run
  bool terminal = false;   // draw a progress bar instead of plain lines
};
// Trains and returns the run directory. Throws with a one-line message on any bad input and on a
// non-finite loss (the last good checkpoint stays).
std::string train(const TrainRequest& request, const DataLoader& loader, std::ostream& out);

// A trained run loaded for inference.
struct LoadedRun {
  std::string run_dir;
  RunConfig config;
  CheckpointInfo info;
  std::unique_ptr<Trainer> trainer;
};
LoadedRun open_run(const std::string& run_dir, const std::string& device, std::ostream& out);
// Reads a run's config.json (every key must be known).
RunConfig read_run_config(const std::string& run_dir);
// The metrics lines of a run (empty when the file is absent).
std::vector<nlohmann::json> read_metrics(const std::string& path);

struct EvalRequest {
  std::string run_dir;
  std::string split = "test";  // test | train | validation
  DataFile file;               // instead of the split
  int iwae_samples = 50;
  std::string per_sample_csv;  // columns index,recon,kl,elbo (and iwae when K > 0)
  std::string device = "auto";
  uint64_t seed = 0;
};
EvalResult evaluate_run(const EvalRequest& request, const DataLoader& loader, std::ostream& out);

struct SampleRequest {
  std::string run_dir;
  std::string out_png;
  int count = 64;
  uint64_t seed = 0;
  std::string device = "auto";
};
void sample_run(const SampleRequest& request, std::ostream& out);

struct ReconstructRequest {
  std::string run_dir;
  std::string out_png;
  std::string split = "test";
  DataFile file;  // instead of the split
  int count = 32;
  std::string device = "auto";
};
void reconstruct_run(const ReconstructRequest& request, const DataLoader& loader,
                     std::ostream& out);

// The named split of `splits`; throws when it is empty ("validation" with no held-out rows).
const Dataset& split_named(const DataSplits& splits, const std::string& name);

// The data an eval or reconstruct request scores: `file` when it names one, normalised with the
// run's recorded map (or, for a checkpoint that lacks it, the map of the run's train split, loaded
// through `loader`) and clipped to [0, 1]; otherwise the named split of the run's data. Checks the
// row width against the model. `description` says which, for messages.
Dataset data_to_score(const LoadedRun& run, const std::string& split, const DataFile& file,
                      const DataLoader& loader, std::ostream& out, std::string* description);

}  // namespace fusedvae::cli
