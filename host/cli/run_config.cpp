// @brief The table of run settings (flag = config key), JSON conversion and CLI11 registration.
#include "host/cli/run_config.h"

#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <CLI/CLI.hpp>

#include "host/io/printable.h"

namespace fusedvae::cli {
namespace {

using json = nlohmann::json;

[[noreturn]] void bad(const std::string& name, const std::string& why) {
  throw std::invalid_argument("--" + name + ": " + why);
}

// A value as a message quotes it: strings as they are (escaped), the rest as JSON, cut short.
std::string shown(const json& value) {
  return io::printable(value.is_string() ? value.get<std::string>() : value.dump());
}

template <typename T>
using Accessor = T& (*)(RunConfig&);

int64_t as_integer(const std::string& name, const json& v) {
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (std::floor(d) == d && std::fabs(d) < 9.0e15) return static_cast<int64_t>(d);
  }
  bad(name, "expected an integer, got " + shown(v));
}

Field int_field(const char* name, const char* help, Accessor<int> at, int minimum) {
  return {name, FieldKind::kInt, help,
          [at](const RunConfig& c) { return json(at(const_cast<RunConfig&>(c))); },
          [at, name = std::string(name), minimum](RunConfig& c, const json& v) {
            const int64_t n = as_integer(name, v);
            if (n < minimum || n > 2147483647)
              bad(name, "must be an integer >= " + std::to_string(minimum) + ", got " + shown(v));
            at(c) = static_cast<int>(n);
          }};
}

Field int64_field(const char* name, const char* help, Accessor<int64_t> at, int64_t minimum) {
  return {name, FieldKind::kInt, help,
          [at](const RunConfig& c) { return json(at(const_cast<RunConfig&>(c))); },
          [at, name = std::string(name), minimum](RunConfig& c, const json& v) {
            const int64_t n = as_integer(name, v);
            if (n < minimum)
              bad(name, "must be >= " + std::to_string(minimum) + ", got " + shown(v));
            at(c) = n;
          }};
}

enum class Bound { kAny, kPositive, kNonNegative, kUnit, kUnitOpen };

Field float_field(const char* name, const char* help, Accessor<float> at, Bound bound) {
  return {name, FieldKind::kFloat, help,
          [at](const RunConfig& c) { return float_to_json(at(const_cast<RunConfig&>(c))); },
          [at, name = std::string(name), bound](RunConfig& c, const json& v) {
            if (!v.is_number()) bad(name, "expected a number, got " + shown(v));
            const double d = v.get<double>();
            const float f = static_cast<float>(d);
            if (!std::isfinite(d) || !std::isfinite(f)) {
              char text[32];
              std::snprintf(text, sizeof text, "%g", d);
              bad(name, std::string("must be a finite number") +
                            (std::isfinite(d) ? " within float32's range" : "") + ", got " + text);
            }
            switch (bound) {
              case Bound::kPositive:
                if (!(f > 0.0f)) bad(name, "must be > 0, got " + shown(v));
                break;
              case Bound::kNonNegative:
                if (f < 0.0f) bad(name, "must be >= 0, got " + shown(v));
                break;
              case Bound::kUnit:
                if (f < 0.0f || f > 1.0f) bad(name, "must be in [0, 1], got " + shown(v));
                break;
              case Bound::kUnitOpen:
                if (f < 0.0f || f >= 1.0f) bad(name, "must be in [0, 1), got " + shown(v));
                break;
              case Bound::kAny:
                break;
            }
            at(c) = f;
          }};
}

Field bool_field(const char* name, const char* help, Accessor<bool> at) {
  return {name, FieldKind::kBool, help,
          [at](const RunConfig& c) { return json(at(const_cast<RunConfig&>(c))); },
          [at, name = std::string(name)](RunConfig& c, const json& v) {
            if (!v.is_boolean()) bad(name, "expected true or false, got " + shown(v));
            at(c) = v.get<bool>();
          }};
}

Field string_field(const char* name, const char* help, Accessor<std::string> at) {
  return {name, FieldKind::kString, help,
          [at](const RunConfig& c) { return json(at(const_cast<RunConfig&>(c))); },
          [at, name = std::string(name)](RunConfig& c, const json& v) {
            if (!v.is_string()) bad(name, "expected a string, got " + shown(v));
            at(c) = v.get<std::string>();
          }};
}

// A named choice stored as an enum (or a string). `names` lists the accepted spellings.
template <typename Enum>
Field choice_field(const char* name, const std::string& help, Accessor<Enum> at,
                   std::vector<std::pair<Enum, std::string>> names) {
  std::string options;
  for (const auto& [value, spelling] : names) options += (options.empty() ? "" : "|") + spelling;
  return {name, FieldKind::kString, help + " (" + options + ")",
          [at, names](const RunConfig& c) {
            const Enum value = at(const_cast<RunConfig&>(c));
            for (const auto& [v, spelling] : names)
              if (v == value) return json(spelling);
            return json("unknown");
          },
          [at, names, options, name = std::string(name)](RunConfig& c, const json& v) {
            if (v.is_string())
              for (const auto& [value, spelling] : names)
                if (spelling == v.get<std::string>()) {
                  at(c) = value;
                  return;
                }
            bad(name, "expected one of " + options + ", got " + shown(v));
          }};
}

Field hidden_field() {
  return {
      "hidden", FieldKind::kIntList,
      "encoder hidden widths, comma-separated; the decoder mirrors them (empty: no hidden layer)",
      [](const RunConfig& c) { return json(c.train.model.hidden); },
      [](RunConfig& c, const json& v) {
        if (!v.is_array()) bad("hidden", "expected a list of widths, got " + shown(v));
        std::vector<int> widths;
        for (const json& w : v) {
          const int64_t n = as_integer("hidden", w);
          if (n < 1 || n > 1000000) bad("hidden", "widths must be >= 1, got " + shown(w));
          widths.push_back(static_cast<int>(n));
        }
        c.train.model.hidden = widths;
      }};
}

Field seed_field() {
  return {"seed", FieldKind::kUint64, "random seed (initialisation, shuffling, sampling)",
          [](const RunConfig& c) { return json(c.train.seed); },
          [](RunConfig& c, const json& v) {
            if (!v.is_number_unsigned()) bad("seed", "expected an integer >= 0, got " + shown(v));
            c.train.seed = v.get<uint64_t>();
          }};
}

std::vector<Field> make_fields() {
  std::vector<Field> f;
  // Model.
  f.push_back(hidden_field());
  f.push_back(int_field(
      "latent", "latent dimension", [](RunConfig& c) -> int& { return c.train.model.latent_dim; },
      1));
  f.push_back(
      choice_field<Activation>("activation", "hidden-layer activation",
                               [](RunConfig& c) -> Activation& { return c.train.model.activation; },
                               {{Activation::kRelu, activation_name(Activation::kRelu)},
                                {Activation::kTanh, activation_name(Activation::kTanh)}}));
  f.push_back(choice_field<ReconLossKind>(
      "loss", "reconstruction loss",
      [](RunConfig& c) -> ReconLossKind& { return c.train.model.recon.kind; },
      // The spellings of op_params.cpp, which checkpoints use too.
      {{ReconLossKind::kBernoulliLogits, recon_loss_name(ReconLossKind::kBernoulliLogits)},
       {ReconLossKind::kGaussian, recon_loss_name(ReconLossKind::kGaussian)},
       {ReconLossKind::kMse, recon_loss_name(ReconLossKind::kMse)},
       {ReconLossKind::kSmoothL1, recon_loss_name(ReconLossKind::kSmoothL1)}}));
  f.push_back(float_field(
      "sigma", "standard deviation of the Gaussian likelihood (--loss gaussian)",
      [](RunConfig& c) -> float& { return c.train.model.recon.gaussian_sigma; }, Bound::kPositive));
  f.push_back(float_field(
      "smooth-l1-beta", "threshold of the smooth L1 loss (0 = L1)",
      [](RunConfig& c) -> float& { return c.train.model.recon.smooth_l1_beta; },
      Bound::kNonNegative));
  f.push_back(float_field(
      "logvar-min", "lower clamp of the encoder's log-variance",
      [](RunConfig& c) -> float& { return c.train.model.clamp.min; }, Bound::kAny));
  f.push_back(float_field(
      "logvar-max", "upper clamp of the encoder's log-variance",
      [](RunConfig& c) -> float& { return c.train.model.clamp.max; }, Bound::kAny));
  // Optimisation.
  f.push_back(choice_field<BatchReduction>(
      "reduction", "how per-sample losses form the batch loss",
      [](RunConfig& c) -> BatchReduction& { return c.train.reduction; },
      {{BatchReduction::kMean, "mean"}, {BatchReduction::kSum, "sum"}}));
  f.push_back(int_field(
      "batch-size", "samples per step", [](RunConfig& c) -> int& { return c.train.batch_size; },
      1));
  f.push_back(int_field(
      "epochs", "passes over the training set", [](RunConfig& c) -> int& { return c.train.epochs; },
      1));
  f.push_back(float_field(
      "lr", "learning rate (AdamW)", [](RunConfig& c) -> float& { return c.train.optimizer.lr; },
      Bound::kPositive));
  f.push_back(float_field(
      "beta1", "AdamW first-moment decay",
      [](RunConfig& c) -> float& { return c.train.optimizer.beta1; }, Bound::kUnitOpen));
  f.push_back(float_field(
      "beta2", "AdamW second-moment decay",
      [](RunConfig& c) -> float& { return c.train.optimizer.beta2; }, Bound::kUnitOpen));
  f.push_back(float_field(
      "adam-eps", "AdamW epsilon", [](RunConfig& c) -> float& { return c.train.optimizer.eps; },
      Bound::kPositive));
  f.push_back(float_field(
      "weight-decay", "decoupled weight decay (0 = Adam)",
      [](RunConfig& c) -> float& { return c.train.optimizer.weight_decay; }, Bound::kNonNegative));
  f.push_back(choice_field<LrSchedule>(
      "lr-schedule", "learning-rate schedule",
      [](RunConfig& c) -> LrSchedule& { return c.train.optimizer.schedule; },
      {{LrSchedule::kConstant, "constant"}, {LrSchedule::kCosine, "cosine"}}));
  f.push_back(float_field(
      "min-lr", "final learning rate of the cosine schedule",
      [](RunConfig& c) -> float& { return c.train.optimizer.min_lr; }, Bound::kNonNegative));
  f.push_back(float_field(
      "max-grad-norm", "clip gradients to this global norm (0 = off)",
      [](RunConfig& c) -> float& { return c.train.optimizer.max_grad_norm; }, Bound::kNonNegative));
  // KL term.
  f.push_back(
      choice_field<KlScheduleKind>("kl-schedule", "KL-weight annealing",
                                   [](RunConfig& c) -> KlScheduleKind& { return c.train.kl.kind; },
                                   {{KlScheduleKind::kConstant, "constant"},
                                    {KlScheduleKind::kLinear, "linear"},
                                    {KlScheduleKind::kLogistic, "logistic"},
                                    {KlScheduleKind::kCyclical, "cyclical"}}));
  f.push_back(float_field(
      "kl-weight", "final KL weight (beta)",
      [](RunConfig& c) -> float& { return c.train.kl.weight; }, Bound::kNonNegative));
  f.push_back(float_field(
      "kl-x0", "annealing midpoint / ramp length in steps (linear, logistic)",
      [](RunConfig& c) -> float& { return c.train.kl.x0; }, Bound::kNonNegative));
  f.push_back(float_field(
      "kl-k", "logistic annealing steepness", [](RunConfig& c) -> float& { return c.train.kl.k; },
      Bound::kAny));
  f.push_back(int64_field(
      "kl-cycle-steps", "steps per cycle (cyclical)",
      [](RunConfig& c) -> int64_t& { return c.train.kl.cycle_steps; }, 1));
  f.push_back(float_field(
      "kl-cycle-ratio", "share of each cycle spent ramping (cyclical)",
      [](RunConfig& c) -> float& { return c.train.kl.cycle_ratio; }, Bound::kUnit));
  f.push_back(float_field(
      "free-bits", "floor on the KL per latent dimension in nats (0 = off)",
      [](RunConfig& c) -> float& { return c.train.kl.free_bits; }, Bound::kNonNegative));
  // Run.
  f.push_back(seed_field());
  f.push_back(bool_field("binarize", "dynamic binarisation of the inputs",
                         [](RunConfig& c) -> bool& { return c.train.binarize; }));
  f.push_back(bool_field("tf32", "TF32 matrix products on the GPU",
                         [](RunConfig& c) -> bool& { return c.train.tf32; }));
  f.push_back(bool_field("cuda-graph",
                         "replay the GPU training step as one captured CUDA graph (same results; "
                         "--no-cuda-graph launches its kernels one by one)",
                         [](RunConfig& c) -> bool& { return c.train.cuda_graph; }));
  f.push_back(choice_field<std::string>("device",
                                        "where to train; auto picks the GPU when one is usable",
                                        [](RunConfig& c) -> std::string& { return c.device; },
                                        {{"auto", "auto"}, {"cpu", "cpu"}, {"gpu", "gpu"}}));
  f.push_back(int_field(
      "log-every", "steps between loss read-backs, progress updates and metrics lines",
      [](RunConfig& c) -> int& { return c.log_every; }, 1));
  // Data.
  f.push_back(string_field("data",
                           "MNIST-style dataset directory (IDX files); empty: Fashion-MNIST",
                           [](RunConfig& c) -> std::string& { return c.data.dir; }));
  f.push_back(string_field("train", "training-set file, IDX, NPY or CSV (instead of --data)",
                           [](RunConfig& c) -> std::string& { return c.data.train_file; }));
  f.push_back(string_field("train-labels", "labels of --train (IDX or NPY)",
                           [](RunConfig& c) -> std::string& { return c.data.train_labels; }));
  f.push_back(string_field("test", "test-set file (with --train)",
                           [](RunConfig& c) -> std::string& { return c.data.test_file; }));
  f.push_back(string_field("test-labels", "labels of --test (IDX or NPY)",
                           [](RunConfig& c) -> std::string& { return c.data.test_labels; }));
  f.push_back(string_field("label-column", "CSV label column, index or header name (empty: none)",
                           [](RunConfig& c) -> std::string& { return c.data.label_column; }));
  f.push_back(choice_field<std::string>(
      "format", "dataset file format", [](RunConfig& c) -> std::string& { return c.data.format; },
      {{"auto", "auto"}, {"idx", "idx"}, {"npy", "npy"}, {"csv", "csv"}}));
  f.push_back(float_field(
      "validation-fraction", "share of the training set held out for validation",
      [](RunConfig& c) -> float& { return c.data.validation_fraction; }, Bound::kUnitOpen));
  return f;
}

}  // namespace

