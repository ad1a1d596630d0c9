// @brief `fusedvae dyad` and `fusedvae dyad-score` (dyad_command.h).
#include "host/cli/dyad_command.h"

#include <CLI/CLI.hpp>
#include <cuda_runtime_api.h>

#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <stdexcept>

#include "host/cli/stop_signals.h"
#include "host/data/snippet_normalisation.h"
#include "host/data/snippets.h"
#include "host/eval/fault_detection.h"
#include "host/io/memory_check.h"
#include "host/io/plot.h"
#include "host/io/png.h"
#include "host/io/safetensors.h"
#include "host/model/dyad_model.h"
#include "host/train/trainer.h"

namespace fusedvae::cli {
namespace fs = std::filesystem;

const std::vector<DyadPreset>& dyad_presets() {
  // name, H, layers, latent, batch, epochs, lr, noise_scale, anneal0, nll, label, cosine_factor
  static const std::vector<DyadPreset> presets = {
      {"dyad-brand1", 128, 2, 8, 128, 3, 5e-3f, 1.0f, 0.01f, 10, 0.001f, 0.1f, {"soc", "current"}},
      {"dyad-brand2",
       1024,
       1,
       24,
       128,
       3,
       1e-4f,
       0.01f,
       0.1f,
       5,
       1,
       0.1f,
       {"soc", "current", "min_temp", "max_single_volt"}},
      {"dyad-brand3", 256, 1, 16, 128, 5, 5e-3f, 0.01f, 0.1f, 10, 0.001f, 0.1f, {"soc", "current"}},
      {"dyad-fivefold", 64, 1, 32, 64, 10, 1e-3f, 0.01f, 0.1f, 10, 0.01f, 1.0f, {"soc", "current"}},
  };
  return presets;
}

const DyadPreset& dyad_preset(const std::string& name) {
  std::string names;
  for (const DyadPreset& p : dyad_presets()) {
    if (p.name == name) return p;
    names += (names.empty() ? "" : ", ") + p.name;
  }
  throw std::invalid_argument("--preset: no preset '" + name + "' (known: " + names + ")");
}

namespace {

// ---------------------------------------------------------------------------------------------
// Configuration

nlohmann::ordered_json to_json(const DyadRunConfig& c) {
  nlohmann::ordered_json j;
  j["data"] = c.data;
  j["preset"] = c.preset;
  j["decoder_channels"] = c.decoder_channels;
  j["hidden"] = c.hidden;
  j["layers"] = c.layers;
  j["bidirectional"] = c.bidirectional;
  j["latent"] = c.latent;
  j["batch_size"] = c.batch_size;
  j["epochs"] = c.epochs;
  j["lr"] = c.lr;
  j["noise_scale"] = c.noise_scale;
  j["anneal0"] = c.anneal0;
  j["kl_anneal"] = c.kl_anneal;
  j["kl_x0"] = c.kl_x0;
  j["kl_k"] = c.kl_k;
  j["nll_weight"] = c.nll_weight;
  j["label_weight"] = c.label_weight;
  j["cosine_factor"] = c.cosine_factor;
  j["weight_decay"] = c.weight_decay;
  j["norm_first"] = c.norm_first;
  j["folds"] = c.folds;
  j["fold"] = c.fold;
  j["seed"] = c.seed;
  return j;
}

DyadRunConfig config_from_json(const nlohmann::json& j) {
  DyadRunConfig c;
  c.data = j.at("data");
  c.preset = j.at("preset");
  c.decoder_channels = j.at("decoder_channels").get<std::vector<std::string>>();
  c.hidden = j.at("hidden");
  c.layers = j.at("layers");
  c.bidirectional = j.at("bidirectional");
  c.latent = j.at("latent");
  c.batch_size = j.at("batch_size");
  c.epochs = j.at("epochs");
  c.lr = j.at("lr");
  c.noise_scale = j.at("noise_scale");
  c.anneal0 = j.at("anneal0");
  c.kl_anneal = j.at("kl_anneal");
  c.kl_x0 = j.at("kl_x0");
  c.kl_k = j.at("kl_k");
  c.nll_weight = j.at("nll_weight");
  c.label_weight = j.at("label_weight");
  c.cosine_factor = j.at("cosine_factor");
  c.weight_decay = j.at("weight_decay");
  c.norm_first = j.at("norm_first");
  c.folds = j.at("folds");
  c.fold = j.at("fold");
  c.seed = j.at("seed");
  return c;
}

// The trainer's configuration for a set with these channels and steps.
DyadTrainConfig train_config(const DyadRunConfig& c, const data::SnippetSet& set) {
  DyadTrainConfig t;
  t.model.channels = static_cast<int>(set.channel_count());
  t.model.steps = static_cast<int>(set.steps);
  for (size_t index : data::select_channels(set, c.decoder_channels))
    t.model.decoder_channels.push_back(static_cast<int>(index));
  t.model.hidden = c.hidden;
  t.model.layers = c.layers;
  t.model.bidirectional = c.bidirectional;
  t.model.latent = c.latent;
  t.batch_size = c.batch_size;
  t.epochs = c.epochs;
  t.seed = c.seed;
  t.noise_scale = c.noise_scale;
  t.nll_weight = c.nll_weight;
  t.label_weight = c.label_weight;
  t.optimizer.lr = c.lr;
  t.optimizer.weight_decay = c.weight_decay;
  t.optimizer.schedule = LrSchedule::kCosine;
  t.optimizer.min_lr = c.cosine_factor * c.lr;
  t.optimizer.lr_stairs = c.epochs;  // CosineAnnealingLR stepped once per epoch
  t.kl.kind = c.kl_anneal == "logistic" ? KlScheduleKind::kLogistic : KlScheduleKind::kLinear;
  t.kl.weight = c.anneal0;
  t.kl.x0 = c.kl_x0;
  t.kl.k = c.kl_k;
  return t;
}

// auto | cpu | gpu -> cpu | gpu: auto takes the GPU when one starts, and otherwise says on stderr
// (a notice, not a result) why it runs on the CPU.
std::string resolve_device(const std::string& device) {
  if (device != "auto") return device;
  std::string reason;
  if (cuda_device_present(&reason)) {
    try {
      make_gpu_backend(false, true);
      return "gpu";
    } catch (const std::exception& e) {
      reason = std::string("the GPU backend did not start: ") + e.what() +
               "; --device gpu makes this an error";
    }
  }
  std::cerr << "fusedvae: running on the CPU (" << reason << ")\n";
  return "cpu";
}

std::unique_ptr<Backend> make_backend(const std::string& device) {
  const std::string resolved = resolve_device(device);
  return resolved == "gpu" ? make_gpu_backend(false, true) : make_cpu_backend();
}

std::string utc_stamp() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", &tm);
  return buf;
}

void write_text(const std::string& path, const std::string& text) {
  io::write_file_atomically(path, text);
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string quoted = "\"";
  for (char ch : s) quoted += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return quoted + "\"";
}

// ---------------------------------------------------------------------------------------------
// The model file: the parameters under PyTorch's names, the run's configuration, the channel
// names in the model's order and the normalisation, so that a fold scores any fleet by name.

void save_model(const std::string& path, const DyadTrainer& trainer, const DyadRunConfig& config,
                const data::SnippetSet& set, const data::SnippetNormalisation& norm, int fold,
                int robust_h) {
  const DyadArchitecture arch = dyad_architecture(trainer.config().model);
  const ParamLayout layout = make_param_layout(arch.modules());
  const std::vector<float> params = trainer.params();
  io::SafetensorsFile file;
  for (const ParamTensor& t : layout.tensors)
    file.tensors[t.name] = io::Tensor::from_floats(params.data() + t.offset, t.shape);
  nlohmann::json n;
  n["mean"] = norm.mean;
  n["scale"] = norm.scale;
  n["mileage_min"] = norm.mileage_min;
  n["mileage_range"] = norm.mileage_range;
  file.metadata["format"] = "fusedvae-dyad";
  file.metadata["config"] = to_json(config).dump();
  file.metadata["channels"] = nlohmann::json(set.channels).dump();
  file.metadata["normalisation"] = n.dump();
  file.metadata["fold"] = std::to_string(fold);
  file.metadata["robust_h"] = std::to_string(robust_h);
  io::write_safetensors(path, file);
}

struct LoadedDyadModel {
  DyadRunConfig config;
  std::vector<std::string> channels;
  data::SnippetNormalisation norm;
  int robust_h = 100;
  io::SafetensorsFile file;
};

LoadedDyadModel load_model(const std::string& path) {
  LoadedDyadModel m;
  m.file = io::read_safetensors(path);
  const auto format = m.file.metadata.find("format");
  if (format == m.file.metadata.end() || format->second != "fusedvae-dyad")
    throw std::runtime_error(path + ": not a fusedvae dyad model (no format: fusedvae-dyad)");
  try {
    m.config = config_from_json(nlohmann::json::parse(m.file.metadata.at("config")));
    m.channels =
        nlohmann::json::parse(m.file.metadata.at("channels")).get<std::vector<std::string>>();
    const nlohmann::json n = nlohmann::json::parse(m.file.metadata.at("normalisation"));
    m.norm.mean = n.at("mean").get<std::vector<double>>();
    m.norm.scale = n.at("scale").get<std::vector<double>>();
    m.norm.mileage_min = n.at("mileage_min");
    m.norm.mileage_range = n.at("mileage_range");
    m.robust_h = std::stoi(m.file.metadata.at("robust_h"));
  } catch (const std::exception& e) {
    throw std::runtime_error(path + ": unreadable dyad metadata (" + e.what() + ")");
  }
  return m;
}

// The set with its channels reordered to `names` (the model's order), by name.
data::SnippetSet reorder_channels(const data::SnippetSet& set,
                                  const std::vector<std::string>& names) {
  const std::vector<size_t> index = data::select_channels(set, names);
  data::SnippetSet out = set;
  out.channels = names;
  const size_t c_in = set.channel_count(), c_out = names.size();
  out.values.resize(set.count * set.steps * c_out);
  for (size_t i = 0; i < set.count * set.steps; ++i)
    for (size_t c = 0; c < c_out; ++c) out.values[i * c_out + c] = set.values[i * c_in + index[c]];
  return out;
}

// ---------------------------------------------------------------------------------------------
// Scores and their files

enum class Role { kTrain, kTuning, kTest };
const char* role_name(Role r) {
  return r == Role::kTrain ? "train" : r == Role::kTuning ? "tuning" : "test";
}

void write_snippet_csv(const std::string& path, const data::SnippetSet& set,
                       const std::vector<float>& score, const std::map<std::string, Role>* roles) {
  std::ostringstream csv;
  csv << "snippet,vehicle,label,mileage,charge_segment," << (roles ? "role," : "") << "score\n";
  csv << std::setprecision(9);
  for (size_t i = 0; i < set.count; ++i) {
    const data::SnippetInfo& info = set.table[i];
    csv << i << ',' << csv_field(info.vehicle) << ',' << csv_field(info.label) << ','
        << info.mileage << ',' << info.charge_segment << ',';
    if (roles) csv << role_name(roles->at(info.vehicle)) << ',';
    csv << score[i] << '\n';
  }
  write_text(path, csv.str());
}

void write_vehicle_csv(const std::string& path, const std::vector<eval::VehicleScores>& vehicles,
                       const std::map<std::string, Role>* roles, int h) {
  std::ostringstream csv;
  csv << "vehicle,faulty," << (roles ? "role," : "") << "snippets,mean_score,robust_score_h" << h
      << "\n";
  csv << std::setprecision(9);
  for (const eval::VehicleScores& v : vehicles) {
    csv << csv_field(v.vehicle) << ',' << (v.faulty ? 1 : 0) << ',';
    if (roles) csv << role_name(roles->at(v.vehicle)) << ',';
    csv << v.snippets.size() << ',' << v.mean() << ',' << v.robust(h) << '\n';
  }
  write_text(path, csv.str());
}

std::vector<eval::VehicleScores> vehicle_scores(const data::SnippetSet& set,
                                                const std::vector<float>& score) {
  std::vector<std::string> vehicle;
  std::vector<bool> faulty;
  std::vector<double> s;
  for (size_t i = 0; i < set.count; ++i) {
    vehicle.push_back(set.table[i].vehicle);
    faulty.push_back(set.table[i].faulty);
    s.push_back(score[i]);
  }
  return eval::group_by_vehicle(vehicle, faulty, s);
}

struct TestVehicles {
  std::vector<double> robust, mean;
  std::vector<bool> faulty;
};

void write_pictures(const std::string& run_dir, const std::vector<FoldResult>& results,
                    const std::vector<TestVehicles>& tests) {
  // ROC of each fold's robust score on its test vehicles.
  io::Image roc(640, 560, {255, 255, 255});
  std::vector<io::Series> curves;
  for (size_t f = 0; f < tests.size(); ++f) {
    const eval::RocCurve c = eval::roc_curve(tests[f].robust, tests[f].faulty);
    std::ostringstream name;
    name << "fold " << results[f].fold << " (AUROC " << std::fixed << std::setprecision(3)
         << results[f].auroc_robust << ")";
    curves.push_back({name.str(), io::palette(static_cast<int>(f)), c.false_positive_rate,
                      c.true_positive_rate});
  }
  curves.push_back({"chance", {160, 160, 160}, {0.0, 1.0}, {0.0, 1.0}});
  io::draw_line_chart(roc, 0, 0, roc.width, roc.height, curves,
                      {"ROC of the robust vehicle score (test vehicles)", "false positive rate",
                       "true positive rate"});
  io::write_png(run_dir + "/roc.png", roc);

  // Histogram of log10 robust scores of the test vehicles, by label, pooled over folds.
  std::vector<double> normal, faulty;
  for (const TestVehicles& t : tests)
    for (size_t i = 0; i < t.robust.size(); ++i)
      (t.faulty[i] ? faulty : normal).push_back(std::log10(std::max(t.robust[i], 1e-12)));
  double lo = 1e300, hi = -1e300;
  for (const auto* v : {&normal, &faulty})
    for (double x : *v) lo = std::min(lo, x), hi = std::max(hi, x);
  const int bins = 24;
  const double width = hi > lo ? (hi - lo) / bins : 1.0;
  auto histogram = [&](const std::vector<double>& values, const std::string& name, io::Rgb color) {
    io::Series s{name, color, {}, {}, true};
    std::vector<double> counts(bins, 0.0);
    for (double x : values) counts[std::min(bins - 1, static_cast<int>((x - lo) / width))] += 1;
    for (int b = 0; b < bins; ++b) {
      s.x.push_back(lo + (b + 0.5) * width);
      s.y.push_back(counts[b]);
    }
    return s;
  };
  io::Image hist(640, 420, {255, 255, 255});
  io::draw_line_chart(
      hist, 0, 0, hist.width, hist.height,
      {histogram(normal, "normal vehicles", io::palette(0)),
       histogram(faulty, "faulty vehicles", io::palette(3))},
      {"Robust vehicle scores of the test vehicles, all folds", "log10 robust score", "vehicles"});
  io::write_png(run_dir + "/vehicle_scores.png", hist);
}

double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}
double std_of(const std::vector<double>& v) {
  const double m = mean_of(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / static_cast<double>(v.size()));
}

