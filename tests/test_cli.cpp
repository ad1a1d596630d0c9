// @brief The fusedvae command line: flags and config files, the resolved config round trip, and
// end to end on the CPU with generated data: every file of a run directory, resume continuing
// bitwise, refusing to overwrite a run, eval's per-sample CSV, non-finite loss handling, scoring
// new data with eval / reconstruct --file; checkpoints committed as one unit (old run directories
// resuming, full disk, vanished directory, stops before the first checkpoint).
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>

#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>

#include "host/cli/app.h"
#include "host/cli/commands.h"
#include "host/cli/progress.h"
#include "host/io/npy.h"
#include "host/io/safetensors.h"
#include "tests/support/test_support.h"

namespace fusedvae::cli {
namespace {

namespace fs = std::filesystem;

// The process id keeps two test runs on one machine (a build and a sanitizer build, two
// worktrees) out of each other's directories.
fs::path fresh_dir_path(const std::string& name) {
  return fs::temp_directory_path() /
         ("fusedvae_test_cli_" + name + "_" + std::to_string(::getpid()));
}

// Removes this process's directories when the tests end.
class RemoveTestDirectories : public ::testing::Environment {
 public:
  void TearDown() override {
    const std::string suffix = "_" + std::to_string(::getpid());
    std::vector<fs::path> ours;
    for (const auto& entry : fs::directory_iterator(fs::temp_directory_path())) {
      const std::string name = entry.path().filename().string();
      if (name.rfind("fusedvae_test_cli_", 0) == 0 && name.size() > suffix.size() &&
          name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
        ours.push_back(entry.path());
    }
    for (const fs::path& dir : ours) fs::remove_all(dir);
  }
};
[[maybe_unused]] ::testing::Environment* const kRemoveTestDirectories =
    ::testing::AddGlobalTestEnvironment(new RemoveTestDirectories);

fs::path fresh_dir(const std::string& name) {
  const fs::path dir = fresh_dir_path(name);
  fs::remove_all(dir);
  return dir;
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream(path) << text;
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

// ---------------------------------------------------------------------------------------------
// Configuration

TEST(CliConfig, FlagsSetEveryPartOfTheConfig) {
  const CommandLine line = parse_command_line(
      {"train",        "--hidden",    "64,32",    "--latent",   "2",
       "--activation", "tanh",        "--loss",   "gaussian",   "--sigma",
       "0.5",          "--lr",        "3e-4",     "--binarize", "--kl-schedule",
       "linear",       "--kl-x0",     "100",      "--seed",     "7",
       "--reduction",  "sum",         "--device", "cpu",        "--validation-fraction",
       "0.1",          "--log-every", "5",        "--run-dir",  "somewhere",
       "--tf32=false"});
  ASSERT_EQ(line.command, "train");
  const RunConfig& c = line.train.config;
  EXPECT_EQ(c.train.model.hidden, (std::vector<int>{64, 32}));
  EXPECT_EQ(c.train.model.latent_dim, 2);
  EXPECT_EQ(c.train.model.activation, Activation::kTanh);
  EXPECT_EQ(c.train.model.recon.kind, ReconLossKind::kGaussian);
  EXPECT_EQ(c.train.model.recon.gaussian_sigma, 0.5f);
  EXPECT_EQ(c.train.optimizer.lr, 3e-4f);
  EXPECT_TRUE(c.train.binarize);
  EXPECT_FALSE(c.train.tf32);
  EXPECT_EQ(c.train.kl.kind, KlScheduleKind::kLinear);
  EXPECT_EQ(c.train.kl.x0, 100.0f);
  EXPECT_EQ(c.train.seed, 7u);
  EXPECT_EQ(c.train.reduction, BatchReduction::kSum);
  EXPECT_EQ(c.device, "cpu");
  EXPECT_EQ(c.data.validation_fraction, 0.1f);
  EXPECT_EQ(c.log_every, 5);
  EXPECT_EQ(line.train.run_dir, "somewhere");
  // Untouched settings keep their defaults.
  EXPECT_EQ(c.train.batch_size, TrainConfig{}.batch_size);
}

TEST(CliConfig, EveryFieldIsAFlagAndAKey) {
  const RunConfig defaults;
  const auto json = to_json(defaults);
  EXPECT_EQ(json.size(), run_config_fields().size());
  std::vector<std::string> args = {"train"};
  for (const Field& field : run_config_fields()) {
    ASSERT_TRUE(json.contains(field.name)) << field.name;
    if (field.kind == FieldKind::kBool) {
      args.push_back("--" + field.name);
      continue;
    }
    std::string text = json[field.name].is_string() ? json[field.name].get<std::string>()
                                                    : json[field.name].dump();
    if (field.kind == FieldKind::kIntList) text = "400";
    if (text.empty()) continue;  // empty strings (no --train file) are the defaults
    args.push_back("--" + field.name);
    args.push_back(text);
  }
  EXPECT_NO_THROW(parse_command_line(args));
}

// Every boolean has a --no- spelling, which also overrides a config file's true (e.g.
// --no-cuda-graph, whose default is on).
TEST(CliConfig, BooleanFlagsHaveANegatedSpelling) {
  EXPECT_TRUE(RunConfig{}.train.cuda_graph);
  EXPECT_TRUE(parse_command_line({"train"}).train.config.train.cuda_graph);
  EXPECT_FALSE(parse_command_line({"train", "--no-cuda-graph"}).train.config.train.cuda_graph);
  EXPECT_TRUE(parse_command_line({"train", "--cuda-graph"}).train.config.train.cuda_graph);
  EXPECT_FALSE(parse_command_line({"train", "--cuda-graph=false"}).train.config.train.cuda_graph);
  const fs::path dir = fresh_dir("negated");
  fs::create_directories(dir);
  write_text(dir / "c.json", R"({"cuda-graph": false, "binarize": true})");
  const RunConfig from_file =
      parse_command_line({"train", "--config", (dir / "c.json").string()}).train.config;
  EXPECT_FALSE(from_file.train.cuda_graph);
  EXPECT_TRUE(from_file.train.binarize);
  const RunConfig overridden = parse_command_line({"train", "--config", (dir / "c.json").string(),
                                                   "--cuda-graph", "--no-binarize"})
                                   .train.config;
  EXPECT_TRUE(overridden.train.cuda_graph);
  EXPECT_FALSE(overridden.train.binarize);
  EXPECT_EQ(to_json(overridden)["cuda-graph"], true);
}

TEST(CliConfig, JsonFileThenFlagsOverrideIt) {
  const fs::path dir = fresh_dir("json");
  fs::create_directories(dir);
  write_text(dir / "c.json", R"({"latent": 3, "lr": 0.01, "hidden": [50, 40], "binarize": true,
                                 "kl-schedule": "cyclical", "seed": 11})");
  const CommandLine line =
      parse_command_line({"train", "--config", (dir / "c.json").string(), "--lr", "0.02"});
  const RunConfig& c = line.train.config;
  EXPECT_EQ(c.train.model.latent_dim, 3);
  EXPECT_EQ(c.train.optimizer.lr, 0.02f);  // the flag wins
  EXPECT_EQ(c.train.model.hidden, (std::vector<int>{50, 40}));
  EXPECT_TRUE(c.train.binarize);
  EXPECT_EQ(c.train.kl.kind, KlScheduleKind::kCyclical);
  EXPECT_EQ(c.train.seed, 11u);
}

TEST(CliConfig, UnknownKeysAndBadValuesAreOneLineErrors) {
  const fs::path dir = fresh_dir("bad");
  fs::create_directories(dir);
  write_text(dir / "unknown.json", R"({"latent": 3, "learning_rate": 0.1})");
  write_text(dir / "type.json", R"({"latent": "three"})");
  write_text(dir / "broken.json", R"({"latent": 3,)");
  const auto parse = [](std::vector<std::string> args) {
    return error_of([&] { parse_command_line(args); });
  };
  std::string e = parse({"train", "--config", (dir / "unknown.json").string()});
  EXPECT_NE(e.find("unknown key 'learning_rate'"), std::string::npos) << e;
  e = parse({"train", "--config", (dir / "type.json").string()});
  EXPECT_NE(e.find("latent"), std::string::npos) << e;
  e = parse({"train", "--config", (dir / "broken.json").string()});
  EXPECT_NE(e.find("not valid JSON"), std::string::npos) << e;
  for (const auto& args :
       std::vector<std::vector<std::string>>{{"train", "--lr", "-1"},
                                             {"train", "--lr", "fast"},
                                             {"train", "--latent", "0"},
                                             {"train", "--batch-size", "2.5"},
                                             {"train", "--activation", "gelu"},
                                             {"train", "--hidden", "400,x"},
                                             {"train", "--kl-cycle-ratio", "1.5"},
                                             {"train", "--logvar-min", "5", "--logvar-max", "1"},
                                             {"train", "--validation-fraction", "1"},
                                             {"train", "--no-such-flag", "1"},
                                             {"eval"},
                                             {"frobnicate"}}) {
    e = parse(args);
    EXPECT_NE(e, "(no error)") << args[1];
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  }
}

TEST(CliConfig, ResolvedConfigRoundTripsThroughAFile) {
  const fs::path dir = fresh_dir("roundtrip");
  fs::create_directories(dir);
  const CommandLine line = parse_command_line(
      {"train", "--hidden", "128,64,32", "--lr", "0.0003", "--kl-weight", "0.7", "--adam-eps",
       "1e-7", "--seed", "18446744073709551615", "--loss", "smooth_l1", "--smooth-l1-beta", "0.1"});
  const auto json = to_json(line.train.config);
  write_text(dir / "config.json", json.dump(2));
  EXPECT_NE(read_text(dir / "config.json").find("\"lr\": 0.0003"), std::string::npos)
      << "floats are written in their shortest form";
  const CommandLine again =
      parse_command_line({"train", "--config", (dir / "config.json").string()});
  EXPECT_EQ(to_json(again.train.config), json);
}

// ---------------------------------------------------------------------------------------------
// Progress output

TEST(CliProgress, TerminalBarRedrawsOneLinePlainOutputLogsLines) {
  ProgressSample sample;
  sample.batch = 5;
  sample.step = 5;
  sample.images_per_s = 1234;
  sample.eta_s = 65;
  sample.loss = 2.5;
  sample.running_loss = 3.25;
  std::ostringstream bar;
  {
    Progress progress(bar, true);
    progress.begin_epoch(0, 3, 10);
    progress.update(sample);
    sample.batch = 10;
    progress.update(sample);
    EXPECT_EQ(bar.str().find('\n'), std::string::npos) << "the bar stays on one line";
    EXPECT_NE(bar.str().find("[============>"), std::string::npos) << bar.str();
    EXPECT_NE(bar.str().find("ETA 1:05"), std::string::npos) << bar.str();
    EXPECT_NE(bar.str().find("loss 3.250"), std::string::npos) << "running loss: " << bar.str();
    progress.end_epoch("epoch 1/3 done");
  }
  EXPECT_EQ(bar.str().substr(bar.str().size() - 15), "epoch 1/3 done\n");

  std::ostringstream plain;
  Progress lines(plain, false);
  lines.begin_epoch(1, 3, 10);
  lines.update(sample);
  lines.update(sample);
  const std::string text = plain.str();
  EXPECT_EQ(text.find('\r'), std::string::npos);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 2);
  EXPECT_EQ(text.rfind("epoch 2/3 step 5", 0), 0u) << text;
  EXPECT_EQ(format_duration(3725), "1:02:05");
}

// ---------------------------------------------------------------------------------------------
// End to end on the CPU with generated data

// Images of 6 x 5 (odd sizes) in three classes: a bright band whose position depends on the class,
// plus noise. uint8, as IDX data is.
Dataset generated(int rows, uint64_t seed, const std::string& name) {
  Dataset d;
  d.source = name;
  d.rows = rows;
  d.image_height = 6;
  d.image_width = 5;
  d.dim = 30;
  d.scale = 1.0f / 255.0f;
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::uniform_int_distribution<int> noise(0, 60);
  for (int r = 0; r < rows; ++r) {
    const int label = r % 3;
    d.labels.push_back(label);
    for (int y = 0; y < 6; ++y)
      for (int x = 0; x < 5; ++x)
        d.u8.push_back(
            static_cast<uint8_t>(std::abs(y - 2 * label) <= 1 ? 255 - noise(rng) : noise(rng)));
  }
  return d;
}

DataSplits generated_splits(const RunConfig&) {
  DataSplits s;
  s.train = generated(192, 1, "generated-train");
  s.test = generated(45, 2, "generated-test");
  return s;
}

TrainRequest small_run(const fs::path& dir, int epochs) {
  TrainRequest r;
  r.run_dir = dir.string();
  r.config.device = "cpu";
  r.config.train.model.hidden = {16};
  r.config.train.model.latent_dim = 2;
  r.config.train.batch_size = 32;
  r.config.train.epochs = epochs;
  r.config.train.seed = 5;
  r.config.log_every = 4;
  return r;
}

std::vector<float> model_params(const fs::path& dir) {
  const io::SafetensorsFile f = io::read_safetensors((dir / "model.safetensors").string());
  std::vector<float> all;
  for (const auto& [name, tensor] : f.tensors) {
    const std::vector<float> v = tensor.to_floats();
    all.insert(all.end(), v.begin(), v.end());
  }
  return all;
}

void expect_png(const fs::path& path) {
  int w = 0, h = 0, channels = 0;
  unsigned char* data = stbi_load(path.string().c_str(), &w, &h, &channels, 3);
  ASSERT_NE(data, nullptr) << path;
  EXPECT_GT(w, 10);
  EXPECT_GT(h, 10);
  stbi_image_free(data);
}

TEST(CliEndToEnd, TrainWritesEveryFileOfTheRunDirectory) {
  const fs::path dir = fresh_dir("run");
  std::ostringstream out;
  train(small_run(dir, 2), generated_splits, out);
  for (const char* name :
       {"config.json", "metrics.jsonl", "model.safetensors", "optimizer.safetensors",
        "reconstructions.png", "samples.png", "loss_curves.png", "latent.png"})
    EXPECT_TRUE(fs::exists(dir / name)) << name;
  for (const char* name : {"reconstructions.png", "samples.png", "loss_curves.png", "latent.png"})
    expect_png(dir / name);

  // config.json: every key, and it reproduces the configuration.
  RunConfig back = read_run_config(dir.string());
  RunConfig expected = small_run(dir, 2).config;
  EXPECT_EQ(to_json(back), to_json(expected));

  // Model tensors: PyTorch names and [out, in] shapes; the architecture in the metadata.
  const io::SafetensorsFile model = io::read_safetensors((dir / "model.safetensors").string());
  const std::map<std::string, std::vector<int64_t>> shapes = {
      {"encoder.0.weight", {16, 30}},     {"encoder.0.bias", {16}},
      {"encoder.mu.weight", {2, 16}},     {"encoder.mu.bias", {2}},
      {"encoder.logvar.weight", {2, 16}}, {"encoder.logvar.bias", {2}},
      {"decoder.0.weight", {16, 2}},      {"decoder.0.bias", {16}},
      {"decoder.out.weight", {30, 16}},   {"decoder.out.bias", {30}}};
  EXPECT_EQ(model.tensors.size(), shapes.size());
  for (const auto& [name, shape] : shapes) EXPECT_EQ(model.at(name, "model").shape, shape) << name;
  EXPECT_EQ(model.metadata.at("latent_dim"), "2");
  EXPECT_EQ(model.metadata.at("input_dim"), "30");
  EXPECT_EQ(model.metadata.at("epoch"), "2");
  EXPECT_EQ(model.metadata.at("step"), "12");  // 192 / 32 = 6 steps an epoch

  // metrics.jsonl: logged steps (every 4th and the last of each epoch) and one line per epoch.
  const std::vector<nlohmann::json> metrics = read_metrics((dir / "metrics.jsonl").string());
  std::vector<uint64_t> step_lines;
  int epoch_lines = 0;
  for (const auto& m : metrics) {
    for (const char* key :
         {"step", "epoch", "loss", "recon", "kl", "kl_weight", "lr", "images_per_s", "grad_norm"})
      EXPECT_TRUE(m.contains(key)) << key << " in " << m.dump();
    if (m["kind"] == "epoch") {
      ++epoch_lines;
      EXPECT_TRUE(m.contains("test_elbo") && m.contains("test_recon") && m.contains("test_kl") &&
                  m.contains("wall_time_s"))
          << m.dump();
      EXPECT_LT(m["test_elbo"].get<double>(), 0.0);
    } else {
      step_lines.push_back(m["step"].get<uint64_t>());
    }
  }
  EXPECT_EQ(epoch_lines, 2);
  EXPECT_EQ(step_lines, (std::vector<uint64_t>{4, 6, 8, 12}));
}

TEST(CliEndToEnd, ResumeContinuesTheSameTrajectoryBitwise) {
  const fs::path straight = fresh_dir("straight"), resumed = fresh_dir("resumed");
  std::ostringstream out;
  train(small_run(straight, 3), generated_splits, out);
  train(small_run(resumed, 2), generated_splits, out);
  // As if the process died during epoch 3: a logged line past the checkpoint and a torn last line.
  std::ofstream((resumed / "metrics.jsonl").string(), std::ios::app)
      << R"({"kind":"step","step":16,"loss":1.0})"
      << "\n{\"kind\":\"st";
  // Continue through the command line, as a user would, extending the run to 3 epochs.
  run_cli({"train", "--resume", resumed.string(), "--epochs", "3"}, out, false, generated_splits);
  const std::vector<float> a = model_params(straight), b = model_params(resumed);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0)
      << "resumed parameters differ from the uninterrupted run";
  const auto opt_a = io::read_safetensors((straight / "optimizer.safetensors").string());
  const auto opt_b = io::read_safetensors((resumed / "optimizer.safetensors").string());
  EXPECT_EQ(opt_a.at("m", "a").bytes, opt_b.at("m", "b").bytes);
  EXPECT_EQ(opt_a.at("step_state.counters", "a").bytes, opt_b.at("step_state.counters", "b").bytes);
  // The logged losses agree line for line.
  const auto ma = read_metrics((straight / "metrics.jsonl").string());
  const auto mb = read_metrics((resumed / "metrics.jsonl").string());
  ASSERT_EQ(ma.size(), mb.size());
  for (size_t i = 0; i < ma.size(); ++i) {
    EXPECT_EQ(ma[i]["step"], mb[i]["step"]);
    EXPECT_EQ(ma[i]["loss"], mb[i]["loss"]) << "line " << i;
  }
  // A resume that changes the trajectory is refused, naming the setting.
  const std::string e = error_of([&] {
    run_cli({"train", "--resume", resumed.string(), "--lr", "0.5"}, out, false, generated_splits);
  });
  EXPECT_NE(e.find("lr is 0.001, not 0.5"), std::string::npos) << e;
  const std::string shorter = error_of([&] {
    run_cli({"train", "--resume", resumed.string(), "--epochs", "1"}, out, false, generated_splits);
  });
  EXPECT_NE(shorter.find("already trained 3 epochs"), std::string::npos) << shorter;
  EXPECT_EQ(read_run_config(resumed.string()).train.epochs, 3) << "config.json must stay as it was";
}

TEST(CliEndToEnd, NeverOverwritesARunAndReportsMismatchedCheckpoints) {
  const fs::path dir = fresh_dir("guard");
  std::ostringstream out;
  train(small_run(dir, 1), generated_splits, out);
  const std::string model_before = read_text(dir / "model.safetensors");
  std::string e = error_of([&] { train(small_run(dir, 1), generated_splits, out); });
  EXPECT_NE(e.find("already holds a run"), std::string::npos) << e;
  EXPECT_EQ(read_text(dir / "model.safetensors"), model_before);

  // A config.json that no longer matches the checkpoint: a clear error naming the setting.
  auto config = nlohmann::json::parse(read_text(dir / "config.json"));
  config["latent"] = 4;
  write_text(dir / "config.json", config.dump());
  e = error_of([&] { open_run(dir.string(), "cpu", out); });
  EXPECT_NE(e.find("latent_dim = 2"), std::string::npos) << e;
  e = error_of([&] { run_cli({"train", "--resume", dir.string()}, out, false, generated_splits); });
  EXPECT_NE(e.find("latent_dim"), std::string::npos) << e;

  // A corrupt checkpoint is an error naming the file.
  config["latent"] = 2;
  write_text(dir / "config.json", config.dump());
  fs::resize_file(dir / "model.safetensors", fs::file_size(dir / "model.safetensors") - 7);
  e = error_of([&] { open_run(dir.string(), "cpu", out); });
  EXPECT_NE(e.find("model.safetensors"), std::string::npos) << e;
}

TEST(CliEndToEnd, EvalPrintsTheBoundsAndWritesPerSampleCsv) {
  const fs::path dir = fresh_dir("eval");
  std::ostringstream out;
  train(small_run(dir, 1), generated_splits, out);
  std::ostringstream eval_out;
  run_cli({"eval", "--run-dir", dir.string(), "--iwae-samples", "8", "--per-sample",
           (dir / "per_sample.csv").string(), "--device", "cpu"},
          eval_out, false, generated_splits);
  const std::string printed = eval_out.str();
  for (const char* label : {"recon (z = mu)", "KL", "ELBO (1 sample)", "IWAE (K = 8)"})
    EXPECT_NE(printed.find(label), std::string::npos) << printed;

  std::ifstream csv(dir / "per_sample.csv");
  std::string header;
  std::getline(csv, header);
  EXPECT_EQ(header, "index,recon,kl,elbo,iwae");
  int rows = 0;
  std::string line;
  while (std::getline(csv, line)) {
    std::stringstream fields(line);
    std::string index, recon, kl, elbo, iwae;
    std::getline(fields, index, ',');
    std::getline(fields, recon, ',');
    std::getline(fields, kl, ',');
    std::getline(fields, elbo, ',');
    std::getline(fields, iwae, ',');
    EXPECT_EQ(std::stoi(index), rows);
    EXPECT_GE(std::stod(kl), 0.0);
    EXPECT_TRUE(std::isfinite(std::stod(iwae))) << line;
    ++rows;
  }
  EXPECT_EQ(rows, 45);
  EvalRequest request;
  request.run_dir = dir.string();
  request.iwae_samples = 0;
  request.device = "cpu";
  request.per_sample_csv = (dir / "plain.csv").string();
  const EvalResult result = evaluate_run(request, generated_splits, eval_out);
  std::ifstream plain(dir / "plain.csv");
  std::getline(plain, header);
  EXPECT_EQ(header, "index,recon,kl,elbo");
  // The CSV's columns average to the reported means (written with 9 digits; the relative error
  // of a 45-term double sum of those is far below 1e-6).
  double sums[3] = {0, 0, 0};
  int plain_rows = 0;
  while (std::getline(plain, line)) {
    std::stringstream fields(line);
    std::string value;
    std::getline(fields, value, ',');
    for (double& sum : sums) {
      std::getline(fields, value, ',');
      sum += std::stod(value);
    }
    ++plain_rows;
  }
  ASSERT_EQ(plain_rows, 45);
  const double means[3] = {result.mean_recon, result.mean_kl, result.mean_elbo};
  for (int i = 0; i < 3; ++i)
    EXPECT_NEAR(sums[i] / plain_rows, means[i], 1e-6 * std::fabs(means[i]) + 1e-9) << i;

  EXPECT_NE(error_of([&] {
              run_cli({"eval", "--run-dir", dir.string(), "--split", "validation"}, eval_out, false,
                      generated_splits);
            }).find("no validation split"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              run_cli({"eval", "--run-dir", (dir / "nothing").string()}, eval_out, false,
                      generated_splits);
            }).find("not a fusedvae run directory"),
            std::string::npos);
}

