// @brief OpenBLAS set-up for the CPU trainer: the kernel family its CPU detection missed, and the
// thread count.
#pragma once

#include <string>

namespace fusedvae {

// The x86-64 features that decide which OpenBLAS kernel family a CPU can run.
struct CpuVectorFeatures {
  bool avx512f = false, avx512bw = false, avx512dq = false, avx512vl = false;
  bool avx2 = false, fma = false;
};
CpuVectorFeatures this_cpu_vector_features();

// The OPENBLAS_CORETYPE a CPU with `cpu` calls for when OpenBLAS detected `detected`, an older
// family than the CPU runs (Debian 12's OpenBLAS 0.3.21 does not know some newer Xeons, notably
// under virtualisation, and falls back to its SSE3 "Prescott" kernels: GEMMs 2 to 4 times slower):
// "SkylakeX" with AVX-512 F/BW/DQ/VL, "Haswell" with AVX2 + FMA. Empty when the detection is fine
// or nothing better is supported.
std::string openblas_coretype_for(const std::string& detected, const CpuVectorFeatures& cpu);

// The same for this CPU and this process: also empty when the user set OPENBLAS_CORETYPE.
std::string better_openblas_coretype(const std::string& detected);

// OpenBLAS reads OPENBLAS_CORETYPE only when it loads, before main(): an executable that calls
// this first thing re-executes itself once with the variable set (saying so on stderr) when
// better_openblas_coretype names a family. Returns when no restart is needed, when the program was
// started through an explicit loader (ld.so ./fusedvae: /proc/self/exe is then the loader), or
// when the restart failed (with a warning; it goes on at the detected speed).
void restart_with_better_openblas_kernels(char** argv);

// Threads for OpenBLAS: what OPENBLAS_NUM_THREADS or OMP_NUM_THREADS asks for when set, else one
// per hardware thread. Applies it and returns the count OpenBLAS took (it caps it at the number it
// was built for).
int configure_openblas_threads();

}  // namespace fusedvae
