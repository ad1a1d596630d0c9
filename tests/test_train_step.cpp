// @brief The CPU trainer against the float64 model reference (one step tensor by tensor, a
// ten-step trajectory), its determinism and resume, NaN reporting, and the evaluation's bounds.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "host/ops/reparam_kl_cpu.h"
#include "host/train/trainer.h"
#include "kernels/step_math.cuh"
#include "tests/support/test_support.h"
#include "tests/train_step_checks.h"

namespace fusedvae::test {
namespace {

TEST(CpuTrainStep, MatchesReferenceTensorByTensor) {
  for (const GoldenCase& c : golden_cases("train_step"))
    check_step_against_reference(make_cpu_trainer, c);
}

TEST(CpuTrainStep, TenStepTrajectoryMatchesReference) {
  for (const GoldenCase& c : golden_cases("train_trajectory"))
    check_trajectory_against_reference(make_cpu_trainer, c);
}

TEST(CpuTrainStep, SameSeedIsBitwiseIdentical) {
  check_same_seed_bitwise(make_cpu_trainer);
}

TEST(CpuTrainStep, ResumeIsBitwiseIdentical) {
  check_resume_bitwise(make_cpu_trainer);
}

TEST(CpuTrainStep, NanLossIsReported) {
  check_nan_reported(make_cpu_trainer);
}

TEST(CpuTrainStep, FreeBitsAreRejectedUntilImplemented) {
  TrainConfig config = small_run_config();
  config.kl.free_bits = 0.5f;
  EXPECT_THROW(make_cpu_trainer(config), std::invalid_argument);
}

TEST(CpuTrainStep, BadInputsGiveClearErrors) {
  TrainConfig config = small_run_config();
  auto trainer = make_cpu_trainer(config);
  EXPECT_THROW(trainer->set_params(std::vector<float>(3)), std::invalid_argument);
  EXPECT_THROW(trainer->train_step(0), std::logic_error);  // no data yet
  EXPECT_THROW(trainer->set_train_data(synthetic_dataset(40, 22, 1)), std::invalid_argument);
  EXPECT_THROW(trainer->set_train_data(synthetic_dataset(3, 23, 1)), std::invalid_argument);
  trainer->set_train_data(synthetic_dataset(40, 23, 1));
  EXPECT_EQ(trainer->batches_per_epoch(), 40 / 7);
  trainer->start_epoch(0);
  EXPECT_THROW(trainer->train_step(40 / 7), std::out_of_range);
}

// The evaluation's numbers recomputed independently in double from encode/decode and the Philox
// eps of its documented draws: recon at z = mu, analytic KL, the one-sample ELBO and IWAE.
TEST(CpuEvaluate, MatchesIndependentRecomputation) {
  TrainConfig config = small_run_config();
  config.binarize = false;
  auto trainer = make_cpu_trainer(config);
  const Dataset train = synthetic_dataset(40, config.model.input_dim, 2);
  trainer->set_train_data(train);
  std::vector<float> losses;
  run_steps(*trainer, 0, 10, &losses);

  const Dataset test = synthetic_dataset(11, config.model.input_dim, 3);  // 2 chunks of 7, odd
  const int K = 6;
  const uint64_t seed = 99;
  const EvalResult r = trainer->evaluate(test, K, seed);
  ASSERT_EQ(r.iwae.size(), 11u);

  const int D = config.model.input_dim, d = config.model.latent_dim;
  std::vector<float> x(static_cast<size_t>(test.rows) * D);
  for (int i = 0; i < test.rows; ++i)
    for (int j = 0; j < D; ++j) x[static_cast<size_t>(i) * D + j] = test.normalised(i, j);
  std::vector<float> mu(static_cast<size_t>(test.rows) * d), logvar(mu.size());
  trainer->encode(x.data(), test.rows, mu.data(), logvar.data());

  // -log p(x | z) for Bernoulli logits, from decode's sigmoid (a loss of precision near 0 and 1
  // that the tolerance below covers: the outputs of this small model stay inside (0.01, 0.99)).
  auto recon_at = [&](const std::vector<float>& z, int row) {
    std::vector<float> mean(D);
    trainer->decode(z.data() + static_cast<size_t>(row) * d, 1, mean.data());
    double nll = 0.0;
    for (int j = 0; j < D; ++j) {
      const double p = mean[j], y = x[static_cast<size_t>(row) * D + j];
      nll -= y * std::log(p) + (1.0 - y) * std::log1p(-p);
    }
    return nll;
  };
  const uint64_t eval_seed = math::stream_seed(seed, math::RngStream::kEvaluation);
  std::vector<double> recon_ref, kl_ref, elbo_ref, iwae_ref;
  std::vector<float> eps(static_cast<size_t>(7) * d), z(static_cast<size_t>(test.rows) * d);
  for (int row = 0; row < test.rows; ++row) {
    const int chunk = row / 7, in_chunk = row % 7;
    double kl = 0.0;
    for (int j = 0; j < d; ++j) {
      const double m = mu[row * d + j], lv = logvar[row * d + j];
      kl += 0.5 * (m * m + std::exp(lv) - lv - 1.0);
    }
    recon_ref.push_back(recon_at(mu, row));
    kl_ref.push_back(kl);
    std::vector<double> log_w;
    for (int k = 0; k <= K; ++k) {
      const uint64_t draw = chunk * static_cast<uint64_t>(K + 1) + k;
      cpu::draw_normal_eps(7, d, {eval_seed, &draw}, eps.data());
      double log_prior_minus_q = 0.0;
      for (int j = 0; j < d; ++j) {
        const double e = eps[in_chunk * d + j], lv = logvar[row * d + j];
        const double zz = mu[row * d + j] + std::exp(0.5 * lv) * e;
        z[row * d + j] = static_cast<float>(zz);
        log_prior_minus_q += -0.5 * zz * zz + 0.5 * e * e + 0.5 * lv;
      }
      const double recon_z = recon_at(z, row);
      if (k == 0)
        elbo_ref.push_back(-(recon_z + kl));
      else
        log_w.push_back(-recon_z + log_prior_minus_q);
    }
    double top = log_w[0];
    for (double v : log_w) top = std::max(top, v);
    double sum = 0.0;
    for (double v : log_w) sum += std::exp(v - top);
    iwae_ref.push_back(top + std::log(sum / K));
  }
  // Values of about 16 nats summed over 23 features; float32 forward plus the sigmoid round trip
  // of the recomputation: 1e-4 relative.
  const Tolerance tol{1e-5, 1e-4};
  expect_close("eval.recon", r.recon, recon_ref, nullptr, tol);
  expect_close("eval.kl", r.kl, kl_ref, nullptr, tol);
  expect_close("eval.elbo", r.elbo, elbo_ref, nullptr, tol);
  expect_close("eval.iwae", r.iwae, iwae_ref, nullptr, tol);
  // IWAE_K is a tighter bound than the ELBO on average (Burda et al.); with K = 6 the gap is clear.
  EXPECT_GT(r.mean_iwae, r.mean_elbo);
  // Deterministic for a seed, different for another.
  const EvalResult again = trainer->evaluate(test, K, seed);
  expect_bitwise_equal(r.iwae, again.iwae, "iwae, same seed");
  EXPECT_NE(trainer->evaluate(test, K, seed + 1).iwae, r.iwae);
}

}  // namespace
}  // namespace fusedvae::test