std::string fixed(double v, int digits) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(digits) << v;
  return s.str();
}

void prepare_run_dir(const DyadRunConfig& config, std::string* run_dir) {
  *run_dir = config.run_dir.empty() ? "runs/dyad-" + utc_stamp() : config.run_dir;
  std::error_code ec;
  if (fs::exists(*run_dir, ec) && !fs::is_empty(*run_dir, ec)) {
    if (!config.overwrite)
      throw std::invalid_argument(*run_dir +
                                  ": holds files already; choose another --run-dir or add "
                                  "--overwrite to replace them");
  }
  fs::create_directories(*run_dir, ec);
  if (ec)
    throw std::runtime_error(*run_dir + ": cannot create the run directory (" + ec.message() + ")");
}

std::map<std::string, Role> roles_of(const eval::Fold& fold) {
  std::map<std::string, Role> roles;
  for (const auto& v : fold.train_normal) roles[v] = Role::kTrain;
  for (const auto& v : fold.tuning_faulty) roles[v] = Role::kTuning;
  for (const auto* list : {&fold.test_normal, &fold.test_faulty})
    for (const auto& v : *list) roles[v] = Role::kTest;
  return roles;
}

// A fold's evaluation: every snippet scored at z = mu, the vehicle scores, h chosen on the tuning
// set (training normals and the fold's tuning faulty vehicles), the test AUROCs.
struct FoldScores {
  std::vector<float> snippet;
  std::vector<eval::VehicleScores> vehicles;
  TestVehicles test;
  int h = 0;
  double auroc_robust = 0, auroc_mean = 0;
};