json float_to_json(float value) {
  if (!std::isfinite(value)) return nullptr;  // JSON has no NaN or infinity
  char text[32];
  for (int digits = 6; digits <= 9; ++digits) {
    std::snprintf(text, sizeof text, "%.*g", digits, static_cast<double>(value));
    if (std::strtof(text, nullptr) == value) break;
  }
  return json::parse(text);
}

const std::vector<Field>& run_config_fields() {
  static const std::vector<Field> fields = make_fields();
  return fields;
}

const Field* find_field(const std::string& name) {
  for (const Field& f : run_config_fields())
    if (f.name == name) return &f;
  return nullptr;
}

nlohmann::ordered_json to_json(const RunConfig& config) {
  nlohmann::ordered_json out = nlohmann::ordered_json::object();
  for (const Field& f : run_config_fields()) out[f.name] = f.get(config);
  return out;
}

void apply_json(const nlohmann::json& object, const std::string& source, RunConfig* config) {
  if (!object.is_object())
    throw std::invalid_argument(source + ": expected a JSON object of settings");
  for (const auto& [key, value] : object.items()) {
    if (key == kRunDirKey) {  // where the run goes, not a setting of it: train reads it
      if (!value.is_string())
        throw std::invalid_argument(source + ": --run-dir: expected a string, got " + shown(value));
      continue;
    }
    const Field* field = find_field(key);
    if (!field)
      throw std::invalid_argument(source + ": unknown key '" + io::printable(key) +
                                  "' (keys are the long flag names, e.g. \"batch-size\")");
    try {
      field->set(*config, value);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(source + ": " + e.what());
    }
  }
}