// Runs python_ref/torch_vae.py (NumPy backend) on `file` with the run's checkpoint and checks its
// per-sample recon and KL against `csv` (eval --per-sample output); `extra` are more flags.
void expect_python_reference_agrees(const std::string& run, const fs::path& file,
                                    const fs::path& csv, const std::string& extra) {
  const fs::path log = csv.parent_path() / "python.txt";
  const std::string command = "python3 " + fusedvae::test::source_dir() +
                              "/python_ref/torch_vae.py --backend numpy --run-dir " + run +
                              " --file " + file.string() + " " + extra + " --compare-csv " +
                              csv.string() + " > " + log.string() + " 2>&1";
  EXPECT_EQ(std::system(command.c_str()), 0) << read_text(log);
  EXPECT_NE(read_text(log).find("worst error"), std::string::npos) << read_text(log);
  std::cout << read_text(log);
}

// python_ref/torch_vae.py (NumPy backend, float64) reads model.safetensors with its own reader and
// recomputes every sample's recon at z = mu and KL; it exits non-zero when any differs from eval's
// CSV by more than its tolerance (5e-5 relative + 1e-4 absolute, justified there).
TEST(CliEndToEnd, PythonReferenceReproducesEvalPerSample) {
  const fs::path dir = fresh_dir("python");
  TrainRequest request = small_run(dir, 2);
  request.config.train.model.hidden = {24, 12};  // two hidden layers: decoder.1 exists too
  request.config.train.model.activation = Activation::kTanh;
  std::ostringstream out;
  train(request, generated_splits, out);
  EvalRequest eval;
  eval.run_dir = dir.string();
  eval.iwae_samples = 0;
  eval.device = "cpu";
  eval.per_sample_csv = (dir / "per_sample.csv").string();
  evaluate_run(eval, generated_splits, out);

  const Dataset test = generated_splits(request.config).test;
  std::vector<float> rows(static_cast<size_t>(test.rows) * test.dim);
  for (int r = 0; r < test.rows; ++r)
    for (int c = 0; c < test.dim; ++c)
      rows[static_cast<size_t>(r) * test.dim + c] = test.normalised(r, c);
  io::write_npy((dir / "test.npy").string(), rows.data(),
                {static_cast<size_t>(test.rows), static_cast<size_t>(test.dim)});
  expect_python_reference_agrees(dir.string(), dir / "test.npy", dir / "per_sample.csv",
                                 "--scale 1 --offset 0");
}

