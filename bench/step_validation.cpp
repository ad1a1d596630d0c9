// @brief The training-step benchmark's gate (step_validation.h).
#include "bench/step_validation.h"

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <stdexcept>
#include <vector>

#include "host/io/npy.h"

namespace fusedvae::bench {
namespace {

namespace fs = std::filesystem;

// Odd, and smaller than any vector width a GEMM might block by.
constexpr int kValidationRows = 5;

// model_ref's cfg for the benchmark's objective (Bernoulli logits, KL weight 1, no clipping).
nlohmann::json reference_config(const TrainConfig& config) {
  const ModelConfig& m = config.model;
  // The trainer reports per-sample means (StepLosses), the reference's loss terms under the mean
  // reduction are the same; the benchmark never times anything else.
  if (m.recon.kind != ReconLossKind::kBernoulliLogits || m.activation != Activation::kRelu ||
      config.kl.kind != KlScheduleKind::kConstant || config.kl.free_bits != 0.0f ||
      config.reduction != BatchReduction::kMean)
    throw std::invalid_argument(
        "step validation: only the benchmark's model (Bernoulli, ReLU, constant KL weight, mean "
        "reduction)");
  return {{"input_dim", m.input_dim},
          {"hidden", m.hidden},
          {"latent_dim", m.latent_dim},
          {"activation", "relu"},
          {"recon", "bernoulli"},
          {"reduction", "mean"},
          {"clamp_min", m.clamp.min},
          {"clamp_max", m.clamp.max},
          {"kl", {{"kind", "constant"}, {"weight", config.kl.weight}}},
          {"optimizer",
           {{"lr", config.optimizer.lr},
            {"beta1", config.optimizer.beta1},
            {"beta2", config.optimizer.beta2},
            {"eps", config.optimizer.eps},
            {"weight_decay", config.optimizer.weight_decay},
            {"max_grad_norm", config.optimizer.max_grad_norm}}}};
}

// How far a float32 step may be from the float64 one, as a share of each tensor's largest value:
// a chain of 2 * layers + 1 dot products (forward and backward) of length at most the widest
// layer, each within K * u of its terms' scale (the worst case; typical errors are sqrt(K) * u).
// TF32 products (the GPU trainer's, when asked for) round their inputs to 10 mantissa bits: the
// tests' TF32 budget, 1e-2.
double tolerance_share(const TrainConfig& config, bool tf32_products) {
  if (tf32_products) return 1e-2;
  int widest = std::max(config.model.input_dim, config.model.latent_dim);
  for (int h : config.model.hidden) widest = std::max(widest, h);
  const int depth = 2 * (static_cast<int>(config.model.hidden.size()) * 2 + 2) + 1;
  return depth * widest * kUnitRoundoff;
}

std::vector<double> tensor_tolerance(const std::vector<double>& reference, double share) {
  double scale = 0.0;
  for (double v : reference) scale = std::max(scale, std::fabs(v));
  std::vector<double> tolerance(reference.size());
  for (size_t i = 0; i < reference.size(); ++i)
    tolerance[i] = share * scale + share * std::fabs(reference[i]);
  return tolerance;
}

}  // namespace

Validation validate_step_against_reference(TrainerFactory make, const TrainConfig& timed,
                                           bool gpu) {
  TrainConfig config = timed;
  config.batch_size = kValidationRows;
  const int rows = kValidationRows, dim = config.model.input_dim, d = config.model.latent_dim;
  std::vector<float> x(static_cast<size_t>(rows) * dim), eps(static_cast<size_t>(rows) * d);
  std::mt19937 rng(20261127);
  std::uniform_int_distribution<int> pixel(0, 255);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (float& v : x) v = static_cast<float>(pixel(rng)) / 255.0f;
  for (float& v : eps) v = normal(rng);

  auto trainer = make(config);
  const std::vector<float> params = trainer->params();
  trainer->train_step_on(x.data(), rows, eps.data());
  const std::vector<float> grads = trainer->gradients();
  const StepLosses losses = trainer->last_losses();

  Validation validation;
  char dir_template[] = "/tmp/fusedvae_step_validation_XXXXXX";
  const char* dir = mkdtemp(dir_template);
  if (!dir) {
    validation.add({"reference step (no temporary folder)", false});
    return validation;
  }
  const fs::path folder(dir);
  std::ofstream(folder / "config.json") << reference_config(config).dump();
  io::write_npy((folder / "params.npy").string(), params.data(), {params.size()});
  io::write_npy((folder / "x.npy").string(), x.data(), {size_t(rows), size_t(dim)});
  io::write_npy((folder / "eps.npy").string(), eps.data(), {size_t(rows), size_t(d)});
  const std::string command = shell_quote(python_interpreter()) + " " +
                              shell_quote(source_file("python_ref/model_ref.py")) + " --step " +
                              shell_quote(folder.string());
  if (std::system(command.c_str()) != 0) {
    fs::remove_all(folder);
    validation.add({"reference step (" + command + " failed)", false});
    return validation;
  }
  try {
    const std::vector<double> grads_ref =
        io::read_npy((folder / "grads.npy").string()).to_float64();
    nlohmann::json expected;
    std::ifstream(folder / "expected.json") >> expected;
    const double share = tolerance_share(config, gpu && config.tf32);
    validation.add(check_close("grads", grads, grads_ref, tensor_tolerance(grads_ref, share)));
    for (const auto& [name, value] : {std::pair<const char*, float>{"loss", losses.loss},
                                      {"recon", losses.recon},
                                      {"kl", losses.kl},
                                      {"grad_norm", losses.grad_norm}}) {
      const double want = expected.at(name).get<double>();
      validation.add(check_close(name, {value}, {want}, {1e-6 + share * std::fabs(want)}));
    }
  } catch (const std::exception& e) {
    validation.add({std::string("reference step output (") + e.what() + ")", false});
  }
  fs::remove_all(folder);
  return validation;
}

}  // namespace fusedvae::bench
