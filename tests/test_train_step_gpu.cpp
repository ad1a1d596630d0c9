// @brief The GPU trainer against the float64 model reference (one step tensor by tensor, a ten-step
// trajectory; FP32 and TF32), its determinism and resume, NaN reporting, and its evaluation against
// the CPU trainer's (itself checked against an independent recomputation in test_train_step).
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "host/train/trainer.h"
#include "tests/support/test_support.h"
#include "tests/train_step_checks.h"

namespace fusedvae::test {
namespace {

std::unique_ptr<Trainer> make_gpu_trainer_tf32(const TrainConfig& config) {
  TrainConfig c = config;
  c.tf32 = true;
  return make_gpu_trainer(c);
}

// In FP32 the GPU runs the same float32 products and sums as the CPU trainer, in other orders; the
// bound of train_step_checks.h holds for any summation order, so the same shares apply.
TEST(GpuTrainStep, MatchesReferenceTensorByTensor) {
  FUSEDVAE_REQUIRE_GPU();
  for (const GoldenCase& c : golden_cases("train_step"))
    check_step_against_reference(make_gpu_trainer, c);
}

// TF32 rounds each product's inputs to 11 significant bits (relative 2^-11 each, 2^-10 per
// product) instead of float32's 2^-24: the per-layer error grows from K*u to about 2^-10 of the
// terms' magnitude, over at most 9 layers: 9 * 2^-10 = 8.8e-3; we take a share of 1e-2.
TEST(GpuTrainStep, Tf32MatchesReferenceWithinTf32Rounding) {
  FUSEDVAE_REQUIRE_GPU();
  for (const GoldenCase& c : golden_cases("train_step"))
    check_step_against_reference(make_gpu_trainer_tf32, c, StepTolerances{1e-2});
}

TEST(GpuTrainStep, TenStepTrajectoryMatchesReference) {
  FUSEDVAE_REQUIRE_GPU();
  for (const GoldenCase& c : golden_cases("train_trajectory"))
    check_trajectory_against_reference(make_gpu_trainer, c);
}

TEST(GpuTrainStep, SameSeedIsBitwiseIdentical) {
  FUSEDVAE_REQUIRE_GPU();
  check_same_seed_bitwise(make_gpu_trainer);
}

TEST(GpuTrainStep, ResumeIsBitwiseIdentical) {
  FUSEDVAE_REQUIRE_GPU();
  check_resume_bitwise(make_gpu_trainer);
}

TEST(GpuTrainStep, NanLossIsReported) {
  FUSEDVAE_REQUIRE_GPU();
  check_nan_reported(make_gpu_trainer);
}

TEST(GpuTrainStep, FreeBitsAreRejectedUntilImplemented) {
  FUSEDVAE_REQUIRE_GPU();
  TrainConfig config = small_run_config();
  config.kl.free_bits = 0.5f;
  EXPECT_THROW(make_gpu_trainer(config), std::invalid_argument);
}

TEST(GpuTrainStep, BadInputsGiveClearErrors) {
  FUSEDVAE_REQUIRE_GPU();
  TrainConfig config = small_run_config();
  auto trainer = make_gpu_trainer(config);
  EXPECT_NE(trainer->device_name().find("sm_"), std::string::npos) << trainer->device_name();
  EXPECT_THROW(trainer->set_params(std::vector<float>(3)), std::invalid_argument);
  EXPECT_THROW(trainer->train_step(0), std::logic_error);  // no data yet
  EXPECT_THROW(trainer->set_train_data(synthetic_dataset(40, 22, 1)), std::invalid_argument);
  EXPECT_THROW(trainer->set_train_data(synthetic_dataset(3, 23, 1)), std::invalid_argument);
  trainer->set_train_data(synthetic_dataset(40, 23, 1));
  EXPECT_EQ(trainer->batches_per_epoch(), 40 / 7);
  trainer->start_epoch(0);
  EXPECT_THROW(trainer->train_step(40 / 7), std::out_of_range);
}

// Without a device the factory must fail with one clear line, never crash. (On a machine with a
// GPU there is nothing to check here.)
TEST(GpuTrainStep, NoDeviceGivesClearError) {
  std::string reason;
  if (cuda_device_present(&reason)) GTEST_SKIP() << "a CUDA device is present";
  EXPECT_FALSE(reason.empty());
  try {
    make_gpu_trainer(small_run_config());
    ADD_FAILURE() << "make_gpu_trainer succeeded without a device";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("no usable CUDA device"), std::string::npos) << e.what();
  }
}

// The production path (device shuffle, gather with dynamic binarisation, Philox eps) against the
// CPU trainer on the same data: same permutation, same binarised pixels and same eps (bitwise
// twins), so the first step differs only by float32 rounding order: the reference share of
// train_step_checks.h on its losses. The evaluation, before any step (same parameters): both are
// float32 forwards within 2e-5 of the exact values, and IWAE's log-mean-exp of K such log weights
// adds at most their error again; the CPU evaluation test's 1e-4 relative covers it with room.
TEST(GpuTrainStep, ProductionPathAndEvaluationMatchCpuTrainer) {
  FUSEDVAE_REQUIRE_GPU();
  const TrainConfig config = small_run_config();
  const Dataset train = synthetic_dataset(40, config.model.input_dim, 7);
  const Dataset test = synthetic_dataset(11, config.model.input_dim, 8);  // chunks of 7 and 4
  auto gpu = make_gpu_trainer(config);
  auto cpu = make_cpu_trainer(config);
  expect_bitwise_equal(gpu->params(), cpu->params(), "initial parameters");

  const int K = 6;
  const uint64_t seed = 31;
  const EvalResult g = gpu->evaluate(test, K, seed), c = cpu->evaluate(test, K, seed);
  const Tolerance eval_tol{1e-5, 1e-4};
  for (const auto& [name, gv, cv] :
       {std::tuple{"recon", &g.recon, &c.recon}, std::tuple{"kl", &g.kl, &c.kl},
        std::tuple{"elbo", &g.elbo, &c.elbo}, std::tuple{"iwae", &g.iwae, &c.iwae}}) {
    ASSERT_EQ(gv->size(), 11u) << name;
    expect_close(std::string("eval.") + name, *gv, std::vector<double>(cv->begin(), cv->end()),
                 nullptr, eval_tol);
  }
  expect_bitwise_equal(gpu->evaluate(test, K, seed).iwae, g.iwae, "gpu iwae, same seed");

  gpu->set_train_data(train);
  cpu->set_train_data(train);
  std::vector<float> gpu_losses, cpu_losses;
  run_steps(*gpu, 0, 1, &gpu_losses);
  run_steps(*cpu, 0, 1, &cpu_losses);
  const StepLosses gl = gpu->last_losses(), cl = cpu->last_losses();
  const Tolerance scalar_tol{1e-6, StepTolerances{}.tensor_share};
  expect_close("loss", {gl.loss}, {cl.loss}, nullptr, scalar_tol);
  expect_close("recon", {gl.recon}, {cl.recon}, nullptr, scalar_tol);
  expect_close("kl", {gl.kl}, {cl.kl}, nullptr, scalar_tol);
  expect_close("grad_norm", {gl.grad_norm}, {cl.grad_norm}, nullptr, scalar_tol);
  EXPECT_EQ(gl.step, cl.step);
  EXPECT_EQ(gl.kl_weight, cl.kl_weight);
  EXPECT_EQ(gl.lr, cl.lr);
  // Each backend is within the reference share of the exact gradients, so of each other within
  // twice that.
  const std::vector<float> cpu_grads = cpu->gradients();
  const std::vector<double> grads_ref(cpu_grads.begin(), cpu_grads.end());
  expect_close("gradients", gpu->gradients(), grads_ref, nullptr,
               tensor_tolerance(grads_ref, 2.0 * StepTolerances{}.tensor_share));
}

}  // namespace
}  // namespace fusedvae::test
