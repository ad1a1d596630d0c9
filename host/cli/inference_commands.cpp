// @brief `fusedvae eval`, `sample` and `reconstruct`: a trained run loaded for inference.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <stdexcept>

#include "host/cli/commands.h"
#include "host/cli/pictures.h"
#include "host/data/load.h"
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

// The run's normalisation: recorded in the checkpoint, or (older checkpoints) derived from the
// run's train split, as training did.
void normalisation_of(const LoadedRun& run, const DataLoader& loader, float* scale, float* offset) {
  if (run.info.has_normalisation) {
    *scale = run.info.data_scale;
    *offset = run.info.data_offset;
    return;
  }
  try {
    const DataSplits splits = loader(run.config);
    *scale = splits.train.scale;
    *offset = splits.train.offset;
  } catch (const std::exception& e) {
    throw std::runtime_error((fs::path(run.run_dir) / run_files::kModel).string() +
                             " records no data normalisation (written by an "
                             "older fusedvae) and the run's train data, which would give it, "
                             "cannot be loaded: " +
                             e.what());
  }
}

Dataset load_file_to_score(const LoadedRun& run, const DataFile& file, const DataLoader& loader,
                           std::ostream& out) {
  DataFormat format = DataFormat::kAuto;
  if (!parse_data_format(file.format, &format))
    throw std::invalid_argument("--format: expected auto, idx, npy or csv, got '" + file.format +
                                "'");
  // A name that tells nothing (no extension) is read in the format the run was trained on.
  if (format == DataFormat::kAuto && !run.info.data_format.empty()) try {
      format = detect_format(file.path);
    } catch (const std::invalid_argument&) {
      parse_data_format(run.info.data_format, &format);
    }
  Dataset data = load_dataset(file.path, file.labels, format, file.label_column);
  normalisation_of(run, loader, &data.scale, &data.offset);
  const char* dtype = data.is_u8() ? "uint8" : "float32";
  if (!run.info.data_dtype.empty() && run.info.data_dtype != dtype)
    out << "note: the run was trained on " << run.info.data_dtype << " data, " << file.path
        << " holds " << dtype << "; its values are mapped as the train values were (raw * "
        << data.scale << " + " << data.offset << ")\n";
  return data;
}

// An output's folder must exist and be writable before anything is computed, so that a typo in the
// path costs no evaluation time.
void check_output_path(const std::string& flag, const std::string& path) {
  const fs::path parent = fs::path(path).has_parent_path() ? fs::path(path).parent_path() : ".";
  std::error_code ec;
  if (!fs::is_directory(parent, ec))
    throw std::runtime_error(flag + " " + path + ": the folder " + parent.string() +
                             " does not exist");
  if (::access(parent.c_str(), W_OK) != 0)
    throw std::runtime_error(flag + " " + path + ": the folder " + parent.string() +
                             " is not writable");
  if (fs::is_directory(path, ec))
    throw std::runtime_error(flag + " " + path + ": is a folder; give a file name");
}

}  // namespace

Dataset data_to_score(const LoadedRun& run, const std::string& split, const DataFile& file,
                      const DataLoader& loader, std::ostream& out, std::string* description) {
  Dataset data;
  if (!file.path.empty()) {
    data = load_file_to_score(run, file, loader, out);
    *description = "file " + file.path;
  } else {
    const DataSplits splits = loader(run.config);
    data = split_named(splits, split);
    *description = split + " split";
  }
  require_dim(data, run.config);
  return data;
}

RunConfig read_run_config(const std::string& run_dir) {
  const fs::path path = fs::path(run_dir) / run_files::kConfig;
  if (!fs::exists(path))
    throw std::runtime_error(run_dir + ": not a fusedvae run directory (no config.json)");
  return read_config_file(path.string(), RunConfig{});
}

LoadedRun open_run(const std::string& run_dir, const std::string& device, std::ostream& out) {
  LoadedRun run;
  run.run_dir = run_dir;
  run.config = read_run_config(run_dir);
  const std::string model_path = (fs::path(run_dir) / run_files::kModel).string();
  if (!fs::exists(model_path))
    throw std::runtime_error(run_dir + ": no model.safetensors yet (written after each epoch)");
  // The input width comes from the data, not a flag: the checkpoint records it.
  const io::SafetensorsFile file = io::read_safetensors(model_path);
  run.config.train.model.input_dim = checkpoint_input_dim(file, model_path);
  try {
    validate(run.config.train.model);
  } catch (const std::exception& e) {
    throw std::runtime_error(model_path + ": " + e.what());
  }
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
  if (!request.per_sample_csv.empty()) check_output_path("--per-sample", request.per_sample_csv);
  LoadedRun run = open_run(request.run_dir, request.device, out);
  std::string what;
  const Dataset data = data_to_score(run, request.split, request.file, loader, out, &what);
  const EvalResult result = run.trainer->evaluate(data, request.iwae_samples, request.seed);
  out << "run " << request.run_dir << " (epoch " << run.info.epoch << ", step " << run.info.step
      << "), " << what << ": " << data.rows << " samples of " << data.source << "\n"
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
  check_output_path("--out", request.out_png);
  LoadedRun run = open_run(request.run_dir, request.device, out);
  const PictureShape shape = picture_shape_of(run.config.train.model.input_dim,
                                              run.info.image_height, run.info.image_width);
  write_samples(*run.trainer, request.count, request.seed, shape, request.out_png);
  out << "wrote " << request.count << " samples to " << request.out_png << "\n";
}

void reconstruct_run(const ReconstructRequest& request, const DataLoader& loader,
                     std::ostream& out) {
  if (request.count < 1) throw std::invalid_argument("--count must be >= 1");
  check_output_path("--out", request.out_png);
  LoadedRun run = open_run(request.run_dir, request.device, out);
  std::string what;
  const Dataset data = data_to_score(run, request.split, request.file, loader, out, &what);
  write_reconstructions(*run.trainer, data, request.count,
                        picture_shape_of(data.dim, data.image_height, data.image_width),
                        request.out_png);
  out << "wrote " << std::min(request.count, data.rows) << " images of the " << what
      << " and their reconstructions to " << request.out_png << "\n";
}

}  // namespace fusedvae::cli