namespace {

// The config file's JSON object. A config is a few hundred bytes: anything beyond 1 MiB (a device
// such as /dev/zero included) is refused instead of read without end.
json read_config_json(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open the config file");
  constexpr size_t kMaxBytes = 1 << 20;
  std::string text(kMaxBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (text.size() > kMaxBytes)
    throw std::runtime_error(path + ": larger than 1 MiB, not a config file");
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    throw std::runtime_error(path + ": not valid JSON (byte " + std::to_string(e.byte) + ")");
  }
}

}  // namespace

RunConfig read_config_file(const std::string& path, const RunConfig& base) {
  const json object = read_config_json(path);
  RunConfig config = base;
  apply_json(object, path, &config);
  return config;
}

std::string read_config_run_dir(const std::string& path) {
  const json object = read_config_json(path);
  if (!object.is_object() || !object.contains(kRunDirKey)) return "";
  return object[kRunDirKey].get<std::string>();
}

void validate(const RunConfig& config) {
  const ModelConfig& m = config.train.model;
  if (!(m.clamp.min < m.clamp.max))
    throw std::invalid_argument("--logvar-min must be below --logvar-max, got " +
                                shown(float_to_json(m.clamp.min)) + " and " +
                                shown(float_to_json(m.clamp.max)));
  if (config.train.optimizer.min_lr > config.train.optimizer.lr)
    throw std::invalid_argument("--min-lr must not exceed --lr");
  if (config.data.train_file.empty() && !config.data.test_file.empty())
    throw std::invalid_argument("--test needs --train (or use --data DIR)");
  if (!config.data.train_file.empty() && !config.data.dir.empty())
    throw std::invalid_argument("give either --data DIR or --train FILE, not both");
}