FoldScores score_fold(DyadTrainer& trainer, const data::SnippetSet& set,
                      const data::SnippetNormalisation& norm,
                      const std::map<std::string, Role>& roles) {
  std::vector<size_t> all(set.count);
  for (size_t i = 0; i < set.count; ++i) all[i] = i;
  const data::NormalisedSnippets every = data::normalise(set, all, norm);
  FoldScores s;
  s.snippet = trainer.score({every.x.data(), nullptr, every.count()}).score;
  s.vehicles = vehicle_scores(set, s.snippet);
  std::vector<const eval::VehicleScores*> tuning;
  for (const eval::VehicleScores& v : s.vehicles)
    if (roles.at(v.vehicle) != Role::kTest) tuning.push_back(&v);
  s.h = eval::choose_h(tuning);
  for (const eval::VehicleScores& v : s.vehicles)
    if (roles.at(v.vehicle) == Role::kTest) {
      s.test.robust.push_back(v.robust(s.h));
      s.test.mean.push_back(v.mean());
      s.test.faulty.push_back(v.faulty);
    }
  s.auroc_robust = eval::auroc(s.test.robust, s.test.faulty);
  s.auroc_mean = eval::auroc(s.test.mean, s.test.faulty);
  return s;
}

void print_fold(std::ostream& out, int fold, const FoldScores& s, const std::string& tail) {
  out << "fold " << fold << ": test AUROC " << fixed(s.auroc_robust, 3)
      << " (robust score, h = " << s.h << " per mille, chosen on the tuning set), "
      << fixed(s.auroc_mean, 3) << " (mean score); " << s.test.faulty.size() << " test vehicles"
      << tail << std::endl;
}