// ---------------------------------------------------------------------------------------------
// Scoring new data: eval / reconstruct --file with the normalisation the checkpoint records

TEST(CliCheckpoint, NormalisationRoundTripsThroughTheMetadata) {
  const fs::path dir = fresh_dir("metadata");
  fs::create_directories(dir);
  ModelConfig model;
  model.input_dim = 5;
  model.hidden = {3};
  model.latent_dim = 2;
  std::vector<float> params(make_param_layout(model).total);
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  for (float& p : params) p = normal(rng);
  CheckpointInfo info;
  info.epoch = 4;
  info.step = 40;
  // Odd values: neither has a short decimal form, so the text must be the shortest round trip.
  info.has_normalisation = true;
  info.data_scale = 1.0f / 7.3f;
  info.data_offset = -0.987654321f;
  info.data_dtype = "float32";
  info.data_format = "npy";
  const std::string path = (dir / "model.safetensors").string();
  save_model(path, model, params, info);
  CheckpointInfo back;
  EXPECT_EQ(load_model(path, model, &back), params);
  EXPECT_TRUE(back.has_normalisation);
  EXPECT_EQ(std::memcmp(&back.data_scale, &info.data_scale, sizeof(float)), 0) << back.data_scale;
  EXPECT_EQ(std::memcmp(&back.data_offset, &info.data_offset, sizeof(float)), 0);
  EXPECT_EQ(back.data_dtype, "float32");
  EXPECT_EQ(back.data_format, "npy");
  EXPECT_EQ(back.step, 40u);

  // Without it (as before it was recorded) nothing is written and nothing is claimed.
  save_model(path, model, params, CheckpointInfo{});
  EXPECT_EQ(io::read_safetensors(path).metadata.count("data_scale"), 0u);
  load_model(path, model, &back);
  EXPECT_FALSE(back.has_normalisation);

  // A damaged record is a one-line error naming the file.
  io::SafetensorsFile file = io::read_safetensors(path);
  file.metadata["data_scale"] = "0.5x";
  io::write_safetensors(path, file);
  const std::string e = error_of([&] { load_model(path, model, &back); });
  EXPECT_NE(e.find("model.safetensors: __metadata__ has a data_scale"), std::string::npos) << e;
  EXPECT_EQ(e.find('\n'), std::string::npos) << e;
}