json parse_flag_value(const Field& field, const std::string& text) {
  auto number = [&](bool integer) -> json {
    const char* begin = text.c_str();
    char* end = nullptr;
    if (integer) {
      errno = 0;
      if (!text.empty() && text[0] == '-') {
        const long long v = std::strtoll(begin, &end, 10);
        if (end != begin && *end == '\0' && errno == 0) return json(static_cast<int64_t>(v));
      } else {
        const unsigned long long v = std::strtoull(begin, &end, 10);
        if (end != begin && *end == '\0' && errno == 0) return json(static_cast<uint64_t>(v));
      }
      bad(field.name, "expected an integer, got '" + io::printable(text) + "'");
    }
    const double v = std::strtod(begin, &end);
    if (end == begin || *end != '\0')
      bad(field.name, "expected a number, got '" + io::printable(text) + "'");
    return json(v);
  };
  switch (field.kind) {
    case FieldKind::kInt:
    case FieldKind::kUint64:
      return number(true);
    case FieldKind::kFloat:
      return number(false);
    case FieldKind::kBool:
      if (text == "true" || text == "1" || text == "on") return true;
      if (text == "false" || text == "0" || text == "off") return false;
      bad(field.name, "expected true or false, got '" + io::printable(text) + "'");
    case FieldKind::kIntList: {
      json list = json::array();
      std::stringstream stream(text);
      std::string item;
      while (std::getline(stream, item, ',')) {
        char* end = nullptr;
        const long v = std::strtol(item.c_str(), &end, 10);
        if (item.empty() || *end != '\0')
          bad(field.name, "expected comma-separated integers, got '" + io::printable(text) + "'");
        list.push_back(v);
      }
      return list;
    }
    case FieldKind::kString:
    default:
      return text;
  }
}