// summary.json, the pictures and the closing lines.
void finish_summary(const DyadSummary& summary, const DyadRunConfig& config,
                    const std::vector<TestVehicles>& tests, const std::string& stem,
                    std::ostream& out) {
  std::vector<double> robust, mean;
  nlohmann::ordered_json j;
  j["config"] = to_json(config);
  for (const FoldResult& r : summary.folds) {
    robust.push_back(r.auroc_robust);
    mean.push_back(r.auroc_mean);
    j["folds"].push_back({{"fold", r.fold},
                          {"auroc_robust", r.auroc_robust},
                          {"auroc_mean", r.auroc_mean},
                          {"h", r.h},
                          {"seconds", r.seconds},
                          {"snippets_per_second", r.snippets_per_second}});
  }
  j["auroc_robust_mean"] = mean_of(robust);
  j["auroc_robust_std"] = std_of(robust);
  j["auroc_mean_mean"] = mean_of(mean);
  j["auroc_mean_std"] = std_of(mean);
  write_text(summary.run_dir + "/" + stem + ".json", j.dump(1) + "\n");
  write_pictures(summary.run_dir, summary.folds, tests);
  out << "AUROC over " << summary.folds.size() << " fold" << (summary.folds.size() > 1 ? "s" : "")
      << ": " << fixed(mean_of(robust), 3) << " +- " << fixed(std_of(robust), 3)
      << " (robust score), " << fixed(mean_of(mean), 3) << " +- " << fixed(std_of(mean), 3)
      << " (mean score)\n"
      << "wrote " << summary.run_dir << "/{" << stem
      << ".json, roc.png, vehicle_scores.png, fold*/}\n";
}