void write_rows(const fs::path& path, const std::vector<float>& values, size_t dim) {
  io::write_npy(path.string(), values.data(), {values.size() / dim, dim});
}

// Float rows of odd width in [-3, 5), as sensor windows might be; no normalisation of their own.
std::vector<float> float_rows(size_t rows, size_t dim, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> value(-3.0f, 5.0f);
  std::vector<float> v(rows * dim);
  for (size_t i = 0; i < v.size(); ++i) v[i] = value(rng) + (i % dim == 2 ? 1.5f : 0.0f);
  return v;
}

// A run configured on float NPY files (train.npy, test.npy written in `dir`), loaded through the
// real data front end (load_run_data).
TrainRequest float_run(const fs::path& dir) {
  constexpr size_t kDim = 7;
  fs::create_directories(dir);
  write_rows(dir / "train.npy", float_rows(160, kDim, 11), kDim);
  std::vector<float> test = float_rows(37, kDim, 12);
  test[3] = 9.5f;       // above the train range: clipped to 1
  test[kDim] = -6.25f;  // below it: clipped to 0
  write_rows(dir / "test.npy", test, kDim);
  TrainRequest request = small_run(dir / "run", 2);
  request.config.data.train_file = (dir / "train.npy").string();
  request.config.data.test_file = (dir / "test.npy").string();
  return request;
}

