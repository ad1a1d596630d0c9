// @brief Model and optimizer checkpoints in safetensors, with architecture checks on load.
#include "host/cli/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "host/cli/run_config.h"
#include "host/io/printable.h"
#include "host/io/safetensors.h"

namespace fusedvae::cli {
namespace {

constexpr const char* kModelFormat = "fusedvae-mlp-vae-1";
constexpr const char* kOptimizerFormat = "fusedvae-adamw-1";

std::string float_text(float v) {
  return float_to_json(v).dump();
}

void put_info(const CheckpointInfo& info, std::map<std::string, std::string>* meta) {
  (*meta)["epoch"] = std::to_string(info.epoch);
  (*meta)["step"] = std::to_string(info.step);
  (*meta)["image_height"] = std::to_string(info.image_height);
  (*meta)["image_width"] = std::to_string(info.image_width);
  if (info.has_normalisation) {
    (*meta)["data_scale"] = float_text(info.data_scale);
    (*meta)["data_offset"] = float_text(info.data_offset);
    (*meta)["data_dtype"] = info.data_dtype;
    (*meta)["data_format"] = info.data_format;
  }
}

// The shortest-decimal text float_text writes reads back to the same float.
float float_of(const std::string& text) {
  size_t used = 0;
  const float value = std::stof(text, &used);
  if (used != text.size() || !std::isfinite(value)) throw std::invalid_argument(text);
  return value;
}

void get_normalisation(const io::SafetensorsFile& file, const std::string& path,
                       CheckpointInfo* info) {
  const auto scale = file.metadata.find("data_scale");
  if (scale == file.metadata.end()) return;  // written before the normalisation was recorded
  try {
    info->data_scale = float_of(scale->second);
    info->data_offset = float_of(file.metadata.at("data_offset"));
    info->data_dtype = file.metadata.at("data_dtype");
    info->data_format = file.metadata.at("data_format");
  } catch (const std::exception&) {
    throw std::runtime_error(path +
                             ": __metadata__ has a data_scale but no valid data_offset, "
                             "data_dtype and data_format");
  }
  info->has_normalisation = true;
}

CheckpointInfo get_info(const io::SafetensorsFile& file, const std::string& path) {
  CheckpointInfo info;
  try {
    info.epoch = std::stoi(file.metadata.at("epoch"));
    info.step = std::stoull(file.metadata.at("step"));
    const auto height = file.metadata.find("image_height"),
               width = file.metadata.find("image_width");
    if (height != file.metadata.end() && width != file.metadata.end()) {
      info.image_height = std::stoi(height->second);
      info.image_width = std::stoi(width->second);
    }
  } catch (const std::exception&) {
    throw std::runtime_error(path + ": __metadata__ lacks a valid epoch and step");
  }
  if (info.epoch < 0 || info.image_height < 0 || info.image_width < 0 ||
      info.image_height > 65536 || info.image_width > 65536)
    throw std::runtime_error(path +
                             ": __metadata__ has a negative epoch or an implausible image "
                             "shape");
  get_normalisation(file, path, &info);
  return info;
}

void require_format(const io::SafetensorsFile& file, const std::string& path, const char* format) {
  const auto it = file.metadata.find("format");
  if (it == file.metadata.end() || it->second != format)
    throw std::runtime_error(
        path + ": not a fusedvae checkpoint (__metadata__ format is '" +
        (it == file.metadata.end() ? std::string("absent") : io::printable(it->second)) +
        "', expected '" + format + "')");
}

}  // namespace

void set_data_info(const Dataset& train, const std::string& format, CheckpointInfo* info) {
  info->has_normalisation = true;
  info->data_scale = train.scale;
  info->data_offset = train.offset;
  info->data_dtype = train.is_u8() ? "uint8" : "float32";
  info->data_format = format;
}

std::map<std::string, std::string> model_metadata(const ModelConfig& model) {
  std::string hidden;
  for (int w : model.hidden) hidden += (hidden.empty() ? "" : ",") + std::to_string(w);
  return {{"format", kModelFormat},
          {"input_dim", std::to_string(model.input_dim)},
          {"hidden", hidden},
          {"latent_dim", std::to_string(model.latent_dim)},
          {"activation", activation_name(model.activation)},
          {"recon_loss", recon_loss_name(model.recon.kind)},
          {"gaussian_sigma", float_text(model.recon.gaussian_sigma)},
          {"smooth_l1_beta", float_text(model.recon.smooth_l1_beta)},
          {"logvar_min", float_text(model.clamp.min)},
          {"logvar_max", float_text(model.clamp.max)}};
}

void save_model(const std::string& path, const ModelConfig& model, const std::vector<float>& params,
                const CheckpointInfo& info) {
  const ParamLayout layout = make_param_layout(model);
  if (params.size() != layout.total)
    throw std::invalid_argument(path + ": " + std::to_string(params.size()) +
                                " parameters given, the model has " + std::to_string(layout.total));
  io::SafetensorsFile file;
  file.metadata = model_metadata(model);
  put_info(info, &file.metadata);
  for (const ParamTensor& t : layout.tensors)
    file.tensors[t.name] = io::Tensor::from_floats(params.data() + t.offset, t.shape);
  io::write_safetensors(path, file);
}

std::vector<float> load_model(const std::string& path, const ModelConfig& expected,
                              CheckpointInfo* info) {
  return decode_model(io::read_file_bytes(path), path, expected, info);
}

std::vector<float> decode_model(const std::vector<unsigned char>& bytes, const std::string& path,
                                const ModelConfig& expected, CheckpointInfo* info) {
  const io::SafetensorsFile file = io::decode_safetensors(bytes, path);
  require_format(file, path, kModelFormat);
  for (const auto& [key, value] : model_metadata(expected)) {
    const auto it = file.metadata.find(key);
    const std::string found = it == file.metadata.end() ? "(absent)" : io::printable(it->second);
    if (found != value)
      throw std::runtime_error(path + ": checkpoint has " + key + " = " + found +
                               ", the run's configuration has " + value);
  }
  const ParamLayout layout = make_param_layout(expected);
  std::vector<float> params(layout.total);
  for (const ParamTensor& t : layout.tensors) {
    const io::Tensor& found = file.at(t.name, path);
    if (found.dtype != "F32" || found.shape != t.shape)
      throw std::runtime_error(path + ": tensor " + t.name + " has the wrong dtype or shape");
    std::memcpy(params.data() + t.offset, found.bytes.data(), found.bytes.size());
  }
  if (file.tensors.size() != layout.tensors.size())
    throw std::runtime_error(path + ": holds " + std::to_string(file.tensors.size()) +
                             " tensors, the model has " + std::to_string(layout.tensors.size()));
  if (info) *info = get_info(file, path);
  return params;
}

int checkpoint_input_dim(const io::SafetensorsFile& file, const std::string& path) {
  const auto dim = file.metadata.find("input_dim");
  size_t used = 0;
  int value = 0;
  try {
    value = std::stoi(dim == file.metadata.end() ? "" : dim->second, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != dim->second.size() || value < 1)
    throw std::runtime_error(path + ": __metadata__ lacks a valid input_dim (a positive integer)");
  return value;
}

void save_optimizer(const std::string& path, const OptimizerState& state,
                    const CheckpointInfo& info) {
  io::SafetensorsFile file;
  file.metadata["format"] = kOptimizerFormat;
  put_info(info, &file.metadata);
  file.tensors["m"] =
      io::Tensor::from_floats(state.m.data(), {static_cast<int64_t>(state.m.size())});
  file.tensors["v"] =
      io::Tensor::from_floats(state.v.data(), {static_cast<int64_t>(state.v.size())});
  file.tensors["step_state.counters"] =
      io::Tensor::from_u64({state.step_state.step, state.step_state.draw_index});
  const float scalars[2] = {state.step_state.kl_weight, state.step_state.lr};
  file.tensors["step_state.kl_weight_lr"] = io::Tensor::from_floats(scalars, {2});
  io::write_safetensors(path, file);
}

OptimizerState load_optimizer(const std::string& path, size_t param_count, CheckpointInfo* info) {
  return decode_optimizer(io::read_file_bytes(path), path, param_count, info);
}

OptimizerState decode_optimizer(const std::vector<unsigned char>& bytes, const std::string& path,
                                size_t param_count, CheckpointInfo* info) {
  const io::SafetensorsFile file = io::decode_safetensors(bytes, path);
  require_format(file, path, kOptimizerFormat);
  const auto vector_of = [&](const char* name, const char* dtype, int64_t count) {
    const io::Tensor& t = file.at(name, path);
    if (t.dtype != dtype || t.shape != std::vector<int64_t>{count})
      throw std::runtime_error(path + ": tensor " + name + " has the wrong dtype or shape (the " +
                               "model has " + std::to_string(param_count) + " parameters)");
    return t;
  };
  OptimizerState state;
  state.m = vector_of("m", "F32", static_cast<int64_t>(param_count)).to_floats();
  state.v = vector_of("v", "F32", static_cast<int64_t>(param_count)).to_floats();
  const std::vector<uint64_t> counters = vector_of("step_state.counters", "U64", 2).to_u64();
  const std::vector<float> scalars = vector_of("step_state.kl_weight_lr", "F32", 2).to_floats();
  state.step_state.step = counters[0];
  state.step_state.draw_index = counters[1];
  state.step_state.kl_weight = scalars[0];
  state.step_state.lr = scalars[1];
  if (info) *info = get_info(file, path);
  return state;
}

namespace {

namespace fs = std::filesystem;

constexpr const char* kModelFile = "model.safetensors";
constexpr const char* kOptimizerFile = "optimizer.safetensors";

std::string epoch_folder(int epoch) {
  char name[32];
  std::snprintf(name, sizeof name, "epoch-%06d", epoch);
  return name;
}

// The epoch of a committed checkpoint folder's name, or -1 for anything else.
int epoch_of_folder(const std::string& name) {
  if (name.size() != 12 || name.compare(0, 6, "epoch-") != 0) return -1;
  if (name.find_first_not_of("0123456789", 6) != std::string::npos) return -1;
  return std::stoi(name.substr(6));
}

void fsync_dir(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

// `target` atomically replaced by a hard link to `source` (a copy where links are not possible).
void replace_with_link(const fs::path& source, const fs::path& target) {
  const fs::path temp = target.parent_path() /
                        ("." + target.filename().string() + ".link." + std::to_string(::getpid()));
  ::unlink(temp.c_str());
  if (::link(source.c_str(), temp.c_str()) == 0) {
    // rename() between two links of one file does nothing and leaves `temp`: remove it then.
    if (::rename(temp.c_str(), target.c_str()) == 0) {
      ::unlink(temp.c_str());
      return;
    }
    const int err = errno;
    ::unlink(temp.c_str());
    throw std::runtime_error(target.string() + ": rename failed (" + std::strerror(err) + ")");
  }
  const std::vector<unsigned char> bytes = io::read_file_bytes(source.string());
  io::write_file_atomically(target.string(), bytes.data(), bytes.size());
}

// Removes a committed checkpoint folder by renaming it out of the committed names first, so that a
// crash during the removal cannot leave a half-deleted folder that looks committed.
void retire(const fs::path& dir) {
  const fs::path aside = dir.parent_path() /
                         (".retired-" + dir.filename().string() + "-" + std::to_string(::getpid()));
  std::error_code ec;
  fs::remove_all(aside, ec);
  if (::rename(dir.c_str(), aside.c_str()) == 0)
    fs::remove_all(aside, ec);
  else
    fs::remove_all(dir, ec);
}

std::vector<std::pair<int, fs::path>> committed_checkpoints(const fs::path& run) {
  std::vector<std::pair<int, fs::path>> found;
  std::error_code ec;
  const fs::path dir = run / kCheckpointsDir;
  if (!fs::is_directory(dir, ec)) return found;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const int epoch = epoch_of_folder(entry.path().filename().string());
    if (epoch >= 0 && entry.is_directory(ec)) found.emplace_back(epoch, entry.path());
  }
  std::sort(found.begin(), found.end(),
            [](const auto& a, const auto& b) { return a.first > b.first; });
  return found;
}

// Loads the pair in `dir`; throws one line when either file does not load or they disagree.
void load_pair(const fs::path& dir, const ModelConfig& model, ResumePoint* point) {
  CheckpointInfo optimizer_info;
  point->params = load_model((dir / kModelFile).string(), model, &point->info);
  point->state =
      load_optimizer((dir / kOptimizerFile).string(), point->params.size(), &optimizer_info);
  if (optimizer_info.step != point->info.step || optimizer_info.epoch != point->info.epoch)
    throw std::runtime_error(
        dir.string() + ": model.safetensors (step " + std::to_string(point->info.step) +
        ") and optimizer.safetensors (step " + std::to_string(optimizer_info.step) +
        ") are from different epochs; a pair torn like this cannot be "
        "resumed (start the run again with --overwrite)");
  point->where = dir.string();
}

}  // namespace

void commit_checkpoint(const std::string& run_dir, const ModelConfig& model,
                       const std::vector<float>& params, const OptimizerState& state,
                       const CheckpointInfo& info) {
  const fs::path run(run_dir);
  const fs::path checkpoints = run / kCheckpointsDir;
  const fs::path final_dir = checkpoints / epoch_folder(info.epoch);
  const fs::path temp_dir =
      checkpoints / ("." + epoch_folder(info.epoch) + ".tmp-" + std::to_string(::getpid()));
  std::error_code ec;
  if (!fs::is_directory(run, ec))
    throw std::runtime_error(run_dir + ": the run directory has vanished; no checkpoint written");
  fs::create_directory(checkpoints, ec);
  if (ec && !fs::is_directory(checkpoints))
    throw std::runtime_error(checkpoints.string() + ": cannot create (" + ec.message() + ")");
  fs::remove_all(temp_dir, ec);
  if (!fs::create_directory(temp_dir, ec))
    throw std::runtime_error(temp_dir.string() + ": cannot create (" +
                             (ec ? ec.message() : std::string("exists")) +
                             "); the previous checkpoint is kept");
  try {
    save_optimizer((temp_dir / kOptimizerFile).string(), state, info);
    save_model((temp_dir / kModelFile).string(), model, params, info);
    // A committed folder of the same epoch is one a resume skipped as unreadable: replace it.
    if (fs::exists(final_dir)) retire(final_dir);
    if (::rename(temp_dir.c_str(), final_dir.c_str()) != 0)
      throw std::runtime_error(final_dir.string() + ": rename failed (" + std::strerror(errno) +
                               ")");
  } catch (const std::exception& e) {
    fs::remove_all(temp_dir, ec);
    throw std::runtime_error(final_dir.string() + ": the checkpoint was not written (" + e.what() +
                             "); the previous checkpoint is kept");
  }
  fsync_dir(checkpoints);
  publish_checkpoint(run_dir, final_dir.string());
}

void publish_checkpoint(const std::string& run_dir, const std::string& checkpoint_dir) {
  const fs::path run(run_dir), dir(checkpoint_dir);
  // The readers' copies: optimizer first, so that between the two a reader of model.safetensors
  // sees the older model, never a newer model without its optimizer (resume reads checkpoints/).
  replace_with_link(dir / kOptimizerFile, run / kOptimizerFile);
  replace_with_link(dir / kModelFile, run / kModelFile);
  fsync_dir(run);
  for (const auto& [epoch, other] : committed_checkpoints(run))
    if (other.filename() != dir.filename()) retire(other);
}

bool find_resume_point(const std::string& run_dir, const ModelConfig& model, ResumePoint* found) {
  const fs::path run(run_dir);
  std::vector<fs::path> candidates;
  for (const auto& [epoch, dir] : committed_checkpoints(run)) candidates.push_back(dir);
  if (fs::exists(run / kModelFile) || fs::exists(run / kOptimizerFile)) candidates.push_back(run);
  if (candidates.empty()) return false;
  std::string newest_error;
  std::vector<std::string> skipped;
  for (const fs::path& dir : candidates) {
    ResumePoint point;
    try {
      load_pair(dir, model, &point);
    } catch (const std::exception& e) {
      if (newest_error.empty()) newest_error = e.what();
      skipped.push_back(e.what());
      continue;
    }
    // The top-level pair can be older than a committed checkpoint only if that one was skipped.
    point.skipped = std::move(skipped);
    *found = std::move(point);
    return true;
  }
  throw std::runtime_error(newest_error);
}

bool has_checkpoint(const std::string& run_dir) {
  const fs::path run(run_dir);
  return !committed_checkpoints(run).empty() || fs::exists(run / kModelFile) ||
         fs::exists(run / kOptimizerFile);
}

void remove_checkpoints(const std::string& run_dir) {
  fs::remove_all(fs::path(run_dir) / kCheckpointsDir);
}

void remove_uncommitted_checkpoints(const std::string& run_dir) {
  std::error_code ec;
  std::vector<fs::path> stale;
  // Temporary folders of a commit that never happened, and the temporary files of an atomic
  // replacement (.NAME.tmp.PID, .NAME.link.PID) that was cut short.
  for (const fs::path& dir : {fs::path(run_dir) / kCheckpointsDir, fs::path(run_dir)}) {
    if (!fs::is_directory(dir, ec)) continue;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      const std::string name = entry.path().filename().string();
      if (name.rfind(".epoch-", 0) == 0 || name.rfind(".retired-", 0) == 0 ||
          (name[0] == '.' &&
           (name.find(".tmp.") != std::string::npos || name.find(".link.") != std::string::npos)))
        stale.push_back(entry.path());
    }
  }
  for (const fs::path& p : stale) fs::remove_all(p, ec);
}

}  // namespace fusedvae::cli