// A fold's trainer with the fold's trained parameters, for a set whose channels are put in the
// model's order by name.
struct FoldModel {
  LoadedDyadModel model;
  data::SnippetSet set;
  std::unique_ptr<DyadTrainer> trainer;
};

FoldModel load_fold(const std::string& fold_dir, const std::string& manifest,
                    const std::string& device) {
  FoldModel f;
  const std::string path = fold_dir + "/model.safetensors";
  f.model = load_model(path);
  f.set = reorder_channels(data::read_snippets(manifest), f.model.channels);
  const DyadTrainConfig train = train_config(f.model.config, f.set);
  f.trainer = make_dyad_trainer(train, make_backend(device));
  const ParamLayout layout = make_param_layout(dyad_architecture(train.model).modules());
  std::vector<float> params(layout.total);
  for (const ParamTensor& t : layout.tensors) {
    const io::Tensor& tensor = f.model.file.at(t.name, path);
    if (tensor.shape != t.shape)
      throw std::runtime_error(path + ": " + t.name +
                               " has the wrong shape for the model its metadata describes");
    const std::vector<float> values = tensor.to_floats();
    std::copy(values.begin(), values.end(), params.begin() + t.offset);
  }
  f.trainer->set_params(params);
  return f;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Flags

DyadCommands add_dyad_commands(CLI::App& app, DyadRunConfig* c, DyadScoreRequest* score) {
  DyadCommands commands;
  CLI::App* d = app.add_subcommand(
      "dyad", "DyAD battery fault detection: train the GRU VAE per fold, print five-fold AUROC");
  commands.dyad = d;
  d->add_option("--data", c->data,
                "snippet manifest (make the simulated fleet: python3 "
                "python_ref/dyad/fleet_sim.py --out fleet)")
      ->capture_default_str();
  std::string presets;
  for (const DyadPreset& p : dyad_presets()) presets += (presets.empty() ? "" : " | ") + p.name;
  d->add_option("--preset", c->preset, presets)->capture_default_str();
  d->add_option("--fold", c->fold, "run this fold only (0-based); default: every fold")
      ->check(CLI::Range(0, 1000));
  d->add_option("--folds", c->folds, "number of folds")
      ->check(CLI::Range(2, 1000))
      ->capture_default_str();
  d->add_option("--run-dir", c->run_dir,
                "where the run's files go (default: runs/dyad-<UTC time>)");
  d->add_flag("--overwrite", c->overwrite, "replace the files of a --run-dir that holds some");
  d->add_option("--device", c->device, "auto | cpu | gpu")
      ->check(CLI::IsMember({"auto", "cpu", "gpu"}))
      ->capture_default_str();
  d->add_option("--seed", c->seed, "initialisation, shuffles, draws and the fold split")
      ->capture_default_str();
  // Overrides of the preset (its values when not given).
  d->add_option("--decoder-channels", c->decoder_channels,
                "the decoder's input channels, by name (the others are predicted)")
      ->delimiter(',');
  d->add_option("--hidden", c->hidden, "GRU hidden size")->check(CLI::Range(1, 1 << 16));
  d->add_option("--layers", c->layers, "GRU layers")->check(CLI::Range(1, 64));
  d->add_flag("--bidirectional,!--unidirectional", c->bidirectional,
              "bidirectional GRUs (default) or forward only");
  d->add_option("--latent", c->latent, "latent size")->check(CLI::Range(1, 1 << 16));
  d->add_option("--batch-size", c->batch_size, "snippets per step")->check(CLI::Range(1, 1 << 24));
  d->add_option("--epochs", c->epochs, "epochs per fold")->check(CLI::Range(0, 1 << 20));
  d->add_option("--lr", c->lr, "AdamW learning rate")->check(CLI::PositiveNumber);
  d->add_option("--noise-scale", c->noise_scale,
                "z = mu + noise_scale * sigma * eps while training; below 1 the draws are "
                "narrower than the q(z|x) that the KL term scores (ERRATA of the seed chapter)")
      ->check(CLI::NonNegativeNumber);
  d->add_option("--kl-weight", c->anneal0, "final KL weight of the linear annealing (anneal0)")
      ->check(CLI::NonNegativeNumber);
  d->add_option("--kl-anneal", c->kl_anneal,
                "the KL weight per step s: linear, anneal0 min(1, s / x0), or logistic, "
                "anneal0 / (1 + exp(-k (s - x0)))")
      ->check(CLI::IsMember({"linear", "logistic"}))
      ->capture_default_str();
  d->add_option("--kl-x0", c->kl_x0, "steps of the linear ramp; the logistic's midpoint")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  d->add_option("--kl-k", c->kl_k, "the logistic's slope")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  d->add_option("--nll-weight", c->nll_weight, "weight of the SmoothL1 reconstruction")
      ->check(CLI::NonNegativeNumber);
  d->add_option("--label-weight", c->label_weight, "weight of the mileage head's squared error")
      ->check(CLI::NonNegativeNumber);
  d->add_option("--cosine-factor", c->cosine_factor,
                "the cosine decay's final rate as a share of --lr (per epoch)")
      ->check(CLI::Range(0.0, 1.0));
  d->add_option("--weight-decay", c->weight_decay, "AdamW's decoupled weight decay")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  d->add_option("--norm-first", c->norm_first,
                "normalise with the first N training snippets only, as the original (0: all)")
      ->capture_default_str();

  std::ostringstream footer;
  footer << "Model and training flags not given take the preset's values:";
  for (const DyadPreset& p : dyad_presets()) {
    footer << "\n  " << p.name << ": hidden " << p.hidden << ", layers " << p.layers << ", latent "
           << p.latent << ", batch-size " << p.batch_size << ", epochs " << p.epochs << ", lr "
           << p.lr << ", noise-scale " << p.noise_scale << ", kl-weight " << p.anneal0
           << ", nll-weight " << p.nll_weight << ", label-weight " << p.label_weight
           << ", cosine-factor " << p.cosine_factor << ", decoder-channels ";
    for (size_t i = 0; i < p.decoder_channels.size(); ++i)
      footer << (i ? "," : "") << p.decoder_channels[i];
  }
  footer
      << "\n(DyAD's own configurations, noise-scale included: --noise-scale 1 samples z from the "
         "q(z|x) that the KL term scores.)";
  d->footer(footer.str());

  CLI::App* s = app.add_subcommand(
      "dyad-score", "score a fleet's snippets and vehicles with one fold of a dyad run");
  commands.score = s;
  s->add_option("--fold-dir", score->fold_dir, "a fold of a dyad run (RUN_DIR/fold0, ...)")
      ->required();
  s->add_option("--data", score->data, "snippet manifest of the fleet to score")->required();
  s->add_option("--out", score->out_dir, "folder for snippet_scores.csv and vehicle_scores.csv")
      ->required();
  s->add_option("--device", score->device, "auto | cpu | gpu")
      ->check(CLI::IsMember({"auto", "cpu", "gpu"}))
      ->capture_default_str();
  return commands;
}

void resolve_dyad_config(const DyadCommands& commands, DyadRunConfig* c) {
  const DyadPreset& p = dyad_preset(c->preset);
  auto given = [&](const char* flag) { return commands.dyad->get_option(flag)->count() > 0; };
  if (!given("--decoder-channels")) c->decoder_channels = p.decoder_channels;
  if (!given("--hidden")) c->hidden = p.hidden;
  if (!given("--layers")) c->layers = p.layers;
  if (!given("--latent")) c->latent = p.latent;
  if (!given("--batch-size")) c->batch_size = p.batch_size;
  if (!given("--epochs")) c->epochs = p.epochs;
  if (!given("--lr")) c->lr = p.lr;
  if (!given("--noise-scale")) c->noise_scale = p.noise_scale;
  if (!given("--kl-weight")) c->anneal0 = p.anneal0;
  if (!given("--nll-weight")) c->nll_weight = p.nll_weight;
  if (!given("--label-weight")) c->label_weight = p.label_weight;
  if (!given("--cosine-factor")) c->cosine_factor = p.cosine_factor;
  if (c->fold >= c->folds)
    throw std::invalid_argument("--fold " + std::to_string(c->fold) + " with --folds " +
                                std::to_string(c->folds) + ": folds are 0 to " +
                                std::to_string(c->folds - 1));
}

// ---------------------------------------------------------------------------------------------
// The run

DyadSummary run_dyad(const DyadRunConfig& config, std::ostream& out) {
  if (!fs::exists(config.data))
    throw std::runtime_error(config.data + ": no such snippet manifest" +
                             (config.data == "fleet/fleet.json"
                                  ? std::string("; make the simulated fleet with python3 "
                                                "python_ref/dyad/fleet_sim.py --out fleet")
                                  : std::string()));
  const data::SnippetSet set = data::read_snippets(config.data);
  const DyadTrainConfig train = train_config(config, set);
  validate(train);
  std::map<std::string, bool> vehicle_faulty;
  for (const data::SnippetInfo& info : set.table) vehicle_faulty[info.vehicle] = info.faulty;
  const std::vector<eval::Fold> folds =
      eval::five_fold_split(vehicle_faulty, config.seed, config.folds);
  DyadSummary summary;
  prepare_run_dir(config, &summary.run_dir);
  write_text(summary.run_dir + "/config.json", to_json(config).dump(1) + "\n");

  out << "dyad: " << set.count << " snippets of " << set.steps << " steps x " << set.channel_count()
      << " channels, " << vehicle_faulty.size() << " vehicles ("
      << folds[0].tuning_faulty.size() + folds[0].test_faulty.size() << " faulty); preset "
      << config.preset << ", H " << config.hidden << ", layers " << config.layers << ", latent "
      << config.latent << ", " << config.epochs << " epochs a fold\n";

  const std::string device = resolve_device(config.device);  // says once where it runs
  std::vector<TestVehicles> tests;
  StopSignals signals;
  for (int f = 0; f < config.folds; ++f) {
    if (config.fold >= 0 && f != config.fold) continue;
    const eval::Fold& fold = folds[f];
    const std::map<std::string, Role> roles = roles_of(fold);
    std::vector<size_t> train_rows;
    for (size_t i = 0; i < set.count; ++i)
      if (roles.at(set.table[i].vehicle) == Role::kTrain) train_rows.push_back(i);

    // Before allocating: the normalised training split, the trainer's resident copies of it (all
    // channels, the decoder's, the responses': twice its size again on the CPU) and the normalised
    // set that scoring reads.
    const uint64_t snippet_bytes = set.steps * set.channel_count() * sizeof(float);
    io::check_fits_in_memory(
        config.data, snippet_bytes * (train_rows.size() * (device == "cpu" ? 3 : 1) + set.count),
        "training and scoring a fold");
    if (device == "gpu") {  // the resident split on the device: all channels, then the two parts
      size_t free_bytes = 0, total_bytes = 0;
      if (cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess)
        io::check_fits_in_device_memory(config.data, 2 * snippet_bytes * train_rows.size(),
                                        free_bytes, "the GPU");
    }
    const data::SnippetNormalisation norm =
        data::fit_normalisation(set, train_rows, config.norm_first);
    const data::NormalisedSnippets train_data = data::normalise(set, train_rows, norm);
    auto trainer = make_dyad_trainer(train, make_backend(device));
    trainer->set_train_data({train_data.x.data(), train_data.mileage.data(), train_data.count()});
    out << "fold " << f << ": training on " << train_data.count() << " snippets of "
        << fold.train_normal.size() << " normal vehicles (" << trainer->param_count()
        << " parameters, " << trainer->device_name() << ")" << std::endl;

    const auto start = std::chrono::steady_clock::now();
    for (int epoch = 0; epoch < config.epochs; ++epoch) {
      trainer->start_epoch(epoch);
      for (int b = 0; b < trainer->batches_per_epoch(); ++b) {
        if (StopSignals::requested())
          throw Stopped(
              "stopped by " + std::string(signal_name(StopSignals::requested())) + " in fold " +
                  std::to_string(f) + ", epoch " + std::to_string(epoch) + "; " +
                  (summary.folds.empty()
                       ? std::string("no fold had finished")
                       : std::to_string(summary.folds.size()) + " finished fold(s) are in " +
                             summary.run_dir + " (fusedvae eval --run-dir " + summary.run_dir +
                             " scores them)"),
              StopSignals::requested());
        trainer->train_step(b);
      }
      const DyadLosses l = trainer->last_losses();
      if (!std::isfinite(l.loss))
        throw std::runtime_error("fold " + std::to_string(f) + ", epoch " + std::to_string(epoch) +
                                 ": the loss is not finite (" + std::to_string(l.loss) +
                                 "); try a smaller --lr");
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      out << "  epoch " << epoch + 1 << "/" << config.epochs << ": loss " << fixed(l.loss, 4)
          << " (SmoothL1 " << fixed(l.recon, 4) << ", mileage " << fixed(l.mileage, 4) << ", KL "
          << fixed(l.kl, 3) << " x " << l.kl_weight << "), lr " << l.lr << ", "
          << fixed((epoch + 1.0) * trainer->batches_per_epoch() * config.batch_size / seconds, 0)
          << " snippets/s" << std::endl;  // flushed: progress shows through a pipe
    }
    FoldResult result;
    result.fold = f;
    result.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    result.snippets_per_second = config.epochs * static_cast<double>(trainer->batches_per_epoch()) *
                                 config.batch_size / std::max(result.seconds, 1e-9);

    const FoldScores scores = score_fold(*trainer, set, norm, roles);
    result.h = scores.h;
    result.auroc_robust = scores.auroc_robust;
    result.auroc_mean = scores.auroc_mean;
    const std::string fold_dir = summary.run_dir + "/fold" + std::to_string(f);
    fs::create_directories(fold_dir);
    save_model(fold_dir + "/model.safetensors", *trainer, config, set, norm, f, result.h);
    write_snippet_csv(fold_dir + "/snippet_scores.csv", set, scores.snippet, &roles);
    write_vehicle_csv(fold_dir + "/vehicle_scores.csv", scores.vehicles, &roles, result.h);
    print_fold(out, f, scores, "; " + fixed(result.seconds, 1) + " s");
    summary.folds.push_back(result);
    tests.push_back(scores.test);
  }

  finish_summary(summary, config, tests, "summary", out);
  return summary;
}

void run_dyad_score(const DyadScoreRequest& request, std::ostream& out) {
  std::error_code ec;
  fs::create_directories(request.out_dir, ec);  // checked before the work, not after
  if (ec) throw std::runtime_error(request.out_dir + ": cannot create it (" + ec.message() + ")");
  FoldModel f = load_fold(request.fold_dir, request.data, request.device);
  std::vector<size_t> all(f.set.count);
  for (size_t i = 0; i < f.set.count; ++i) all[i] = i;
  const data::NormalisedSnippets every = data::normalise(f.set, all, f.model.norm);
  const DyadScores scores = f.trainer->score({every.x.data(), nullptr, every.count()});
  const std::vector<eval::VehicleScores> vehicles = vehicle_scores(f.set, scores.score);
  // The robust score with the h its fold chose on its tuning set.
  write_snippet_csv(request.out_dir + "/snippet_scores.csv", f.set, scores.score, nullptr);
  write_vehicle_csv(request.out_dir + "/vehicle_scores.csv", vehicles, nullptr, f.model.robust_h);
  out << "scored " << f.set.count << " snippets of " << vehicles.size() << " vehicles; wrote "
      << request.out_dir << "/{snippet_scores.csv, vehicle_scores.csv}\n";
}

bool is_dyad_run(const std::string& run_dir) {
  std::ifstream in(run_dir + "/config.json");
  if (!in) return false;
  try {
    const nlohmann::json j = nlohmann::json::parse(in);
    return j.is_object() && j.contains("decoder_channels") && j.contains("preset");
  } catch (const std::exception&) {
    return false;
  }
}

DyadSummary evaluate_dyad_run(const std::string& run_dir, const std::string& device,
                              std::ostream& out) {
  DyadRunConfig config;
  try {
    config = config_from_json(nlohmann::json::parse(std::ifstream(run_dir + "/config.json")));
  } catch (const std::exception& e) {
    throw std::runtime_error(run_dir + "/config.json: not a dyad run's configuration (" + e.what() +
                             ")");
  }
  DyadSummary summary;
  summary.run_dir = run_dir;
  std::vector<TestVehicles> tests;
  const std::string resolved = resolve_device(device);
  for (int f = 0; f < config.folds; ++f) {
    const std::string fold_dir = run_dir + "/fold" + std::to_string(f);
    if (!fs::exists(fold_dir + "/model.safetensors")) continue;
    FoldModel model = load_fold(fold_dir, config.data, resolved);
    std::map<std::string, bool> vehicle_faulty;
    for (const data::SnippetInfo& info : model.set.table)
      vehicle_faulty[info.vehicle] = info.faulty;
    const std::vector<eval::Fold> folds =
        eval::five_fold_split(vehicle_faulty, config.seed, config.folds);
    const FoldScores scores =
        score_fold(*model.trainer, model.set, model.model.norm, roles_of(folds[f]));
    print_fold(out, f, scores, "");
    FoldResult result;
    result.fold = f;
    result.h = scores.h;
    result.auroc_robust = scores.auroc_robust;
    result.auroc_mean = scores.auroc_mean;
    summary.folds.push_back(result);
    tests.push_back(scores.test);
  }
  if (summary.folds.empty())
    throw std::runtime_error(run_dir + ": no trained fold (foldK/model.safetensors) to evaluate");
  finish_summary(summary, config, tests, "eval", out);
  return summary;
}

}  // namespace fusedvae::cli