// float_run in a fresh directory `name`, trained; returns the run directory.
std::string trained_float_run(const std::string& name, fs::path* dir, std::ostream& out) {
  *dir = fresh_dir(name);
  const TrainRequest request = float_run(*dir);
  train(request, load_run_data, out);
  return request.run_dir;
}

TEST(CliScoreFile, EvalFileMatchesTheTestSplitAndTheCheckpointRecordsTheNormalisation) {
  fs::path dir;
  std::ostringstream out;
  const std::string run = trained_float_run("score", &dir, out);

  // The recorded map is the train split's, bitwise.
  const DataSplits splits = load_run_data(read_run_config(run));
  ASSERT_LT(*std::min_element(splits.test.f32.begin(), splits.test.f32.end()),
            *std::min_element(splits.train.f32.begin(), splits.train.f32.end()))
      << "the test file must reach outside the train range";
  const auto meta = io::read_safetensors(run + "/model.safetensors").metadata;
  const CheckpointInfo info = open_run(run, "cpu", out).info;
  ASSERT_TRUE(info.has_normalisation);
  EXPECT_EQ(info.data_scale, splits.train.scale);
  EXPECT_EQ(info.data_offset, splits.train.offset);
  EXPECT_EQ(meta.at("data_dtype"), "float32");
  EXPECT_EQ(meta.at("data_format"), "npy");

  // The same rows through the test split and through --file: the same float32 values, the same
  // map (the metadata's shortest decimal text reads back to the same float) and eval's Philox
  // draws keyed by (seed, row), so the CSVs (9 significant digits) must be identical, text for
  // text.
  const std::string split_csv = (dir / "split.csv").string(),
                    file_csv = (dir / "file.csv").string();
  run_cli({"eval", "--run-dir", run, "--split", "test", "--iwae-samples", "4", "--per-sample",
           split_csv, "--device", "cpu"},
          out, false, load_run_data);
  std::ostringstream file_out;
  run_cli({"eval", "--run-dir", run, "--file", (dir / "test.npy").string(), "--iwae-samples", "4",
           "--per-sample", file_csv, "--device", "cpu"},
          file_out, false, load_run_data);
  EXPECT_NE(file_out.str().find("file " + (dir / "test.npy").string() + ": 37 samples"),
            std::string::npos)
      << file_out.str();
  const std::string split_text = read_text(split_csv);
  EXPECT_EQ(std::count(split_text.begin(), split_text.end(), '\n'), 38);
  EXPECT_EQ(read_text(file_csv), split_text);

  // A name without an extension is read in the run's own format (npy, recorded).
  fs::copy_file(dir / "test.npy", dir / "window_batch");
  run_cli({"eval", "--run-dir", run, "--file", (dir / "window_batch").string(), "--iwae-samples",
           "4", "--per-sample", (dir / "bare.csv").string(), "--device", "cpu"},
          out, false, load_run_data);
  EXPECT_EQ(read_text(dir / "bare.csv"), split_text);

  // reconstruct --file too.
  run_cli({"reconstruct", "--run-dir", run, "--file", (dir / "test.npy").string(), "--count", "4",
           "--out", (dir / "r.png").string(), "--device", "cpu"},
          out, false, load_run_data);
  expect_png(dir / "r.png");

  // The NumPy reference reads the map from the checkpoint (no --scale / --offset given).
  expect_python_reference_agrees(run, dir / "test.npy", file_csv, "");
}

