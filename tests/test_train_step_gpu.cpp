// @brief The GPU trainer checked by the very code that checks the CPU trainer
// (tests/train_step_checks.h): the float64 model reference step by step and over ten steps,
// bitwise determinism and resume, NaN reporting. Skipped, with the reason, without a GPU.
#include <gtest/gtest.h>

#include "host/train/trainer.h"
#include "tests/support/test_support.h"
#include "tests/train_step_checks.h"

namespace fusedvae::test {
namespace {

// The CPU trainer's tolerances (derived in train_step_checks.h from float32 products and sums,
// whatever their order): cuBLASLt sums in another order, which the bound already covers. TF32 is
// off in these configs (TrainConfig::tf32 = false).
TEST(GpuTrainStep, MatchesReferenceTensorByTensor) {
  FUSEDVAE_REQUIRE_GPU();
  for (const GoldenCase& c : golden_cases("train_step"))
    check_step_against_reference(make_gpu_trainer, c);
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

}  // namespace
}  // namespace fusedvae::test
