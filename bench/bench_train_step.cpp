// @brief Training-step benchmark through the Trainer interface (CPU and GPU trainers): time per
// step, images/s and one epoch's wall time for the two reference configurations.
//
//   bench_train_step [--smoke] [--device cpu|gpu|all] [--cuda-graph on|off|both] [--out DIR]
//                    [--steps N] [--warmup N] [--config NAME] [--batch N]
//
// Before a trainer is timed, one step of it on a fixed batch with given eps is checked against the
// float64 model reference (step_validation.h); a trainer that fails is not timed.
//
// CPU rows also time the step's GEMM floor (its matrix products alone, between the steps) and
// report the step as a share of it ("share_of_gemm_floor"), an epoch against the time its steps
// predict ("epoch_over_predicted"), and the step's profile: its ops (everything but the layers)
// timed one by one in a second run ("step_profile", "step_ops_ms").
//
// The GPU trainer is measured with its step captured as one CUDA graph and replayed ("cuda graph",
// the default of training runs) and launching its kernels one by one ("kernel launches"): rows
// carry "cuda_graph" (true/false; absent on the CPU) and "variant".
//
// Data: a synthetic uint8 training set with Fashion-MNIST's shape (60000 x 784, about half the
// pixels 0 like the real images). A step's cost does not depend on the pixel values (dense matrix
// products, branch-free element-wise ops), and the PyTorch peer reads the real files.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "bench/bench_results.h"
#include "bench/step_validation.h"
#include "bench/timed_backend.h"
#include "host/ops/matmul_cpu.h"
#include "host/train/backend.h"
#include "host/train/trainer.h"

namespace fusedvae::bench {
namespace {

struct TrainShape {
  std::string name;
  int input_dim;
  std::vector<int> hidden;
  int latent;
  int batch;
};

const std::vector<TrainShape> kFullShapes = {{"784-400-20", 784, {400}, 20, 128},
                                             {"784-1024-512-64", 784, {1024, 512}, 64, 4096}};
// Smoke: a tiny model on a tiny set, a few steps; exercises the whole path on the CPU.
const std::vector<TrainShape> kSmokeShapes = {{"64-32-8 (smoke)", 64, {32}, 8, 32}};

struct Options {
  bool smoke = false;
  std::string device = "all";
  std::string out;
  int steps = 0;  // 0: per device and shape defaults
  int warmup = -1;
  int rows = 60000;
  bool epoch = true;
  bool tf32 = false;
  std::string cuda_graph = "both";  // on | off | both (GPU only)
  std::string config;               // one configuration by name; empty: all
  int batch = 0;                    // 0: each configuration's own batch size
};

Dataset synthetic_dataset(int rows, int dim) {
  Dataset data;
  data.source = "synthetic uint8 " + std::to_string(rows) + "x" + std::to_string(dim);
  data.rows = rows;
  data.dim = dim;
  data.u8.resize(static_cast<size_t>(rows) * dim);
  uint64_t state = 0x2545F4914F6CDD1Dull;
  for (auto& v : data.u8) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    v = (state & 1) ? 0 : static_cast<uint8_t>(state >> 24);
  }
  data.scale = 1.0f / 255.0f;
  return data;
}

TrainConfig train_config(const TrainShape& shape, bool tf32, bool cuda_graph) {
  TrainConfig config;  // Bernoulli logits, mean reduction, Adam lr 1e-3, KL weight 1
  config.model.input_dim = shape.input_dim;
  config.model.hidden = shape.hidden;
  config.model.latent_dim = shape.latent;
  config.batch_size = shape.batch;
  config.seed = 0;
  config.tf32 = tf32;              // GPU matrix products in TF32 (the CPU trainer ignores it)
  config.cuda_graph = cuda_graph;  // likewise
  return config;
}

// The (in, out) of every Linear layer of the model, encoder to decoder.
std::vector<std::pair<int, int>> linear_layers(const TrainShape& shape) {
  std::vector<std::pair<int, int>> layers;
  int width = shape.input_dim;
  for (int h : shape.hidden) layers.push_back({width, h}), width = h;
  layers.push_back({width, shape.latent});
  layers.push_back({width, shape.latent});
  width = shape.latent;
  for (auto it = shape.hidden.rbegin(); it != shape.hidden.rend(); ++it)
    layers.push_back({width, *it}), width = *it;
  layers.push_back({width, shape.input_dim});
  return layers;
}

// Matrix-product FLOPs of one step: forward, weight gradients, and input gradients of every layer
// but the first (the data needs none). torch_peer.py and bench_numpy_ref.py count the same way.
double step_flops(const TrainShape& shape) {
  const std::vector<std::pair<int, int>> layers = linear_layers(shape);
  double macs = 0.0;
  for (const auto& [in, out] : layers) macs += static_cast<double>(in) * out;
  const double first = static_cast<double>(layers.front().first) * layers.front().second;
  return 2.0 * shape.batch * (3.0 * macs - first);
}

const char* variant_name(bool gpu, bool cuda_graph) {
  return !gpu ? "" : (cuda_graph ? "cuda graph" : "kernel launches");
}

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// The CPU step's floor: the same matrix products a step makes (forward, weight gradient, and the
// input gradient of every layer but the first), alone, back to back, with the fastest library
// here (oneDNN: it beat OpenBLAS 0.3.21 on this project's shapes, see the commit that removed
// OpenBLAS), on the same thread pool. No bias, activation or anything else: what is left between
// this and the step is the step's own overhead.
class GemmFloor {
 public:
  explicit GemmFloor(const TrainShape& shape) {
    // Each layer's operands in buffers of their own, as in the step (input, weight, output, its
    // gradient, the weight's gradient, the input's gradient): the products meet the caches as the
    // step's do, not one set of buffers kept hot.
    for (const auto& [in, out] : linear_layers(shape)) {
      const size_t rows = static_cast<size_t>(shape.batch);
      Layer layer{{}, {}, {}, {}, {}, {}, {}, {}, {}};
      layer.x.assign(rows * in, 0.5f);  // values like a step's: no denormals, no zeros to skip
      layer.w.assign(static_cast<size_t>(out) * in, -0.25f);
      layer.y.assign(rows * out, 0.0f);
      layer.dy.assign(rows * out, 0.125f);
      layer.dw.assign(static_cast<size_t>(out) * in, 0.0f);
      const bool first = layers_.empty();  // the data needs no gradient
      if (!first) layer.dx.assign(rows * in, 0.0f);
      cpu::MatmulShape forward{shape.batch, out, in};
      forward.transpose_b = true;
      cpu::MatmulShape weight{out, in, shape.batch};
      weight.transpose_a = true;
      layer.forward.emplace_back(forward);
      layer.weight.emplace_back(weight);
      if (!first) layer.input.emplace_back(cpu::MatmulShape{shape.batch, in, out});
      layers_.push_back(std::move(layer));
    }
  }

