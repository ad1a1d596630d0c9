// @brief Model and optimizer checkpoints in safetensors, with architecture checks on load.
#include "host/cli/checkpoint.h"

#include <cmath>
#include <cstring>
#include <stdexcept>

#include "host/cli/run_config.h"
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
    throw std::runtime_error(path + ": not a fusedvae checkpoint (__metadata__ format is '" +
                             (it == file.metadata.end() ? std::string("absent") : it->second) +
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
  const io::SafetensorsFile file = io::read_safetensors(path);
  require_format(file, path, kModelFormat);
  for (const auto& [key, value] : model_metadata(expected)) {
    const auto it = file.metadata.find(key);
    const std::string found = it == file.metadata.end() ? "(absent)" : it->second;
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
  const io::SafetensorsFile file = io::read_safetensors(path);
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

}  // namespace fusedvae::cli
