// @brief DyAD's training speed: snippets per second of fusedvae's training step (host/train/
// dyad_trainer.h: forward, backward, AdamW) for each preset's model against the PyTorch peer
// (bench/bench_dyad_torch.py, python_ref/dyad/dyad_torch.py) on the same device.
// speed-up = fusedvae's snippets/s / PyTorch's.
//
//   bench_dyad [--device cpu|gpu] [--presets dyad-fivefold,...] [--steps 8] [--warmup 2]
//              [--rounds R] [--torch auto|on|off] [--smoke] [--out DIR]
//
// A shared machine's load comes and goes within a minute: each preset is timed in R rounds, each
// round fusedvae and then PyTorch, one right after the other, and the speed-up reported is the
// median of the rounds' own ratios (their range in the JSON), not a ratio of two medians taken
// minutes apart. R defaults to 3 on the CPU and 1 on a (dedicated) GPU.
//
// Data: random normal snippets of the default fleet's shape (T = 128, C = 7, the decoder input the
// preset names), as bench_dyad_torch.py's: a GRU's cost does not depend on the values. The CPU
// runs at the OpenMP thread count (OMP_NUM_THREADS) and PyTorch at the same.
#include <CLI/CLI.hpp>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "bench/bench_results.h"
#include "bench/bench_support.h"
#include "host/cli/dyad_command.h"
#include "host/ops/matmul_cpu.h"
#include "host/train/dyad_trainer.h"

