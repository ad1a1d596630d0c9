// @brief `fusedvae dyad`: DyAD's battery fault detection on a snippet fleet, end to end
// (docs/dyad_model.md): the five-fold protocol (or one fold) trains the GRU VAE on each fold's
// normal vehicles, scores every snippet at z = mu, picks the robust score's h on the tuning set and
// prints each fold's test AUROC and their mean +- std; the run directory keeps each fold's model,
// per-snippet and per-vehicle CSVs, a ROC curve and a histogram of vehicle scores.
// `fusedvae dyad-score` scores a fleet with one trained fold's model (users ranking their own).
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "host/train/dyad_trainer.h"

namespace CLI {
class App;
}

namespace fusedvae::cli {

// DyAD's four configurations (docs/dyad_model.md, "Presets").
struct DyadPreset {
  std::string name;
  int hidden, layers, latent, batch_size, epochs;
  float lr, noise_scale, anneal0, nll_weight, label_weight, cosine_factor;
  std::vector<std::string> decoder_channels;
};
const std::vector<DyadPreset>& dyad_presets();
const DyadPreset& dyad_preset(const std::string& name);  // throws, listing the names

// A DyAD run, resolved: the preset, then the flags given over it.
struct DyadRunConfig {
  std::string data = "fleet/fleet.json";  // the snippet manifest
  std::string preset = "dyad-fivefold";
  std::vector<std::string> decoder_channels;  // by name
  int hidden = 0, layers = 0, latent = 0, batch_size = 0, epochs = 0;
  bool bidirectional = true;
  float lr = 0, noise_scale = 1, anneal0 = 0, kl_x0 = 500, nll_weight = 0, label_weight = 0;
  std::string kl_anneal = "linear";  // linear: anneal0 min(1, s / x0); logistic (DyAD's other)
  float kl_k = 0.0025f;              // logistic: anneal0 / (1 + exp(-k (s - x0)))
  float cosine_factor = 1, weight_decay = 1e-6f;
  size_t norm_first = 0;  // 0: normalise with the whole training split
  int folds = 5;
  int fold = -1;      // -1: every fold
  uint64_t seed = 0;  // initialisation, shuffles and draws; the split too
  std::string device = "auto";
  std::string run_dir;  // empty: runs/dyad-<UTC date-time>
  bool overwrite = false;
};

// Registers `dyad` and `dyad-score` on `app`; the flags land in `config` / the score request.
struct DyadScoreRequest {
  std::string fold_dir;  // a fold of a dyad run (model.safetensors inside)
  std::string data;
  std::string out_dir;
  std::string device = "auto";
};
struct DyadCommands {
  CLI::App* dyad = nullptr;
  CLI::App* score = nullptr;
};
DyadCommands add_dyad_commands(CLI::App& app, DyadRunConfig* config, DyadScoreRequest* score);
// The preset named by --preset with the flags given over it (call after parsing).
void resolve_dyad_config(const DyadCommands& commands, DyadRunConfig* config);

struct FoldResult {
  int fold = 0;
  double auroc_robust = 0, auroc_mean = 0;
  int h = 0;  // the robust score's h per mille, chosen on the tuning set
  double seconds = 0, snippets_per_second = 0;
};
struct DyadSummary {
  std::string run_dir;
  std::vector<FoldResult> folds;
};

DyadSummary run_dyad(const DyadRunConfig& config, std::ostream& out);
void run_dyad_score(const DyadScoreRequest& request, std::ostream& out);

// `fusedvae eval --run-dir` on a dyad run: each trained fold re-scored from its checkpoint on the
// run's data, its test AUROC and the mean +- std (eval.json and the pictures in the run folder).
bool is_dyad_run(const std::string& run_dir);
DyadSummary evaluate_dyad_run(const std::string& run_dir, const std::string& device,
                              std::ostream& out);

}  // namespace fusedvae::cli
