// @brief Lets GCC vectorise the CPU twins' loops that call expf, log1pf and tanhf.
//
// glibc's libmvec has vector expf (since 2.22), log1pf and tanhf (since 2.35), but <math.h>
// declares them to the compiler only under -ffast-math, which this project does not use (it would
// drop NaN and infinity semantics the tests pin). Redeclaring the functions with GCC's simd
// attribute gives the vectoriser the same permission for them alone; the loop must also be free of
// other calls and branches the compiler cannot if-convert (-fno-trapping-math, set for host code,
// allows the selects). Other compilers and C libraries see nothing here and run the scalar calls.
// libmvec's results may differ from the scalar ones in the last bits (glibc documents a few ulp);
// the twins are held to the float64 reference, not to bitwise equality with the kernels.
//
// The check below is on the glibc the code is built against; the binaries then need glibc >= 2.35
// where they run. -DFUSEDVAE_VECTOR_MATH=OFF (FUSEDVAE_NO_VECTOR_MATH) builds the scalar calls for
// an older target, as scripts/prepare_gpu_carry.sh does for the lent GPU machine.
#pragma once

#include <cmath>

#if !defined(FUSEDVAE_NO_VECTOR_MATH) && defined(__GNUC__) && !defined(__clang__) && \
    defined(__x86_64__) && defined(__GLIBC__)
#if __GLIBC_PREREQ(2, 35)
extern "C" {
__attribute__((simd("notinbranch"))) float expf(float) noexcept;
__attribute__((simd("notinbranch"))) float log1pf(float) noexcept;
__attribute__((simd("notinbranch"))) float tanhf(float) noexcept;  // libmvec since 2.35
}
#endif
#endif