namespace fusedvae::bench {
namespace {

constexpr int kSteps = 128, kChannels = 7;
const std::vector<std::string> kChannelNames = {
    "soc", "current", "min_temp", "max_single_volt", "max_temp", "min_single_volt", "volt"};

struct Options {
  std::string device = "cpu";
  std::vector<std::string> presets;
  int steps = 8, warmup = 2;
  int rounds = 0;  // 0: 3 on the CPU, 1 on the GPU
  std::string torch = "auto";
  bool smoke = false;
  std::string out;
};

DyadTrainConfig config_of(const cli::DyadPreset& p, bool smoke) {
  DyadTrainConfig c;
  c.model.channels = kChannels;
  c.model.steps = smoke ? 6 : kSteps;
  for (const std::string& name : p.decoder_channels)
    c.model.decoder_channels.push_back(static_cast<int>(
        std::find(kChannelNames.begin(), kChannelNames.end(), name) - kChannelNames.begin()));
  c.model.hidden = smoke ? 5 : p.hidden;
  c.model.layers = p.layers;
  c.model.latent = p.latent;
  c.batch_size = smoke ? 3 : p.batch_size;
  c.noise_scale = p.noise_scale;
  c.nll_weight = p.nll_weight;
  c.label_weight = p.label_weight;
  c.optimizer.lr = p.lr;
  c.optimizer.weight_decay = 1e-6f;
  c.kl.kind = KlScheduleKind::kConstant;  // past the annealing, as the PyTorch side
  c.kl.weight = p.anneal0;
  return c;
}

// Median and minimum seconds of `steps` steps after `warmup`, each synchronised.
struct Timing {
  double median_s, min_s;
};
Timing time_fusedvae(const DyadTrainConfig& config, const std::string& device, int warmup,
                     int steps) {
  auto trainer = make_dyad_trainer(
      config, device == "gpu" ? make_gpu_backend(false, true) : make_cpu_backend());
  const int count = config.batch_size * (warmup + steps);
  std::mt19937 rng(5);
  std::normal_distribution<float> normal;
  std::uniform_real_distribution<float> unit;
  std::vector<float> x(static_cast<size_t>(count) * config.model.steps * kChannels), mileage(count);
  for (float& v : x) v = normal(rng);
  for (float& v : mileage) v = unit(rng);
  trainer->set_train_data({x.data(), mileage.data(), count});
  trainer->start_epoch(0);
  std::vector<double> seconds;
  for (int s = 0; s < warmup + steps; ++s) {
    const auto start = std::chrono::steady_clock::now();
    trainer->train_step(s);
    trainer->last_losses();  // synchronises (the GPU step does not)
    if (s >= warmup)
      seconds.push_back(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(seconds.begin(), seconds.end());
  return {seconds[seconds.size() / 2], seconds.front()};
}

// PyTorch's row for `preset` from one bench_dyad_torch.py run; null with `why`.
nlohmann::json time_torch(const Options& o, const std::string& preset, int threads,
                          std::string* why) {
  const std::string json_path = "/tmp/bench_dyad_torch_" + std::to_string(::getpid()) + ".json";
  const std::string command = shell_quote(python_interpreter()) + " " +
                              shell_quote(source_file("bench/bench_dyad_torch.py")) +
                              " --threads " + std::to_string(threads) + " --presets " + preset +
                              " --devices " + (o.device == "gpu" ? "cuda" : "cpu") + " --steps " +
                              std::to_string(o.steps) + " --warmup " + std::to_string(o.warmup) +
                              " --json " + json_path + " > /dev/null";
  const int status = std::system(command.c_str());
  if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
    *why = "torch is not importable";
    return {};
  }
  nlohmann::json row;
  try {
    const nlohmann::json result = nlohmann::json::parse(std::ifstream(json_path));
    for (const nlohmann::json& r : result.at("rows"))
      if (r.at("preset") == preset) row = r;
    if (row.is_null()) *why = command + " gave no row for " + preset;
  } catch (const std::exception& e) {
    *why = command + " gave no readable JSON (" + e.what() + ")";
  }
  std::remove(json_path.c_str());
  return row;
}

const std::vector<Column> kColumns = {
    {"preset", "preset"},
    {"H x layers", "shape"},
    {"batch", "batch", 0},
    {"fusedvae snippets/s", "fusedvae_snippets_per_s", 0},
    {"PyTorch snippets/s", "torch_snippets_per_s", 0},
    {"speed-up", "speedup", 2},
    {"fusedvae epoch s (7,421)", "fusedvae_epoch_s", 1},
};

int run(const Options& options) {
  Options o = options;
  if (o.presets.empty())
    for (const cli::DyadPreset& p : cli::dyad_presets()) o.presets.push_back(p.name);
  if (o.smoke) o.steps = 2, o.warmup = 1;
  const int rounds = o.smoke ? 1 : o.rounds > 0 ? o.rounds : (o.device == "gpu" ? 1 : 3);
  const int threads = cpu::cpu_threads();
  std::printf(
      "bench_dyad on %s (%d threads, %d round%s per preset); speed-up = fusedvae "
      "snippets/s / PyTorch's\n",
      o.device.c_str(), threads, rounds, rounds == 1 ? "" : "s");
  std::string why = o.smoke ? "not in the smoke mode" : "--torch off";
  bool with_torch = o.torch != "off" && !o.smoke;
  ResultsFile results;
  results.header = host_header("bench_dyad", o.smoke);
  results.header["device"] = o.device;
  results.header["rounds"] = rounds;
  for (const std::string& name : o.presets) {
    const cli::DyadPreset& p = cli::dyad_preset(name);
    const DyadTrainConfig config = config_of(p, o.smoke);
    // Each round's median step and its fastest; with PyTorch, its rate and the round's ratio.
    std::vector<double> step_s, min_step_s, torch_rates, ratios;
    for (int round = 0; round < rounds; ++round) {
      const Timing t = time_fusedvae(config, o.device, o.warmup, o.steps);
      step_s.push_back(t.median_s);
      min_step_s.push_back(t.min_s);
      if (!with_torch) continue;
      const nlohmann::json torch_row = time_torch(o, name, threads, &why);
      if (torch_row.is_null()) {  // not importable, or no result: no PyTorch column at all
        with_torch = false;
        if (o.torch == "on") {
          std::fprintf(stderr, "bench_dyad: PyTorch did not run: %s\n", why.c_str());
          return 1;
        }
        continue;
      }
      torch_rates.push_back(torch_row.at("snippets_per_s").get<double>());
      ratios.push_back(config.batch_size / t.median_s / torch_rates.back());
    }
    const double median_s = summarize(step_s).median_ms;  // summarize is unit-agnostic
    nlohmann::json row = {{"preset", name},
                          {"shape", std::to_string(p.hidden) + " x " + std::to_string(p.layers)},
                          {"batch", config.batch_size},
                          {"threads", threads},
                          {"rounds", rounds},
                          {"fusedvae_median_step_s", median_s},
                          {"fusedvae_min_step_s", summarize(min_step_s).min_ms},
                          {"fusedvae_snippets_per_s", config.batch_size / median_s},
                          {"fusedvae_epoch_s", (7421 / config.batch_size) * median_s}};
    if (with_torch && !ratios.empty()) {
      const TimeStats speedup = summarize(ratios);
      row["torch_snippets_per_s"] = summarize(torch_rates).median_ms;
      row["speedup"] = speedup.median_ms;
      row["speedup_rounds"] = ratios;
      row["speedup_min"] = speedup.min_ms;
      row["speedup_max"] = speedup.max_ms;
    }
    std::printf("%-14s %5s  batch %3d: fusedvae %8.0f snippets/s", name.c_str(),
                row["shape"].get<std::string>().c_str(), config.batch_size,
                row["fusedvae_snippets_per_s"].get<double>());
    if (row.contains("speedup")) {
      std::printf(", PyTorch %8.0f, speed-up %.2fx", row["torch_snippets_per_s"].get<double>(),
                  row["speedup"].get<double>());
      if (ratios.size() > 1)
        std::printf(" (rounds %.2f to %.2f)", row["speedup_min"].get<double>(),
                    row["speedup_max"].get<double>());
    }
    std::printf("\n");
    std::fflush(stdout);
    results.rows.push_back(row);
  }
  results.header["torch_note"] =
      with_torch ? "bench/bench_dyad_torch.py, same threads, right after fusedvae in each round"
                 : why;
  if (!o.out.empty()) {
    write_results(results, kColumns, o.out, "bench_dyad_" + o.device,
                  "DyAD training speed, fusedvae vs PyTorch (" + o.device + ")");
    const std::string problem =
        check_written_results(o.out, "bench_dyad_" + o.device, results.rows.size());
    if (!problem.empty()) {
      std::fprintf(stderr, "bench_dyad: %s\n", problem.c_str());
      return 1;
    }
  }
  return 0;
}

}  // namespace
}  // namespace fusedvae::bench

int main(int argc, char** argv) {
  fusedvae::bench::Options options;
  CLI::App app{"DyAD training speed: fusedvae against the PyTorch peer"};
  app.add_option("--device", options.device, "cpu | gpu")->check(CLI::IsMember({"cpu", "gpu"}));
  app.add_option("--presets", options.presets, "presets to time (default: all four)")
      ->delimiter(',');
  app.add_option("--steps", options.steps, "timed steps")->check(CLI::Range(1, 100000));
  app.add_option("--warmup", options.warmup, "untimed steps first")->check(CLI::Range(0, 1000));
  app.add_option("--rounds", options.rounds,
                 "rounds per preset, each fusedvae then PyTorch (default 3 on the CPU, 1 on a GPU)")
      ->check(CLI::Range(1, 100));
  app.add_option("--torch", options.torch, "time PyTorch too: auto, on, off")
      ->check(CLI::IsMember({"auto", "on", "off"}));
  app.add_flag("--smoke", options.smoke,
               "tiny shapes, two steps, no PyTorch (a test of the bench)");
  app.add_option("--out", options.out, "folder for bench_dyad_<device>.{json,md}");
  CLI11_PARSE(app, argc, argv);
  if (options.device == "gpu") {
    std::string reason;
    if (!fusedvae::cuda_device_present(&reason)) {
      std::printf("bench_dyad: skipped, %s\n", reason.c_str());
      return 77;
    }
  }
  try {
    return fusedvae::bench::run(options);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_dyad: %s\n", e.what());
    return 1;
  }
}