  // Forward through the layers, then backward from the last, as the step orders them.
  double step_ms() {
    const auto t0 = Clock::now();
    for (Layer& l : layers_) l.forward[0].run(l.x.data(), l.w.data(), nullptr, l.y.data());
    for (auto it = layers_.rbegin(); it != layers_.rend(); ++it) {
      it->weight[0].run(it->dy.data(), it->x.data(), nullptr, it->dw.data());
      if (!it->input.empty()) it->input[0].run(it->dy.data(), it->w.data(), nullptr, it->dx.data());
    }
    return ms_since(t0);
  }

 private:
  struct Layer {
    std::vector<float> x, w, y, dy, dw, dx;
    std::vector<cpu::Matmul> forward, weight, input;  // one product each (none: no input grad)
  };
  std::vector<Layer> layers_;
};

// Steps are timed in blocks that end with last_losses() on the GPU (a synchronisation): the
// median over blocks of (block time / steps in block) is the per-step time, with the host's
// enqueueing and the device's work both inside it. On the CPU a step is synchronous: blocks of 1.
nlohmann::json bench_trainer(Trainer* trainer, const TrainShape& shape, bool gpu, bool tf32,
                             bool cuda_graph, int steps, int warmup, bool epoch, bool* ok) {
  const int per_epoch = trainer->batches_per_epoch();
  int epoch_index = 0, batch_index = 0;
  trainer->start_epoch(epoch_index);
  auto next_step = [&] {
    if (batch_index == per_epoch) {
      trainer->start_epoch(++epoch_index);
      batch_index = 0;
    }
    trainer->train_step(batch_index++);
  };
  for (int i = 0; i < warmup; ++i) next_step();
  const StepLosses first = trainer->last_losses();

  const int block = gpu ? 20 : 1;
  const int blocks = std::max(1, steps / block);
  // On the CPU the GEMM floor is timed between the steps, one floor per step, so that both see
  // the same machine state (a neighbour's load, the clock) and their ratio is fair.
  std::unique_ptr<GemmFloor> floor = gpu ? nullptr : std::make_unique<GemmFloor>(shape);
  if (floor) floor->step_ms();  // the products' first run: oneDNN's lazy set-up
  std::vector<double> per_step_ms, floor_ms;
  double steps_wall_ms = 0.0;
  for (int b = 0; b < blocks; ++b) {
    const auto t0 = Clock::now();
    for (int i = 0; i < block; ++i) next_step();
    // The GPU's synchronisation. A CPU step is done when train_step returns, and a training run
    // reads its losses once per log interval (50 steps by default), not per step: on the CPU that
    // read also takes the reported gradient norm (FlatParameters::settle_grad_norm).
    if (gpu) trainer->last_losses();
    const double block_ms = ms_since(t0);
    steps_wall_ms += block_ms;
    per_step_ms.push_back(block_ms / block);
    if (floor) floor_ms.push_back(floor->step_ms());
  }
  const double mean_ms = steps_wall_ms / (blocks * block);
  const StepLosses last = trainer->last_losses();
  const TimeStats stats = summarize(per_step_ms);

  double epoch_s = -1.0;
  if (epoch) {
    const auto t0 = Clock::now();
    trainer->start_epoch(++epoch_index);
    for (int b = 0; b < per_epoch; ++b) trainer->train_step(b);
    trainer->last_losses();
    epoch_s = ms_since(t0) / 1e3;
  }
  const StepLosses final_losses = trainer->last_losses();
  const bool finite = std::isfinite(first.loss) && std::isfinite(final_losses.loss);
  if (!finite) *ok = false;
  std::printf(
      "%-18s %-34s %-16s batch %5d: step %9.3f ms (min %.3f, max %.3f) %11.0f img/s; epoch "
      "%s; loss %.3f -> %.3f%s\n",
      shape.name.c_str(), trainer->device_name().c_str(), variant_name(gpu, cuda_graph),
      shape.batch, stats.median_ms, stats.min_ms, stats.max_ms,
      shape.batch / (stats.median_ms * 1e-3),
      epoch ? (std::to_string(epoch_s) + " s").c_str() : "skipped", first.loss, final_losses.loss,
      finite ? "" : "  NON-FINITE LOSS");
  std::fflush(stdout);
  nlohmann::json row = {{"config", shape.name},
                        {"batch", shape.batch},
                        {"implementation", "fusedvae"},
                        {"device", trainer->device_name()},
                        {"precision", gpu && tf32 ? "tf32" : "fp32"},
                        {"steps_timed", blocks * block},
                        {"steps_per_block", block},
                        {"warmup_steps", warmup},
                        {"step_median_ms", stats.median_ms},
                        {"step_min_ms", stats.min_ms},
                        {"step_max_ms", stats.max_ms},
                        {"step_wall_mean_ms", mean_ms},
                        {"images_per_s", shape.batch / (stats.median_ms * 1e-3)},
                        {"tflops", step_flops(shape) / (stats.median_ms * 1e-3) / 1e12},
                        {"steps_per_epoch", per_epoch},
                        {"loss_after_warmup", first.loss},
                        {"final_loss", final_losses.loss},
                        {"finite", finite}};
  row["epoch_s"] = epoch ? nlohmann::json(epoch_s) : nlohmann::json(nullptr);
  if (floor) {
    const TimeStats floor_stats = summarize(floor_ms);
    row["gemm_floor_ms"] = floor_stats.median_ms;
    row["share_of_gemm_floor"] = floor_stats.median_ms / stats.median_ms;
    std::printf(
        "%-18s GEMM floor (the step's products alone, oneDNN) %.3f ms: the step runs at "
        "%.0f%% of it\n",
        shape.name.c_str(), floor_stats.median_ms, 100.0 * floor_stats.median_ms / stats.median_ms);
  }
  if (epoch) {
    // A whole epoch (shuffle and the epoch's start included) against what its steps predict.
    row["epoch_over_predicted"] = epoch_s * 1e3 / (per_epoch * stats.median_ms);
  }
  if (gpu) {
    row["cuda_graph"] = cuda_graph;
    row["variant"] = variant_name(gpu, cuda_graph);
  }
  (void)last;
  return row;
}

// Where the CPU step's time goes besides its layers: the same step on a trainer whose backend times
// each op (bench/timed_backend.h), per step, over `steps` steps after `warmup`. The layers' work
// (the products with their fused bias and ReLU, the bias gradients, the activation derivatives,
// the per-layer AdamW excluded) is the rest of the step. A run of its own, after the timed one, so
// that the timing of the step above carries no clock reads between ops.
nlohmann::json profile_cpu_step(const TrainConfig& config, const Dataset& data,
                                const TrainShape& shape, int steps, int warmup) {
  auto timed = std::make_unique<TimedBackend>(make_cpu_backend());
  TimedBackend* ops = timed.get();
  auto trainer = make_trainer(config, std::move(timed));
  trainer->set_train_data(data);
  const int per_epoch = trainer->batches_per_epoch();
  int batch = 0;
  auto next_step = [&] {
    trainer->train_step(batch);
    batch = (batch + 1) % per_epoch;
  };
  for (int i = 0; i < warmup; ++i) next_step();
  ops->reset();
  const auto t0 = Clock::now();
  for (int i = 0; i < steps; ++i) next_step();
  const double step_ms = ms_since(t0) / steps;
  nlohmann::json profile = nlohmann::json::object();
  double ops_ms = 0.0;
  std::string line;
  for (const auto& [name, total_ms] : ops->op_ms()) {
    const double ms = total_ms / steps;
    profile[name] = ms;
    ops_ms += ms;
    char part[96];
    std::snprintf(part, sizeof(part), "%s %.3f, ", name.c_str(), ms);
    line += part;
  }
  std::printf(
      "%-18s step profile (ms per step, mean of %d): %sall ops %.3f; the layers (the rest) %.3f "
      "of a %.3f ms step\n",
      shape.name.c_str(), steps, line.c_str(), ops_ms, step_ms - ops_ms, step_ms);
  return {{"ops_ms", profile},
          {"ops_total_ms", ops_ms},
          {"layers_ms", step_ms - ops_ms},
          {"step_mean_ms", step_ms},
          {"steps", steps}};
}

const std::vector<Column> kColumns = {
    {"config", "config"},
    {"batch", "batch"},
    {"device", "device"},
    {"variant", "variant"},
    {"step ms (median)", "step_median_ms", 3},
    {"min", "step_min_ms", 3},
    {"max", "step_max_ms", 3},
    {"images/s", "images_per_s", 0},
    {"TFLOP/s", "tflops", 3},
    {"GEMM floor ms", "gemm_floor_ms", 3},
    {"share of floor", "share_of_gemm_floor", 2},
    {"ops ms (profile)", "step_ops_ms", 3},
    {"epoch s", "epoch_s", 2},
    {"epoch / predicted", "epoch_over_predicted", 2},
    {"steps timed", "steps_timed"},
    {"final loss", "final_loss", 2},
    {"validation: worst share of tol", "validation_worst_share", 4},
    {"error", "error"}};

int run(const Options& options) {
  bool ok = true;
  ResultsFile results;
  results.header = host_header("bench_train_step: fusedvae training step", options.smoke);
  results.header["data"] = options.smoke ? "synthetic uint8 512 x 64"
                                         : "synthetic uint8 " + std::to_string(options.rows) +
                                               " x 784 (Fashion-MNIST's shape)";
  results.header["objective"] = "Bernoulli logits, mean over batch, KL weight 1, Adam lr 1e-3";

  std::string reason;
  const bool have_gpu = cuda_device_present(&reason);
  const bool want_cpu = options.device == "cpu" || options.device == "all";
  const bool want_gpu = options.device == "gpu" || options.device == "all";
  if (want_gpu && !have_gpu) {
    std::printf("== GPU trainer SKIPPED: %s. No GPU numbers are reported.\n", reason.c_str());
    if (options.device == "gpu") ok = false;
  }
  const auto& shapes = options.smoke ? kSmokeShapes : kFullShapes;
  for (TrainShape shape : shapes) {
    if (!options.config.empty() && shape.name != options.config) continue;
    if (options.batch > 0) shape.batch = options.batch;
    const Dataset data = synthetic_dataset(options.smoke ? 512 : options.rows, shape.input_dim);
    // (backend, CUDA graph) pairs; the CPU trainer has no graph to switch.
    std::vector<std::pair<bool, bool>> runs;
    if (want_cpu) runs.push_back({false, false});
    if (want_gpu && have_gpu) {
      if (options.cuda_graph != "off") runs.push_back({true, true});
      if (options.cuda_graph != "on") runs.push_back({true, false});
    }
    for (const auto& [gpu, cuda_graph] : runs) {
      const bool large = shape.batch >= 1024;
      // The large configuration takes about a second per step on a 2-core CPU.
      const int steps = options.steps > 0 ? options.steps
                        : options.smoke   ? 5
                        : gpu             ? (large ? 100 : 400)
                                          : (large ? 3 : 100);
      const int warmup = options.warmup >= 0 ? options.warmup : (options.smoke ? 1 : gpu ? 20 : 2);
      const bool epoch = options.epoch;
      const TrainConfig config = train_config(shape, options.tf32, cuda_graph);
      const TrainerFactory make = gpu ? make_gpu_trainer : make_cpu_trainer;
      const Validation validation = validate_step_against_reference(make, config, gpu);
      for (const CheckResult& check : validation.checks)
        if (!check.pass) std::printf("  %s\n", check.describe().c_str());
      std::printf("%-18s %s: one step against the float64 reference: %s, worst %.3g of tolerance\n",
                  shape.name.c_str(), gpu ? variant_name(true, cuda_graph) : "cpu",
                  validation.pass() ? "pass" : "FAIL", validation.worst_share());
      if (!validation.pass()) {  // nothing is timed on a step that computes something else
        ok = false;
        results.rows.push_back({{"config", shape.name},
                                {"batch", shape.batch},
                                {"implementation", "fusedvae"},
                                {"error", "failed validation against the float64 reference"}});
        continue;
      }
      auto trainer = make(config);
      trainer->set_train_data(data);
      results.rows.push_back(bench_trainer(trainer.get(), shape, gpu, options.tf32, cuda_graph,
                                           steps, warmup, epoch, &ok));
      results.rows.back()["validation_worst_share"] = validation.worst_share();
      if (!gpu) {
        const nlohmann::json profile = profile_cpu_step(config, data, shape, steps, warmup);
        results.rows.back()["step_profile"] = profile;
        results.rows.back()["step_ops_ms"] = profile["ops_total_ms"];
      }
    }
  }
  const std::string dir =
      !options.out.empty() ? options.out : default_results_dir(have_gpu ? "gpu" : "cpu");
  const std::string stem = options.tf32 ? "train_step_tf32" : "train_step";
  const std::string kept =
      keep_earlier_rows(dir, stem, {"config", "batch", "device", "variant", "precision"}, &results);
  if (!kept.empty()) std::printf("%s\n", kept.c_str());
  const auto paths = write_results(results, kColumns, dir, stem,
                                   "fusedvae training step (through the Trainer interface)");
  const std::string problem = check_written_results(dir, stem, results.rows.size());
  if (!problem.empty()) {
    std::printf("results writer check FAILED: %s\n", problem.c_str());
    ok = false;
  } else {
    std::printf("wrote %s and %s (read back: both parse)\n", paths[0].c_str(), paths[1].c_str());
  }
  std::printf("bench_train_step: %s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace fusedvae::bench

int main(int argc, char** argv) {
  fusedvae::bench::Options options;
  CLI::App app{"fusedvae training-step benchmark"};
  app.add_flag("--smoke", options.smoke, "tiny model, few steps (the ctest mode)");
  app.add_option("--device", options.device, "cpu, gpu or all (all: the GPU when present)")
      ->check(CLI::IsMember({"cpu", "gpu", "all"}));
  app.add_option("--out", options.out, "results folder (default bench/results/<date>-<device>)");
  app.add_option("--steps", options.steps, "timed steps per measurement")
      ->check(CLI::Range(1, 1000000));
  app.add_option("--warmup", options.warmup, "untimed steps first")->check(CLI::Range(0, 100000));
  app.add_option("--rows", options.rows, "rows of the synthetic training set")
      ->check(CLI::Range(4096, 10000000));
  app.add_flag("!--no-epoch", options.epoch, "skip the epoch timing");
  app.add_option("--config", options.config, "only this configuration")->check(CLI::IsMember([] {
    std::vector<std::string> names;
    for (const auto& shape : fusedvae::bench::kFullShapes) names.push_back(shape.name);
    return names;
  }()));
  app.add_option("--batch", options.batch,
                 "batch size for every configuration (default: 128 for 784-400-20, 4096 for "
                 "784-1024-512-64)")
      ->check(CLI::Range(1, 65536));
  app.add_option("--cuda-graph", options.cuda_graph,
                 "GPU step captured as a CUDA graph (on), launched kernel by kernel (off), or "
                 "both, one row each")
      ->check(CLI::IsMember({"on", "off", "both"}));
  app.add_flag("--tf32", options.tf32,
               "GPU matrix products in TF32 (writes train_step_tf32.json; compare with "
               "torch_peer.py --tf32)");
  CLI11_PARSE(app, argc, argv);
  try {
    return fusedvae::bench::run(options);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_train_step: %s\n", e.what());
    return 1;
  }
}
