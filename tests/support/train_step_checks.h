// @brief Checks of a Trainer backend against the float64 model reference and for determinism,
// written once for any factory: tests/test_train_step.cpp runs them on make_cpu_trainer, and the
// GPU trainer's test runs the same code on make_gpu_trainer.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "host/train/trainer.h"
#include "kernels/recon_loss_math.cuh"
#include "kernels/step_state_math.cuh"
#include "tests/support/test_support.h"

namespace fusedvae::test {

using TrainerFactory = std::unique_ptr<Trainer> (*)(const TrainConfig&);

// How far a backend may be from the float64 reference, as a share of each tensor's largest value.
//
// Forward and backward are chains of float32 matrix products and sums (inner sizes <= 37 in the
// cases, at most 9 products deep from the input to the first layer's weight gradient). A float32
// dot product of length K is within K*u*sum|terms| of its exact value (u = 6e-8); the terms of any
// element are bounded by the tensor's scale, and errors pass from layer to layer with the gain of
// the weights (|W| <= 1/sqrt(in) per element, so about 1 per layer). Elements that are sums of
// cancelling terms carry an error relative to that scale, not to themselves: hence an absolute
// part proportional to max|tensor|. 9 layers * 37 * 6e-8 = 2e-5 is the worst-case bound; typical
// errors sit at sqrt(K)*u, far below.
struct StepTolerances {
  double tensor_share = 2e-5;  // abs = tensor_share * max|reference|, rel = tensor_share
};

inline double max_abs(const std::vector<double>& v) {
  double m = 0.0;
  for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}

inline Tolerance tensor_tolerance(const std::vector<double>& reference, double share) {
  return {share * std::max(max_abs(reference), 1e-30), share};
}

inline TrainConfig config_from_manifest(const nlohmann::json& c) {
  TrainConfig t;
  t.model.input_dim = c.at("input_dim");
  t.model.hidden = c.at("hidden").get<std::vector<int>>();
  t.model.latent_dim = c.at("latent_dim");
  EXPECT_TRUE(parse_activation(c.at("activation").get<std::string>(), &t.model.activation));
  EXPECT_TRUE(parse_recon_loss_kind(c.at("recon").get<std::string>().c_str(), &t.model.recon.kind));
  t.model.recon.gaussian_sigma = c.at("gaussian_sigma");
  t.model.clamp.min = c.at("clamp_min");
  t.model.clamp.max = c.at("clamp_max");
  t.reduction = c.at("reduction") == "sum" ? BatchReduction::kSum : BatchReduction::kMean;
  const auto& kl = c.at("kl");
  t.kl.kind = kl.at("kind") == "linear" ? KlScheduleKind::kLinear : KlScheduleKind::kConstant;
  t.kl.weight = kl.at("weight");
  t.kl.x0 = kl.at("x0");
  t.kl.free_bits = kl.value("free_bits", 0.0f);
  const auto& o = c.at("optimizer");
  t.optimizer.lr = o.at("lr");
  t.optimizer.beta1 = o.at("beta1");
  t.optimizer.beta2 = o.at("beta2");
  t.optimizer.eps = o.at("eps");
  t.optimizer.weight_decay = o.at("weight_decay");
  t.optimizer.max_grad_norm = o.at("max_grad_norm");
  t.batch_size = c.at("batch");
  return t;
}

inline void expect_scalar_close(const std::string& name, float actual, double reference,
                                Tolerance tol) {
  expect_close(name, {actual}, {reference}, nullptr, tol);
}

// One step from a state part-way through a run, tensor by tensor.
inline void check_step_against_reference(TrainerFactory make, const GoldenCase& c,
                                         StepTolerances tolerances = {}) {
  SCOPED_TRACE(c.name);
  const TrainConfig config = config_from_manifest(c.manifest.at("config"));
  const int batch = config.batch_size;
  const double share = tolerances.tensor_share;
  auto trainer = make(config);
  trainer->set_params(c.f32("params0"));
  OptimizerState state{c.f32("m0"), c.f32("v0"), {}};
  state.step_state.step = c.manifest.at("step0");
  state.step_state.draw_index = 0;
  state.step_state.kl_weight = math::kl_weight_at(config.kl, state.step_state.step);
  state.step_state.lr = config.optimizer.lr;
  trainer->set_optimizer_state(state);
  const std::vector<float> x = c.f32("x");
  const std::vector<float> eps = c.f32("eps");

  // The forward through the public inference entry points, with the parameters before the step.
  const size_t latent = static_cast<size_t>(batch) * config.model.latent_dim;
  std::vector<float> mu = poisoned(latent), logvar = poisoned(latent);
  trainer->encode(x.data(), batch, mu.data(), logvar.data());
  const auto mu_ref = c.f64("mu"), logvar_ref = c.f64("logvar");
  expect_close(c.name + ".mu", mu, mu_ref, nullptr, tensor_tolerance(mu_ref, share));
  expect_close(c.name + ".logvar", logvar, logvar_ref, nullptr,
               tensor_tolerance(logvar_ref, share));
  const std::vector<float> z_ref = c.f32("z");  // rounding z to float32 perturbs it by u
  std::vector<float> x_mean = poisoned(x.size());
  trainer->decode(z_ref.data(), batch, x_mean.data());
  std::vector<double> x_mean_ref = c.f64("out");
  if (config.model.recon.kind == ReconLossKind::kBernoulliLogits)
    for (double& v : x_mean_ref) v = math::sigmoid(v);
  expect_close(c.name + ".decode", x_mean, x_mean_ref, nullptr,
               tensor_tolerance(x_mean_ref, share));

  trainer->train_step_on(x.data(), batch, eps.data());
  const StepLosses losses = trainer->last_losses();
  const auto& e = c.manifest.at("expected");
  const std::vector<double> grads_ref = c.f64("grads");
  const Tolerance grad_tol = tensor_tolerance(grads_ref, share);
  expect_close(c.name + ".grads", trainer->gradients(), grads_ref, nullptr, grad_tol);
  // Scalars: sums of at most D * batch terms, each within the forward's relative error.
  const Tolerance scalar_tol{1e-6, share};
  expect_scalar_close(c.name + ".loss", losses.loss, e.at("loss"), scalar_tol);
  expect_scalar_close(c.name + ".recon", losses.recon, e.at("recon"), scalar_tol);
  expect_scalar_close(c.name + ".kl", losses.kl, e.at("kl"), scalar_tol);
  expect_scalar_close(c.name + ".grad_norm", losses.grad_norm, e.at("grad_norm"), scalar_tol);
  EXPECT_EQ(losses.step, state.step_state.step + 1);
  EXPECT_FLOAT_EQ(losses.kl_weight, static_cast<float>(e.at("kl_weight").get<double>()));

  // AdamW propagates the gradient error: m moves by (1 - beta1) * g, v by (1 - beta2) * g^2, so
  // their errors are those fractions of the gradient's (v's doubled by the square), plus float
  // rounding of the stored value (rel 1e-6 = 16 u). The parameter moves by lr * m_hat /
  // (sqrt(v_hat)
  // + eps); with v_hat >= (1 - beta2) g^2 / (1 - beta2^t) the ratio's sensitivity to g is at most
  // about (1 - beta1) / ((1 - beta1^t) sqrt(1 - beta2) / sqrt(1 - beta2^t)) / |g| ~ 3 / |g|, so the
  // update is within lr * 3 * (grad error / |g|): bounded by lr * 3 * share * max|g| / |g| for the
  // gradients that matter; we take lr * 1e-3 (the worst |g| the cases see is far above 3 * share *
  // max|g| / 1e-3).
  const double grad_abs = grad_tol.abs;
  const double max_grad = max_abs(grads_ref);
  const OptimizerState after = trainer->optimizer_state();
  expect_close(c.name + ".m", after.m, c.f64("m1"), nullptr,
               {(1.0 - config.optimizer.beta1) * grad_abs, 1e-6});
  expect_close(c.name + ".v", after.v, c.f64("v1"), nullptr,
               {(1.0 - config.optimizer.beta2) * 2.0 * max_grad * grad_abs, 1e-6});
  expect_close(c.name + ".params", trainer->params(), c.f64("params1"), nullptr,
               {config.optimizer.lr * 1e-3, 1e-6});
  EXPECT_EQ(after.step_state.step, state.step_state.step + 1);
  EXPECT_EQ(after.step_state.draw_index, 1u);
}

// Ten steps from a fresh optimizer with given batches and eps: the losses of every step and the
// final state. Errors compound from step to step (each AdamW update moves a parameter by up to lr,
// in a direction set by a gradient that carries the previous steps' errors); the budget is ten
// times the one-step budget.
inline void check_trajectory_against_reference(TrainerFactory make, const GoldenCase& c,
                                               StepTolerances tolerances = {}) {
  SCOPED_TRACE(c.name);
  const TrainConfig config = config_from_manifest(c.manifest.at("config"));
  const int steps = c.manifest.at("steps");
  const int batch = config.batch_size;
  const double share = 10.0 * tolerances.tensor_share;
  auto trainer = make(config);
  trainer->set_params(c.f32("params0"));
  const std::vector<float> batches = c.f32("batches");
  const std::vector<float> eps = c.f32("eps");
  const size_t batch_values = static_cast<size_t>(batch) * config.model.input_dim;
  const size_t eps_values = static_cast<size_t>(batch) * config.model.latent_dim;
  std::vector<float> loss, recon, kl, grad_norm;
  for (int s = 0; s < steps; ++s) {
    trainer->train_step_on(batches.data() + s * batch_values, batch, eps.data() + s * eps_values);
    const StepLosses l = trainer->last_losses();
    loss.push_back(l.loss);
    recon.push_back(l.recon);
    kl.push_back(l.kl);
    grad_norm.push_back(l.grad_norm);
  }
  const std::vector<double> ref = c.f64("losses");  // [steps, 4]
  auto column = [&](int k) {
    std::vector<double> out;
    for (int s = 0; s < steps; ++s) out.push_back(ref[s * 4 + k]);
    return out;
  };
  const Tolerance scalar_tol{1e-6, share};
  expect_close(c.name + ".loss", loss, column(0), nullptr, scalar_tol);
  expect_close(c.name + ".recon", recon, column(1), nullptr, scalar_tol);
  expect_close(c.name + ".kl", kl, column(2), nullptr, scalar_tol);
  expect_close(c.name + ".grad_norm", grad_norm, column(3), nullptr, scalar_tol);
  expect_close(c.name + ".params", trainer->params(), c.f64("params_final"), nullptr,
               {steps * config.optimizer.lr * 1e-3, 1e-5});
  const OptimizerState state = trainer->optimizer_state();
  EXPECT_EQ(state.step_state.step, static_cast<uint64_t>(steps));
  const auto m_ref = c.f64("m_final"), v_ref = c.f64("v_final");
  expect_close(c.name + ".m", state.m, m_ref, nullptr, tensor_tolerance(m_ref, share));
  expect_close(c.name + ".v", state.v, v_ref, nullptr, tensor_tolerance(v_ref, share));
}

// A small synthetic data set: smooth random rows in [0, 1] (uint8, as images are stored).
inline Dataset synthetic_dataset(int rows, int dim, uint32_t seed) {
  Dataset d;
  d.source = "synthetic";
  d.rows = rows;
  d.dim = dim;
  d.u8.resize(static_cast<size_t>(rows) * dim);
  uint32_t s = seed * 2654435761u + 1u;
  for (auto& v : d.u8) {
    s = s * 1664525u + 1013904223u;
    v = static_cast<uint8_t>(s >> 24);
  }
  d.scale = 1.0f / 255.0f;
  d.offset = 0.0f;
  return d;
}

inline TrainConfig small_run_config() {
  TrainConfig t;
  t.model.input_dim = 23;
  t.model.hidden = {17, 9};
  t.model.latent_dim = 5;
  t.batch_size = 7;
  t.epochs = 3;
  t.seed = 1234;
  t.binarize = true;
  t.optimizer.lr = 3e-3f;
  t.optimizer.max_grad_norm = 5.0f;
  t.optimizer.schedule = LrSchedule::kCosine;
  t.kl.kind = KlScheduleKind::kLinear;
  t.kl.x0 = 6.0f;
  return t;
}

// Runs steps [first, last) of a run through the production path (shuffle, gather with dynamic
// binarisation, Philox eps), collecting the losses.
inline void run_steps(Trainer& trainer, int first, int last, std::vector<float>* losses) {
  const int per_epoch = trainer.batches_per_epoch();
  for (int s = first; s < last; ++s) {
    if (s == first || s % per_epoch == 0) trainer.start_epoch(s / per_epoch);
    trainer.train_step(s % per_epoch);
    losses->push_back(trainer.last_losses().loss);
  }
}

// Same seed -> bitwise the same parameters and losses; another seed -> different ones.
inline void check_same_seed_bitwise(TrainerFactory make) {
  const TrainConfig config = small_run_config();
  const Dataset data = synthetic_dataset(40, config.model.input_dim, 5);
  std::vector<std::vector<float>> params, losses(3);
  for (int run = 0; run < 3; ++run) {
    TrainConfig c = config;
    if (run == 2) c.seed += 1;
    auto trainer = make(c);
    trainer->set_train_data(data);
    run_steps(*trainer, 0, 12, &losses[run]);
    params.push_back(trainer->params());
    expect_all_finite(params.back(), "params");
  }
  expect_bitwise_equal(params[0], params[1], "params, same seed");
  expect_bitwise_equal(losses[0], losses[1], "losses, same seed");
  EXPECT_NE(params[0], params[2]) << "another seed gave the same parameters";
}

// Without clipping the CPU trainer updates each layer right after its backward; with clipping, the
// whole buffer after the global norm. A clipping bound no gradient reaches must give the same bits
// as no clipping: parameters, Adam moments, losses and reported gradient norms after a dozen steps.
// (The GPU updates the whole buffer both ways, so the check is the CPU's.)
inline void check_layerwise_update_matches_whole_buffer(TrainerFactory make) {
  const Dataset data = synthetic_dataset(40, small_run_config().model.input_dim, 7);
  std::vector<std::vector<float>> losses(2), grad_norms(2);
  std::vector<OptimizerState> states;
  std::vector<std::vector<float>> params;
  for (const float max_grad_norm : {0.0f, std::numeric_limits<float>::max()}) {
    TrainConfig c = small_run_config();
    c.optimizer.max_grad_norm = max_grad_norm;
    auto trainer = make(c);
    trainer->set_train_data(data);
    const int per_epoch = trainer->batches_per_epoch();
    for (int s = 0; s < 12; ++s) {
      if (s % per_epoch == 0) trainer->start_epoch(s / per_epoch);
      trainer->train_step(s % per_epoch);
      const StepLosses l = trainer->last_losses();
      losses[params.size()].push_back(l.loss);
      grad_norms[params.size()].push_back(l.grad_norm);
    }
    params.push_back(trainer->params());
    states.push_back(trainer->optimizer_state());
  }
  expect_all_finite(params[0], "params");
  expect_bitwise_equal(params[0], params[1], "params, layer by layer vs whole buffer");
  expect_bitwise_equal(states[0].m, states[1].m, "m, layer by layer vs whole buffer");
  expect_bitwise_equal(states[0].v, states[1].v, "v, layer by layer vs whole buffer");
  expect_bitwise_equal(losses[0], losses[1], "losses, layer by layer vs whole buffer");
  // The norm is then taken when last_losses() asks for it, from the same gradients.
  expect_bitwise_equal(grad_norms[0], grad_norms[1], "grad norms, layer by layer vs whole buffer");
}

// Parameters + optimizer state restored into a new trainer -> the next steps are bitwise those
// of the uninterrupted run (step counter, draw index and schedules included).
inline void check_resume_bitwise(TrainerFactory make) {
  const TrainConfig config = small_run_config();
  const Dataset data = synthetic_dataset(40, config.model.input_dim, 6);
  const int total = 13, cut = 8;  // the cut is inside the second epoch (5 batches per epoch)
  std::vector<float> straight_losses;
  auto straight = make(config);
  straight->set_train_data(data);
  run_steps(*straight, 0, total, &straight_losses);

  std::vector<float> resumed_losses;
  auto first = make(config);
  first->set_train_data(data);
  run_steps(*first, 0, cut, &resumed_losses);
  const std::vector<float> saved_params = first->params();
  const OptimizerState saved_state = first->optimizer_state();
  first.reset();
  auto second = make(config);
  second->set_train_data(data);
  second->set_params(saved_params);
  second->set_optimizer_state(saved_state);
  run_steps(*second, cut, total, &resumed_losses);

  expect_bitwise_equal(straight->params(), second->params(), "params after resume");
  expect_bitwise_equal(straight_losses, resumed_losses, "losses across the resume");
  const OptimizerState a = straight->optimizer_state(), b = second->optimizer_state();
  expect_bitwise_equal(a.m, b.m, "m after resume");
  expect_bitwise_equal(a.v, b.v, "v after resume");
  EXPECT_EQ(a.step_state.step, b.step_state.step);
  EXPECT_EQ(a.step_state.draw_index, b.step_state.draw_index);
}

// set_train_data leaves epoch 0's order in place: a step before any start_epoch is the step after
// start_epoch(0), not one on an unshuffled or unwritten permutation.
inline void check_step_before_start_epoch_uses_epoch_zero(TrainerFactory make) {
  const TrainConfig config = small_run_config();
  const Dataset data = synthetic_dataset(40, config.model.input_dim, 7);
  auto implicit = make(config);
  implicit->set_train_data(data);
  implicit->train_step(0);
  auto explicit_epoch = make(config);
  explicit_epoch->set_train_data(data);
  explicit_epoch->start_epoch(0);
  explicit_epoch->train_step(0);
  expect_bitwise_equal(implicit->params(), explicit_epoch->params(), "params");
}

// Wrong sizes, a step before any data, a batch index past the epoch: clear exceptions.
inline void check_bad_inputs_rejected(TrainerFactory make) {
  TrainConfig config = small_run_config();
  auto trainer = make(config);
  EXPECT_THROW(trainer->set_params(std::vector<float>(3)), std::invalid_argument);
  EXPECT_THROW(trainer->train_step(0), std::logic_error);  // no data yet
  EXPECT_THROW(trainer->set_train_data(synthetic_dataset(40, 22, 1)), std::invalid_argument);
  EXPECT_THROW(trainer->set_train_data(synthetic_dataset(3, 23, 1)), std::invalid_argument);
  trainer->set_train_data(synthetic_dataset(40, 23, 1));
  EXPECT_EQ(trainer->batches_per_epoch(), 40 / 7);
  trainer->start_epoch(0);
  EXPECT_THROW(trainer->train_step(40 / 7), std::out_of_range);
}

// A NaN in the data is not caught inside the step (the GPU could not report it without a
// synchronisation): it shows as a non-finite loss in last_losses(), which the caller checks.
inline void check_nan_reported(TrainerFactory make) {
  TrainConfig config = small_run_config();
  auto trainer = make(config);
  std::vector<float> x(static_cast<size_t>(config.batch_size) * config.model.input_dim, 0.5f);
  trainer->train_step_on(x.data(), config.batch_size, nullptr);
  EXPECT_TRUE(std::isfinite(trainer->last_losses().loss));
  x[3] = std::nanf("");
  trainer->train_step_on(x.data(), config.batch_size, nullptr);
  EXPECT_FALSE(std::isfinite(trainer->last_losses().loss));
}

// evaluate() keys sample k of dataset row r to row r of draw k (trainer.h), so the chunk size (the
// batch size) changes no draw: per-row results agree across batch sizes, odd and partial chunks
// included. Only the arithmetic may differ: GEMMs of another row count may pick other kernels and
// sum in another order, a few float32 roundings of the ~20 nat sums (1e-5 relative covers 80 ulps).
inline void check_evaluation_ignores_batch_size(TrainerFactory make) {
  TrainConfig config = small_run_config();  // binarize on: binarisation is keyed by row as well
  const Dataset train = synthetic_dataset(40, config.model.input_dim, 8);
  const Dataset test = synthetic_dataset(23, config.model.input_dim, 9);
  auto trained = make(config);
  trained->set_train_data(train);
  std::vector<float> losses;
  run_steps(*trained, 0, 6, &losses);
  const int K = 4;
  const uint64_t seed = 17;
  const EvalResult base = trained->evaluate(test, K, seed);
  const auto as_double = [](const std::vector<float>& v) {
    return std::vector<double>(v.begin(), v.end());
  };
  const Tolerance tol{1e-5, 1e-5};
  for (int batch : {1, 4, 16, 64}) {
    TrainConfig other = config;
    other.batch_size = batch;
    auto trainer = make(other);
    trainer->set_params(trained->params());
    const EvalResult r = trainer->evaluate(test, K, seed);
    const std::string tag = "batch " + std::to_string(batch) + ": ";
    expect_close(tag + "recon", r.recon, as_double(base.recon), nullptr, tol);
    expect_close(tag + "kl", r.kl, as_double(base.kl), nullptr, tol);
    expect_close(tag + "elbo", r.elbo, as_double(base.elbo), nullptr, tol);
    expect_close(tag + "iwae", r.iwae, as_double(base.iwae), nullptr, tol);
  }
  // The draws do change with the seed.
  EXPECT_NE(trained->evaluate(test, K, seed + 1).elbo, base.elbo);
}

}  // namespace fusedvae::test
