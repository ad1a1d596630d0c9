// @brief OpenBLAS set-up for the CPU trainer (openblas_setup.h).
#include "host/train/cpu/openblas_setup.h"

#include <cblas.h>
#include <strings.h>
#include <sys/auxv.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <thread>

namespace fusedvae {
namespace {

// OpenBLAS's x86-64 families without AVX2 + FMA kernels: on a CPU with AVX2 they leave at least
// half of the GEMM speed unused.
bool is_pre_avx2_family(const std::string& name) {
  static const char* const kOld[] = {"Prescott", "Core2",       "Penryn",    "Dunnington",
                                     "Nehalem",  "Atom",        "Barcelona", "Opteron",
                                     "Bobcat",   "Sandybridge", "Bulldozer", "Piledriver",
                                     "Katmai",   "Coppermine",  "Northwood"};
  for (const char* old : kOld)
    if (strcasecmp(name.c_str(), old) == 0) return true;
  return false;
}

}  // namespace

CpuVectorFeatures this_cpu_vector_features() {
  CpuVectorFeatures f;
#if defined(__x86_64__)
  __builtin_cpu_init();
  f.avx512f = __builtin_cpu_supports("avx512f");
  f.avx512bw = __builtin_cpu_supports("avx512bw");
  f.avx512dq = __builtin_cpu_supports("avx512dq");
  f.avx512vl = __builtin_cpu_supports("avx512vl");
  f.avx2 = __builtin_cpu_supports("avx2");
  f.fma = __builtin_cpu_supports("fma");
#endif
  return f;
}

std::string openblas_coretype_for(const std::string& detected, const CpuVectorFeatures& cpu) {
  if (!is_pre_avx2_family(detected)) return "";
  // SkylakeX's kernels need AVX-512 F, BW, DQ and VL (OpenBLAS's own test for that family).
  if (cpu.avx512f && cpu.avx512bw && cpu.avx512dq && cpu.avx512vl) return "SkylakeX";
  if (cpu.avx2 && cpu.fma) return "Haswell";
  return "";
}

std::string better_openblas_coretype(const std::string& detected) {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return "";
  return openblas_coretype_for(detected, this_cpu_vector_features());
}

void restart_with_better_openblas_kernels(char** argv) {
  const char* corename = openblas_get_corename();
  const std::string detected = corename ? corename : "";
  const std::string better = better_openblas_coretype(detected);
  if (better.empty()) return;
  // Started as `ld.so ./fusedvae ...`, the process has no interpreter (AT_BASE 0) and
  // /proc/self/exe is the loader, which would take the subcommand for a program to load.
  if (getauxval(AT_BASE) == 0) {
    std::cerr << "fusedvae: note: OpenBLAS runs its " << detected << " kernels on this CPU; set "
              << "OPENBLAS_CORETYPE=" << better << " for faster CPU training" << std::endl;
    return;
  }
  std::cerr << "fusedvae: OpenBLAS detected its " << detected << " kernels on this CPU; restarting"
            << " with OPENBLAS_CORETYPE=" << better << " (set OPENBLAS_CORETYPE to choose)"
            << std::endl;
  setenv("OPENBLAS_CORETYPE", better.c_str(), 1);
  execv("/proc/self/exe", argv);
  std::cerr << "fusedvae: warning: the restart failed (" << std::strerror(errno)
            << "); going on with the " << detected << " kernels" << std::endl;
}

int configure_openblas_threads() {
  for (const char* var : {"OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"}) {
    const char* value = std::getenv(var);
    if (value != nullptr && std::atoi(value) > 0) {
      openblas_set_num_threads(std::atoi(value));
      return openblas_get_num_threads();
    }
  }
  openblas_set_num_threads(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  return openblas_get_num_threads();
}

}  // namespace fusedvae
