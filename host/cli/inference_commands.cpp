// @brief `fusedvae eval`, `sample` and `reconstruct`: a trained run loaded for inference.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <stdexcept>

#include "host/cli/commands.h"
#include "host/cli/pictures.h"
#include "host/io/safetensors.h"

namespace fusedvae::cli {
namespace {

namespace fs = std::filesystem;

std::string nats(double value) {
  char text[48];
  std::snprintf(text, sizeof text, "%12.4f nats/sample", value);
  return text;
}

void require_dim(const Dataset& data, const RunConfig& config) {
  if (data.dim != config.train.model.input_dim)
    throw std::runtime_error(data.source + ": rows have " + std::to_string(data.dim) +
                             " values, the run's model expects " +
                             std::to_string(config.train.model.input_dim));
}

}  // namespace

RunConfig read_run_config(const std::string& run_dir) {
  const fs::path path = fs::path(run_dir) / run_files::kConfig;
  if (!fs::exists(path))
    throw std::runtime_error(run_dir + ": not a fusedvae run directory (no config.json)");
  return read_config_file(path.string(), RunConfig{});
}

LoadedRun open_run(const std::string& run_dir, const std::string& device, std::ostream& out) {
  LoadedRun run;
  run.config = read_run_config(run_dir);
  const std::string model_path = (fs::path(run_dir) / run_files::kModel).string();
  if (!fs::exists(model_path))
    throw std::runtime_error(run_dir + ": no model.safetensors yet (written after each epoch)");
  // The input width comes from the data, not a flag: the checkpoint records it.
  const io::SafetensorsFile file = io::read_safetensors(model_path);
  const auto dim = file.metadata.find("input_dim");
  try {
    run.config.train.model.input_dim = std::stoi(dim == file.metadata.end() ? "" : dim->second);
  } catch (const std::exception&) {
    throw std::runtime_error(model_path + ": __metadata__ lacks a valid input_dim");
  }
  validate(run.config.train.model);
  const std::vector<float> params = load_model(model_path, run.config.train.model, &run.info);
  run.trainer = make_trainer_for(run.config.train, device, out);
  run.trainer->set_params(params);
  return run;
}

const Dataset& split_named(const DataSplits& splits, const std::string& name) {
  const Dataset* data = name == "test"         ? &splits.test
                        : name == "train"      ? &splits.train
                        : name == "validation" ? &splits.validation
                                               : nullptr;
  if (!data)
    throw std::invalid_argument("--split: expected test, train or validation, got '" + name + "'");
  if (data->rows == 0)
    throw std::runtime_error(
        "the run's data has no " + name + " split" +
        (name == "validation" ? " (it was trained with --validation-fraction 0)" : ""));
  return *data;
}

EvalResult evaluate_run(const EvalRequest& request, const DataLoader& loader, std::ostream& out) {
  if (request.iwae_samples < 0) throw std::invalid_argument("--iwae-samples must be >= 0");
  LoadedRun run = open_run(request.run_dir, request.device, out);
  const DataSplits splits = loader(run.config);
  const Dataset& data = split_named(splits, request.split);
  require_dim(data, run.config);
  const EvalResult result = run.trainer->evaluate(data, request.iwae_samples, request.seed);
  out << "run " << request.run_dir << " (epoch " << run.info.epoch << ", step " << run.info.step
      << "), " << request.split << " split: " << data.rows << " samples of " << data.source << "\n"
      << "  recon (z = mu)   " << nats(result.mean_recon) << "\n"
      << "  KL               " << nats(result.mean_kl) << "\n"
      << "  ELBO (1 sample)  " << nats(result.mean_elbo) << "\n";
  if (request.iwae_samples > 0) {
    char label[32];
    std::snprintf(label, sizeof label, "IWAE (K = %d)", request.iwae_samples);
    std::string padded = label;
    padded.resize(17, ' ');
    out << "  " << padded << nats(result.mean_iwae) << "\n";
  }
  if (!request.per_sample_csv.empty()) {
    std::ostringstream csv;
    csv.precision(9);
    csv << "index,recon,kl,elbo" << (request.iwae_samples > 0 ? ",iwae" : "") << "\n";
    for (int i = 0; i < data.rows; ++i) {
      csv << i << ',' << result.recon[i] << ',' << result.kl[i] << ',' << result.elbo[i];
      if (request.iwae_samples > 0) csv << ',' << result.iwae[i];
      csv << '\n';
    }
    io::write_file_atomically(request.per_sample_csv, csv.str());
    out << "wrote " << request.per_sample_csv << "\n";
  }
  return result;
}

void sample_run(const SampleRequest& request, std::ostream& out) {
  if (request.count < 1) throw std::invalid_argument("--count must be >= 1");
  LoadedRun run = open_run(request.run_dir, request.device, out);
  const PictureShape shape = picture_shape_of(run.config.train.model.input_dim,
                                              run.info.image_height, run.info.image_width);
  write_samples(*run.trainer, request.count, request.seed, shape, request.out_png);
  out << "wrote " << request.count << " samples to " << request.out_png << "\n";
}

void reconstruct_run(const ReconstructRequest& request, const DataLoader& loader,
                     std::ostream& out) {
  if (request.count < 1) throw std::invalid_argument("--count must be >= 1");
  LoadedRun run = open_run(request.run_dir, request.device, out);
  const DataSplits splits = loader(run.config);
  const Dataset& data = split_named(splits, request.split);
  require_dim(data, run.config);
  write_reconstructions(*run.trainer, data, request.count,
                        picture_shape_of(data.dim, data.image_height, data.image_width),
                        request.out_png);
  out << "wrote " << std::min(request.count, data.rows) << " " << request.split
      << " images and their reconstructions to " << request.out_png << "\n";
}

}  // namespace fusedvae::cli