TEST(CliScoreFile, BadFilesAndFlagsAreOneLineErrors) {
  fs::path dir;
  std::ostringstream out;
  const std::string run = trained_float_run("score_errors", &dir, out);
  const auto eval_file = [&](const fs::path& file) {
    return error_of([&] {
      run_cli({"eval", "--run-dir", run, "--file", file.string(), "--device", "cpu"}, out, false,
              load_run_data);
    });
  };
  write_rows(dir / "wide.npy", float_rows(5, 8, 13), 8);
  std::vector<float> with_nan = float_rows(5, 7, 14);
  with_nan[9] = std::nanf("");
  write_rows(dir / "nan.npy", with_nan, 7);
  std::vector<std::string> errors = {
      eval_file(dir / "wide.npy"),
      eval_file(dir / "nan.npy"),
      eval_file(dir / "absent.npy"),
      error_of([&] {
        parse_command_line({"eval", "--run-dir", run, "--file", "x.npy", "--split", "test"});
      }),
      error_of([&] {
        parse_command_line({"reconstruct", "--run-dir", run, "--out", "r.png", "--split", "train",
                            "--file", "x.npy"});
      }),
      error_of([&] {
        parse_command_line({"eval", "--run-dir", run, "--label-column", "0"});
      })};
  EXPECT_NE(errors[0].find("wide.npy: rows have 8 values, the run's model expects 7"),
            std::string::npos)
      << errors[0];
  EXPECT_NE(errors[1].find("nan.npy"), std::string::npos) << errors[1];
  EXPECT_NE(errors[1].find("NaN"), std::string::npos) << errors[1];
  EXPECT_NE(errors[2].find("absent.npy"), std::string::npos) << errors[2];
  EXPECT_NE(errors[3].find("--file and --split exclude each other"), std::string::npos)
      << errors[3];
  EXPECT_NE(errors[4].find("--file and --split exclude each other"), std::string::npos)
      << errors[4];
  EXPECT_NE(errors[5].find("--label-column applies to --file"), std::string::npos) << errors[5];
  for (const std::string& e : errors) EXPECT_EQ(e.find('\n'), std::string::npos) << e;
}

// A run trained on uint8 images scoring float CSV rows: the run's map (1/255) is applied as it is,
// and a note says the storage types differ.
TEST(CliScoreFile, FloatFileForAUint8RunIsScoredWithANote) {
  const fs::path dir = fresh_dir("score_u8");
  std::ostringstream out;
  train(small_run(dir, 1), generated_splits, out);
  const Dataset test = generated(4, 9, "rows");
  std::ostringstream csv;
  for (int r = 0; r < test.rows; ++r)
    for (int c = 0; c < test.dim; ++c)
      csv << static_cast<int>(test.u8[static_cast<size_t>(r) * test.dim + c])
          << (c + 1 < test.dim ? "," : "\n");
  write_text(dir / "rows.csv", csv.str());
  std::ostringstream eval_out;
  run_cli(
      {"eval", "--run-dir", dir.string(), "--file", (dir / "rows.csv").string(), "--device", "cpu"},
      eval_out, false, generated_splits);
  EXPECT_NE(eval_out.str().find("note: the run was trained on uint8 data"), std::string::npos)
      << eval_out.str();
  EXPECT_NE(eval_out.str().find(": 4 samples"), std::string::npos) << eval_out.str();
}

// A checkpoint written before the normalisation was recorded: --file derives it from the run's
// train split, as eval always did, and says clearly when that data is gone.
TEST(CliScoreFile, OldCheckpointWithoutTheRecordStillEvaluates) {
  fs::path dir;
  std::ostringstream out;
  const std::string run = trained_float_run("score_old", &dir, out);
  const std::string new_csv = (dir / "new.csv").string(), old_csv = (dir / "old.csv").string();
  const auto eval_to = [&](const std::string& csv) {
    run_cli({"eval", "--run-dir", run, "--file", (dir / "test.npy").string(), "--per-sample", csv,
             "--device", "cpu"},
            out, false, load_run_data);
  };
  eval_to(new_csv);
  const std::string model_path = run + "/model.safetensors";
  io::SafetensorsFile model = io::read_safetensors(model_path);
  for (const char* key : {"data_scale", "data_offset", "data_dtype", "data_format"})
    ASSERT_EQ(model.metadata.erase(key), 1u) << key;
  io::write_safetensors(model_path, model);
  eval_to(old_csv);
  EXPECT_EQ(read_text(old_csv), read_text(new_csv));

  fs::rename(dir / "train.npy", dir / "moved.npy");
  const std::string e = error_of([&] { eval_to(old_csv); });
  EXPECT_NE(e.find("model.safetensors records no data normalisation"), std::string::npos) << e;
  EXPECT_NE(e.find("train.npy"), std::string::npos) << e;
  EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  fs::rename(dir / "moved.npy", dir / "train.npy");

  // Resuming the old run records the map again.
  run_cli({"train", "--resume", run, "--epochs", "3"}, out, false, load_run_data);
  EXPECT_EQ(io::read_safetensors(model_path).metadata.at("data_format"), "npy");
}

TEST(CliEndToEnd, SampleAndReconstructWritePictures) {
  const fs::path dir = fresh_dir("pictures");
  std::ostringstream out;
  train(small_run(dir, 1), generated_splits, out);
  run_cli({"sample", "--run-dir", dir.string(), "--count", "10", "--out", (dir / "s.png").string(),
           "--device", "cpu"},
          out, false, generated_splits);
  run_cli({"reconstruct", "--run-dir", dir.string(), "--count", "5", "--out",
           (dir / "r.png").string(), "--device", "cpu"},
          out, false, generated_splits);
  int w = 0, h = 0, c = 0;
  unsigned char* s = stbi_load((dir / "s.png").string().c_str(), &w, &h, &c, 3);
  ASSERT_NE(s, nullptr);
  stbi_image_free(s);
  // 10 samples of 6 x 5 at 8x magnification (64 / 6 = 10, capped at 8), 4 columns x 3 rows, pad 2.
  EXPECT_EQ(w, 4 * 5 * 8 + 5 * 2);
  EXPECT_EQ(h, 3 * 6 * 8 + 4 * 2);
  unsigned char* r = stbi_load((dir / "r.png").string().c_str(), &w, &h, &c, 3);
  ASSERT_NE(r, nullptr);
  stbi_image_free(r);
  EXPECT_EQ(w, 5 * 5 * 8 + 6 * 2);  // 5 originals in a row
  EXPECT_EQ(h, 2 * 6 * 8 + 3 * 2);  // above their reconstructions
}