void FlagSet::add_to(CLI::App& app, const RunConfig& defaults) {
  for (const Field& field : run_config_fields()) {
    auto slot = std::make_unique<Slot>();
    slot->field = &field;
    const json value = field.get(defaults);
    std::string default_text = shown(value);
    if (field.kind == FieldKind::kIntList) {
      default_text.clear();
      for (const json& w : value) default_text += (default_text.empty() ? "" : ",") + w.dump();
    }
    CLI::Option* option = nullptr;
    if (field.kind == FieldKind::kBool) {
      // --name sets it, --no-name clears it (CLI11 stores "false" for the negated spelling).
      option =
          app.add_flag("--" + field.name + ",!--no-" + field.name, slot->text,
                       field.help + (value.get<bool>() ? " (default: on)" : " (default: off)"));
    } else {
      option = app.add_option("--" + field.name, slot->text, field.help);
      option->type_name(field.kind == FieldKind::kString    ? "TEXT"
                        : field.kind == FieldKind::kFloat   ? "FLOAT"
                        : field.kind == FieldKind::kIntList ? "INT,..."
                                                            : "INT");
    }
    if (field.kind != FieldKind::kBool) option->default_str(default_text);
    options_.push_back(option);
    slots_.push_back(std::move(slot));
  }
}

void FlagSet::apply_slot(size_t i, RunConfig* config) const {
  const Field& field = *slots_[i]->field;
  // A bare boolean flag (--binarize) stores "true"; --binarize=false stores "false".
  const std::string text = slots_[i]->text.empty() && field.kind == FieldKind::kBool
                               ? std::string("true")
                               : slots_[i]->text;
  field.set(*config, parse_flag_value(field, text));
}

void FlagSet::apply(RunConfig* config) const {
  for (size_t i = 0; i < slots_.size(); ++i)
    if (static_cast<const CLI::Option*>(options_[i])->count() > 0) apply_slot(i, config);
}

void FlagSet::apply_one(const FlagSet& flags, const std::string& name, RunConfig* config) {
  for (size_t i = 0; i < flags.slots_.size(); ++i)
    if (flags.slots_[i]->field->name == name) flags.apply_slot(i, config);
}

std::vector<std::string> FlagSet::given() const {
  std::vector<std::string> names;
  for (size_t i = 0; i < slots_.size(); ++i)
    if (static_cast<const CLI::Option*>(options_[i])->count() > 0)
      names.push_back(slots_[i]->field->name);
  return names;
}

}  // namespace fusedvae::cli
