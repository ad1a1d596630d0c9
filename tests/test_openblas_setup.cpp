// @brief The OpenBLAS set-up of the CPU trainer: which kernel family replaces a missed detection,
// and the thread count that honours the user's environment.
#include <cblas.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <string>
#include <thread>

#include "host/train/cpu/openblas_setup.h"

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

CpuVectorFeatures avx512() {
  CpuVectorFeatures f;
  f.avx512f = f.avx512bw = f.avx512dq = f.avx512vl = f.avx2 = f.fma = true;
  return f;
}

CpuVectorFeatures avx2_only() {
  CpuVectorFeatures f;
  f.avx2 = f.fma = true;
  return f;
}

TEST(OpenblasCoretype, ReplacesAPreAvx2FamilyByWhatTheCpuSupports) {
  for (const char* old : {"Prescott", "Core2", "Nehalem", "Sandybridge", "prescott"}) {
    EXPECT_EQ(openblas_coretype_for(old, avx512()), "SkylakeX") << old;
    EXPECT_EQ(openblas_coretype_for(old, avx2_only()), "Haswell") << old;
    EXPECT_EQ(openblas_coretype_for(old, CpuVectorFeatures{}), "") << old << ", SSE only";
  }
  // SkylakeX's kernels need all four AVX-512 subsets; without VL the AVX2 family is the best.
  CpuVectorFeatures partial = avx512();
  partial.avx512vl = false;
  EXPECT_EQ(openblas_coretype_for("Prescott", partial), "Haswell");
  CpuVectorFeatures no_fma = avx2_only();
  no_fma.fma = false;
  EXPECT_EQ(openblas_coretype_for("Prescott", no_fma), "");
}

TEST(OpenblasCoretype, KeepsAFamilyWithAvx2KernelsOrAnUnknownName) {
  for (const char* fine : {"Haswell", "SkylakeX", "Cooperlake", "SapphireRapids", "Zen", "", "?"})
    EXPECT_EQ(openblas_coretype_for(fine, avx512()), "") << fine;
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
  const int got = configure_openblas_threads();
  EXPECT_EQ(got, openblas_get_num_threads());
  EXPECT_EQ(got, std::min(hardware, 64));  // Debian builds OpenBLAS for at most 64 threads
}

TEST(OpenblasThreads, ReportsTheCountOpenblasTookNotTheOneAskedFor) {
  ScopedEnv many("OPENBLAS_NUM_THREADS", "1000");
  const int got = configure_openblas_threads();
  EXPECT_EQ(got, openblas_get_num_threads());
  EXPECT_LT(got, 1000);
}

}  // namespace
}  // namespace fusedvae
