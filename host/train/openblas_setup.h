// @brief OpenBLAS set-up for the CPU trainer: the kernel family its CPU detection missed, and the
// thread count.
#pragma once

#include <string>

namespace fusedvae {

// The OPENBLAS_CORETYPE this CPU's features call for when OpenBLAS detected an older family than
// the CPU runs (Debian 12's OpenBLAS 0.3.21 does not know some newer Xeons, notably under
// virtualisation, and falls back to its SSE3 "Prescott" kernels: GEMMs 2 to 4 times slower).
// Empty when the detection is fine, when the user set OPENBLAS_CORETYPE, or when nothing better
// is supported. `detected` is openblas_get_corename().
std::string better_openblas_coretype(const std::string& detected);

// OpenBLAS reads OPENBLAS_CORETYPE only when it loads, before main(): an executable that calls
// this first thing re-executes itself once with the variable set (saying so on stderr) when
// better_openblas_coretype names a family. Returns only when no restart is needed or the restart
// failed (then with a warning, at the detected speed).
void restart_with_better_openblas_kernels(char** argv);

// Threads for OpenBLAS: what OPENBLAS_NUM_THREADS or OMP_NUM_THREADS asks for when set, else one
// per hardware thread. Applies it and returns it.
int configure_openblas_threads();

}  // namespace fusedvae