TEST(CliEndToEnd, NonFiniteLossStopsTheRunNamingTheStep) {
  const fs::path dir = fresh_dir("nan");
  TrainRequest request = small_run(dir, 2);
  request.config.train.optimizer.lr = 1e30f;  // the first update throws the weights to ~1e30
  request.config.log_every = 1;
  std::ostringstream out;
  const std::string e = error_of([&] { train(request, generated_splits, out); });
  EXPECT_NE(e.find("non-finite"), std::string::npos) << e;
  EXPECT_NE(e.find("at step "), std::string::npos) << e;
  EXPECT_FALSE(fs::exists(dir / "model.safetensors")) << "no checkpoint of a diverged model";
}

// ---------------------------------------------------------------------------------------------
// Checkpoints committed as one unit

std::vector<std::string> hidden_entries(const fs::path& dir) {
  std::vector<std::string> names;
  if (!fs::is_directory(dir)) return names;
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.path().filename().string()[0] == '.') names.push_back(entry.path().string());
  return names;
}

TEST(CliCheckpoints, TheNewestPairIsCommittedInOneFolderAndLinkedWhereReadersLook) {
  const fs::path dir = fresh_dir("pair");
  std::ostringstream out;
  train(small_run(dir, 2), generated_splits, out);
  // Only the newest checkpoint is kept, and the top-level files are the same pair.
  std::vector<std::string> folders;
  for (const auto& entry : fs::directory_iterator(dir / "checkpoints"))
    folders.push_back(entry.path().filename().string());
  EXPECT_EQ(folders, (std::vector<std::string>{"epoch-000002"}));
  for (const char* name : {"model.safetensors", "optimizer.safetensors"})
    EXPECT_EQ(read_text(dir / name), read_text(dir / "checkpoints" / "epoch-000002" / name));
  EXPECT_TRUE(hidden_entries(dir).empty());
  EXPECT_TRUE(hidden_entries(dir / "checkpoints").empty());
}

// Run directories written before checkpoints/ existed hold the two files side by side: they still
// load and resume, bit for bit.
TEST(CliCheckpoints, OldRunDirectoriesWithoutCheckpointsFolderResume) {
  const fs::path straight = fresh_dir("old_straight"), old = fresh_dir("old_layout");
  std::ostringstream out;
  train(small_run(straight, 3), generated_splits, out);
  train(small_run(old, 2), generated_splits, out);
  fs::remove_all(old / "checkpoints");
  for (const char* name : {"model.safetensors", "optimizer.safetensors"}) {  // unlink the links
    const std::string bytes = read_text(old / name);
    fs::remove(old / name);
    write_text(old / name, bytes);
  }
  EXPECT_NO_THROW(open_run(old.string(), "cpu", out));
  run_cli({"train", "--resume", old.string(), "--epochs", "3"}, out, false, generated_splits);
  EXPECT_EQ(model_params(straight), model_params(old));
  EXPECT_TRUE(fs::exists(old / "checkpoints" / "epoch-000003"));

  // The pair torn across epochs (what an older fusedvae killed between its two renames left):
  // refused with the way out named.
  fs::remove_all(old / "checkpoints");
  train(small_run(fresh_dir("old_epoch1"), 1), generated_splits, out);
  fs::remove(old / "optimizer.safetensors");
  fs::copy_file(fresh_dir_path("old_epoch1") / "optimizer.safetensors",
                old / "optimizer.safetensors");
  const std::string e = error_of([&] {
    run_cli({"train", "--resume", old.string()}, out, false, generated_splits);
  });
  EXPECT_NE(e.find("are from different epochs"), std::string::npos) << e;
  EXPECT_NE(e.find("--overwrite"), std::string::npos) << e;
}

TEST(CliCheckpoints, AResumeSkipsATornNewestCheckpointForTheOneBefore) {
  const fs::path straight = fresh_dir("skip_straight"), dir = fresh_dir("skip");
  std::ostringstream out;
  train(small_run(straight, 3), generated_splits, out);
  train(small_run(dir, 2), generated_splits, out);
  // Keep epoch 2 as an older committed checkpoint next to a torn "epoch 3" one.
  fs::copy(dir / "checkpoints" / "epoch-000002", dir / "checkpoints" / "epoch-000003");
  fs::resize_file(dir / "checkpoints" / "epoch-000003" / "model.safetensors", 100);
  run_cli({"train", "--resume", dir.string(), "--epochs", "3"}, out, false, generated_splits);
  EXPECT_EQ(model_params(straight), model_params(dir));
}

TEST(CliCheckpoints, AFullDiskKeepsThePreviousCheckpointAndLeavesNoPartialFile) {
  const fs::path dir = fresh_dir("full");
  std::ostringstream out;
  train(small_run(dir, 1), generated_splits, out);
  const std::string model_before = read_text(dir / "model.safetensors");

  TrainRequest more = small_run(dir, 2);
  more.resume = true;
  std::signal(SIGXFSZ, SIG_IGN);  // writes beyond the limit fail with EFBIG, as on a full disk
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &saved), 0);
  rlimit small = saved;
  small.rlim_cur = 4096;  // config.json and metrics fit, a checkpoint file does not
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  const std::string e = error_of([&] { train(more, generated_splits, out); });
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &saved), 0);
  EXPECT_NE(e.find(dir.string()), std::string::npos) << e;
  EXPECT_NE(e.find("previous checkpoint is kept"), std::string::npos) << e;
  EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  EXPECT_EQ(read_text(dir / "model.safetensors"), model_before);
  EXPECT_EQ(hidden_entries(dir), std::vector<std::string>{});
  EXPECT_EQ(hidden_entries(dir / "checkpoints"), std::vector<std::string>{});
  // And the run goes on once there is room.
  run_cli({"train", "--resume", dir.string(), "--epochs", "2"}, out, false, generated_splits);
  EXPECT_TRUE(fs::exists(dir / "checkpoints" / "epoch-000002"));
}

TEST(CliCheckpoints, AVanishedRunDirectoryIsAOneLineError) {
  const fs::path dir = fresh_dir("vanished");
  std::ostringstream out;
  train(small_run(dir, 1), generated_splits, out);
  ResumePoint point;
  RunConfig config = read_run_config(dir.string());
  config.train.model.input_dim = 30;
  ASSERT_TRUE(find_resume_point(dir.string(), config.train.model, &point));
  fs::remove_all(dir);
  const std::string e = error_of([&] {
    commit_checkpoint(dir.string(), config.train.model, point.params, point.state, point.info);
  });
  EXPECT_NE(e.find(dir.string()), std::string::npos) << e;
  EXPECT_NE(e.find("vanished"), std::string::npos) << e;
}

