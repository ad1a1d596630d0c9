// @brief The OpenBLAS set-up of the CPU trainer: which kernel family replaces a missed detection,
// and the thread count that honours the user's environment.
#include <cblas.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <string>
#include <thread>

#include "host/train/openblas_setup.h"

namespace fusedvae {
namespace {

// Sets (or unsets) an environment variable for one scope and restores it after.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value)
      setenv(name, value, 1);
    else
      unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_)
      setenv(name_, old_->c_str(), 1);
    else
      unsetenv(name_);
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

std::string expected_for_this_cpu() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
    return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
  return "";
}

TEST(OpenblasCoretype, ReplacesAPreAvx2FamilyByWhatTheCpuSupports) {
  ScopedEnv unset("OPENBLAS_CORETYPE", nullptr);
  for (const char* old : {"Prescott", "Core2", "Nehalem", "Sandybridge", "prescott"})
    EXPECT_EQ(better_openblas_coretype(old), expected_for_this_cpu()) << old;
}

TEST(OpenblasCoretype, KeepsAFamilyWithAvx2KernelsOrAnUnknownName) {
  ScopedEnv unset("OPENBLAS_CORETYPE", nullptr);
  for (const char* fine : {"Haswell", "SkylakeX", "Cooperlake", "SapphireRapids", "Zen", "", "?"})
    EXPECT_EQ(better_openblas_coretype(fine), "") << fine;
}

TEST(OpenblasCoretype, NeverOverridesTheUsersChoice) {
  ScopedEnv pinned("OPENBLAS_CORETYPE", "Prescott");
  EXPECT_EQ(better_openblas_coretype("Prescott"), "");
}

TEST(OpenblasThreads, HonoursTheEnvironmentElseUsesEveryHardwareThread) {
  {
    ScopedEnv one("OPENBLAS_NUM_THREADS", "1");
    EXPECT_EQ(configure_openblas_threads(), 1);
    EXPECT_EQ(openblas_get_num_threads(), 1);
  }
  {
    ScopedEnv no_openblas("OPENBLAS_NUM_THREADS", nullptr);
    ScopedEnv omp("OMP_NUM_THREADS", "1");
    EXPECT_EQ(configure_openblas_threads(), 1);
  }
  ScopedEnv no_openblas("OPENBLAS_NUM_THREADS", nullptr);
  ScopedEnv no_omp("OMP_NUM_THREADS", nullptr);
  const int hardware = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  EXPECT_EQ(configure_openblas_threads(), hardware);
  EXPECT_EQ(openblas_get_num_threads(), std::min(hardware, openblas_get_num_procs()));
}

}  // namespace
}  // namespace fusedvae
