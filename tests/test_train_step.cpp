// @brief The CPU trainer against the float64 model reference (one step tensor by tensor, a
// ten-step trajectory), its determinism and resume, NaN reporting, and the evaluation's bounds.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include <cmath>
#include <vector>

#include "host/ops/reparam_kl_cpu.h"
#include "host/train/trainer.h"
#include "kernels/recon_loss_math.cuh"
#include "kernels/rng_streams.cuh"
#include "tests/support/test_support.h"
#include "tests/support/train_step_checks.h"

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

TEST(CpuTrainStep, LayerwiseUpdateGivesTheWholeBufferBits) {
  check_layerwise_update_matches_whole_buffer(make_cpu_trainer);
}

TEST(CpuTrainStep, ResumeIsBitwiseIdentical) {
  check_resume_bitwise(make_cpu_trainer);
}

TEST(CpuTrainStep, StepBeforeStartEpochUsesEpochZero) {
  check_step_before_start_epoch_uses_epoch_zero(make_cpu_trainer);
}

TEST(CpuTrainStep, NanLossIsReported) {
  check_nan_reported(make_cpu_trainer);
}

// Without given eps the step draws them from Philox at the state's draw index, keyed by the run's
// seed: the same as giving cpu::draw_normal_eps's numbers for that draw, and a new draw each step.
TEST(CpuTrainStep, PhiloxEpsAreTheDocumentedDraws) {
  const TrainConfig config = small_run_config();
  const int rows = config.batch_size, d = config.model.latent_dim;
  std::vector<float> x(static_cast<size_t>(rows) * config.model.input_dim);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>((i * 37) % 101) / 100.0f;
  auto drawn = make_cpu_trainer(config);
  auto given = make_cpu_trainer(config);
  std::vector<float> eps(static_cast<size_t>(rows) * d);
  for (uint64_t draw = 0; draw < 3; ++draw) {
    drawn->train_step_on(x.data(), rows, nullptr);
    cpu::draw_normal_eps(
        rows, d, {math::stream_seed(config.seed, math::RngStream::kReparam), &draw}, eps.data());
    given->train_step_on(x.data(), rows, eps.data());
    expect_bitwise_equal(drawn->params(), given->params(), "params, drawn vs given eps");
  }
  EXPECT_EQ(drawn->optimizer_state().step_state.draw_index, 3u);
  // Using draw 0 again at the fourth step must change the result (the draw index matters).
  const uint64_t stale = 0;
  cpu::draw_normal_eps(rows, d, {config.seed, &stale}, eps.data());
  drawn->train_step_on(x.data(), rows, nullptr);
  given->train_step_on(x.data(), rows, eps.data());
  EXPECT_NE(drawn->params(), given->params());
}

// The cosine schedule needs the run length, known once the training data are set: the first
// step then runs at lr, the last at about min_lr.
TEST(CpuTrainStep, CosineLearningRateSpansTheRun) {
  TrainConfig config = small_run_config();
  config.optimizer.min_lr = 1e-4f;
  auto trainer = make_cpu_trainer(config);
  trainer->set_train_data(synthetic_dataset(40, config.model.input_dim, 4));
  const int total = config.epochs * trainer->batches_per_epoch();
  std::vector<float> losses;
  run_steps(*trainer, 0, 1, &losses);
  EXPECT_FLOAT_EQ(trainer->last_losses().lr, config.optimizer.lr);
  run_steps(*trainer, 1, total, &losses);
  const double last_progress = static_cast<double>(total - 1) / total;
  const double expected = 1e-4 + (3e-3 - 1e-4) * 0.5 * (1 + std::cos(M_PI * last_progress));
  EXPECT_NEAR(trainer->last_losses().lr, expected, 1e-7);
}

TEST(CpuTrainStep, MeaninglessSettingsAreRejected) {
  // Each would otherwise divide by zero or step with a NaN (check_train_config, both trainers).
  const std::vector<std::function<void(TrainConfig&)>> breakers = {
      [](TrainConfig& c) { c.kl.free_bits = -0.5f; },
      [](TrainConfig& c) { c.batch_size = 0; },
      [](TrainConfig& c) { c.optimizer.lr = 0.0f; },
      [](TrainConfig& c) { c.optimizer.lr = NAN; },
      [](TrainConfig& c) { c.optimizer.beta2 = 1.0f; },
      [](TrainConfig& c) { c.optimizer.eps = 0.0f; },
      [](TrainConfig& c) { c.optimizer.max_grad_norm = -1.0f; },
      [](TrainConfig& c) {
        c.kl.kind = KlScheduleKind::kCyclical;
        c.kl.cycle_steps = 0;
      },
      [](TrainConfig& c) {
        c.kl.kind = KlScheduleKind::kCyclical;
        c.kl.cycle_ratio = 1.5f;
      },
  };
  for (size_t i = 0; i < breakers.size(); ++i) {
    TrainConfig config = small_run_config();
    breakers[i](config);
    EXPECT_THROW(make_cpu_trainer(config), std::invalid_argument) << "setting " << i;
  }
  EXPECT_NO_THROW(make_cpu_trainer(small_run_config()));
}

TEST(CpuTrainStep, BadInputsGiveClearErrors) {
  check_bad_inputs_rejected(make_cpu_trainer);
}

TEST(CpuEvaluate, DoesNotDependOnTheBatchSize) {
  check_evaluation_ignores_batch_size(make_cpu_trainer);
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
      EXPECT_TRUE(p > 0.01 && p < 0.99) << "decoder output " << p << ": the tolerance assumes "
                                        << "sigmoid is far from saturation";
      nll -= y * std::log(p) + (1.0 - y) * std::log1p(-p);
    }
    return nll;
  };
  const uint64_t eval_seed = math::stream_seed(seed, math::RngStream::kEvaluation);
  std::vector<double> recon_ref, kl_ref, elbo_ref, iwae_ref;
  std::vector<float> eps(d), z(static_cast<size_t>(test.rows) * d);
  for (int row = 0; row < test.rows; ++row) {
    double kl = 0.0;
    for (int j = 0; j < d; ++j) {
      const double m = mu[row * d + j], lv = logvar[row * d + j];
      kl += 0.5 * (m * m + std::exp(lv) - lv - 1.0);
    }
    recon_ref.push_back(recon_at(mu, row));
    kl_ref.push_back(kl);
    std::vector<double> log_w;
    for (int k = 0; k <= K; ++k) {
      // Sample k of a dataset row is that row of draw k, whichever chunk the row falls in.
      const uint64_t draw = k;
      cpu::draw_normal_eps(1, d, {eval_seed, &draw, static_cast<uint64_t>(row)}, eps.data());
      double log_prior_minus_q = 0.0;
      for (int j = 0; j < d; ++j) {
        const double e = eps[j], lv = logvar[row * d + j];
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