// A run stopped in its first epoch has no checkpoint: every message names the way on.
TEST(CliCheckpoints, ARunWithoutACheckpointNamesTheWayOn) {
  const fs::path dir = fresh_dir("no_checkpoint");
  std::ostringstream out;
  train(small_run(dir, 1), generated_splits, out);
  fs::remove_all(dir / "checkpoints");
  fs::remove(dir / "model.safetensors");
  fs::remove(dir / "optimizer.safetensors");
  const std::string again = error_of([&] { train(small_run(dir, 1), generated_splits, out); });
  EXPECT_NE(again.find("stopped before its first checkpoint"), std::string::npos) << again;
  EXPECT_NE(again.find("--overwrite"), std::string::npos) << again;
  const std::string resume = error_of([&] {
    run_cli({"train", "--resume", dir.string()}, out, false, generated_splits);
  });
  EXPECT_NE(resume.find("no checkpoint to resume"), std::string::npos) << resume;
  EXPECT_NE(resume.find("--run-dir " + dir.string() + " --overwrite"), std::string::npos) << resume;
}

TEST(CliCheckpoints, ResumingAFinishedRunSaysSoAndWritesNothing) {
  const fs::path dir = fresh_dir("finished");
  std::ostringstream out;
  train(small_run(dir, 1), generated_splits, out);
  const auto before = fs::last_write_time(dir / "samples.png");
  std::ostringstream again;
  run_cli({"train", "--resume", dir.string()}, again, false, generated_splits);
  EXPECT_NE(again.str().find("nothing to do"), std::string::npos) << again.str();
  EXPECT_EQ(again.str().find("wrote"), std::string::npos) << again.str();
  EXPECT_EQ(fs::last_write_time(dir / "samples.png"), before);
}

// ---------------------------------------------------------------------------------------------
// Mistakes a new user made, each answered in words that name the way on

TEST(CliMistakes, RangesTyposAndBadValuesAreExplainedInWords) {
  auto parse_error = [](const std::vector<std::string>& args) {
    return error_of([&] { parse_command_line(args); });
  };
  std::string e = parse_error({"sample", "--run-dir", "r", "--out", "s.png", "--count", "0"});
  EXPECT_NE(e.find("--count: must be an integer >= 1, got '0'"), std::string::npos) << e;
  EXPECT_NE(e.find("fusedvae sample --help"), std::string::npos) << e;
  e = parse_error({"eval", "--run-dir", "r", "--iwae-samples", "-5"});
  EXPECT_NE(e.find("--iwae-samples: must be an integer >= 0, got '-5'"), std::string::npos) << e;
  e = parse_error({"train", "--epoch", "1"});
  EXPECT_NE(e.find("did you mean --epochs?"), std::string::npos) << e;
  e = parse_error({"trian"});
  EXPECT_NE(e.find("did you mean 'train'?"), std::string::npos) << e;
  e = parse_error({"train", "--lr", "nan"});
  EXPECT_NE(e.find("--lr: must be a finite number, got nan"), std::string::npos) << e;
  e = parse_error({"sample", "--run-dir", "r", "--out", "x.jpg"});
  EXPECT_NE(e.find("give a name ending in .png"), std::string::npos) << e;
  EXPECT_EQ(e.find('\n'), std::string::npos) << e;

  const std::string help = parse_command_line({"--help"}).help;
  EXPECT_NE(help.find("fusedvae <command> --help"), std::string::npos) << help;
  const std::string train_help = parse_command_line({"train", "--help"}).help;
  EXPECT_NE(train_help.find("--cuda-graph,--no-cuda-graph "), std::string::npos) << train_help;
  EXPECT_EQ(train_help.find("{false}"), std::string::npos) << train_help;
}

TEST(CliMistakes, AConfigFileMayNameTheRunDirectory) {
  const fs::path dir = fresh_dir("config_run_dir");
  fs::create_directories(dir);
  write_text(dir / "settings.json", R"({"run-dir": "runs/from-config", "epochs": 2})");
  CommandLine line = parse_command_line({"train", "--config", (dir / "settings.json").string()});
  EXPECT_EQ(line.train.run_dir, "runs/from-config");
  EXPECT_EQ(line.train.config.train.epochs, 2);
  line = parse_command_line(
      {"train", "--config", (dir / "settings.json").string(), "--run-dir", "runs/flag"});
  EXPECT_EQ(line.train.run_dir, "runs/flag") << "the flag wins";
  write_text(dir / "bad.json", R"({"run-dir": 5})");
  const std::string e = error_of([&] {
    parse_command_line({"train", "--config", (dir / "bad.json").string()});
  });
  EXPECT_NE(e.find("--run-dir: expected a string"), std::string::npos) << e;
}

TEST(CliMistakes, OutputsAreCheckedBeforeAnythingIsComputed) {
  const fs::path dir = fresh_dir("outputs");
  std::ostringstream out;
  train(small_run(dir, 1), generated_splits, out);
  EvalRequest request;
  request.run_dir = dir.string();
  request.device = "cpu";
  request.per_sample_csv = "/nonexistent-folder/scores.csv";
  std::ostringstream eval_out;
  const std::string e = error_of([&] { evaluate_run(request, generated_splits, eval_out); });
  EXPECT_NE(e.find("/nonexistent-folder does not exist"), std::string::npos) << e;
  EXPECT_EQ(eval_out.str(), "") << "nothing is computed or printed before the check";
  SampleRequest sample;
  sample.run_dir = dir.string();
  sample.out_png = dir.string();
  EXPECT_NE(error_of([&] { sample_run(sample, out); }).find("is a folder"), std::string::npos);
}

TEST(CliMistakes, TheEpochLineLabelsItsFiguresAsEvalDoes) {
  const fs::path dir = fresh_dir("labels");
  std::ostringstream out;
  TrainRequest request = small_run(dir, 1);
  train(request, generated_splits, out);
  EXPECT_NE(out.str().find("test: ELBO (1 sample) "), std::string::npos) << out.str();
  EXPECT_NE(out.str().find(", recon at z=mu "), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("6 steps an epoch"), std::string::npos) << out.str();
}

// A loss that climbs far above its best is reported on stderr while the run goes on; the CPU
// fallback notice goes there too, never into the results on stdout.
TEST(CliMistakes, DivergenceAndNoticesGoToStderr) {
  const fs::path dir = fresh_dir("diverging");
  TrainRequest request = small_run(dir, 2);
  request.config.train.optimizer.lr = 1.0f;
  request.config.log_every = 1;
  request.config.device = "auto";
  std::ostringstream out, err;
  std::streambuf* saved = std::cerr.rdbuf(err.rdbuf());
  const std::string e = error_of([&] { train(request, generated_splits, out); });
  std::cerr.rdbuf(saved);
  EXPECT_NE(err.str().find("warning: the loss is diverging"), std::string::npos)
      << err.str() << " / " << e;
  EXPECT_EQ(out.str().find("warning"), std::string::npos) << out.str();
  EXPECT_EQ(out.str().find("running on the CPU"), std::string::npos) << out.str();
}

}  // namespace
}  // namespace fusedvae::cli
