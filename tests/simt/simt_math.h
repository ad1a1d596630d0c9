// @brief Host versions of CUDA's device-only math functions and intrinsics, for the SIMT harness
// (included by tests/simt/simt.h). Each is within the error bound the CUDA C++ Programming Guide
// documents for it (appendix "Mathematical Functions", "Intrinsic Functions"), and the fast
// intrinsics keep the device's documented quirks: the result of __fdividef(x, y) is 0 for
// 2^126 < |y| < 2^128, the approximate transcendentals flush denormal inputs and results to zero,
// and __expf, __exp10f and __powf scale their argument in float32 first (the source of their
// documented |x|-dependent error). tests/simt/test_simt_harness.cpp checks each against a long
// double reference and its documented bound.
//
// The standard functions a kernel calls (std::exp, expf, log1pf, tanhf, sqrt, pow ...) are the host
// C library's here: glibc's are within 1 ulp (sqrt exact), inside CUDA's documented bounds (expf
// 2 ulp, log1pf 1 ulp, tanhf 2 ulp, sqrtf exact), but not bit-identical to the device's. Where the
// machine has FMA, the kernels are compiled with a * b + c contracted as nvcc contracts it.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

// glibc declares __expf, __logf, __sinf ... (its own aliases, with these signatures) in <math.h>;
// tests/simt/simt.cpp defines them with the device's behaviour, which the executable then uses.

// Division with x * (1 / y), 2 ulp for |y| in [2^-126, 2^126]; 0 for 2^126 < |y| < 2^128.
inline float __fdividef(float x, float y) {
  const float ay = std::fabs(y);
  if (ay > 0x1p126f && ay < INFINITY) return std::isfinite(x) ? 0.0f * x : NAN;
  return static_cast<float>(static_cast<double>(x) / static_cast<double>(y));
}
inline double __fdividef(double x, double y) = delete;

// Clamp to [0, 1]; NaN gives 0.
inline float __saturatef(float x) {
  return x >= 1.0f ? 1.0f : (x > 0.0f ? x : 0.0f);
}

namespace fusedvae::simt::detail {
// The value, rounded and opaque to the compiler, so that it cannot fuse it into a later add (the
// harness builds the kernels with contraction, as nvcc does, and CUDA never contracts these).
template <typename T>
inline T rounded(T value) {
#if defined(__x86_64__)
  __asm__("" : "+x"(value));
#else
  __asm__("" : "+m"(value));
#endif
  return value;
}
}  // namespace fusedvae::simt::detail

// IEEE round-to-nearest operations, never contracted: exact on the host (SSE float32, double).
inline float __fadd_rn(float a, float b) {
  return ::fusedvae::simt::detail::rounded(a + b);
}
inline float __fsub_rn(float a, float b) {
  return ::fusedvae::simt::detail::rounded(a - b);
}
inline float __fmul_rn(float a, float b) {
  return ::fusedvae::simt::detail::rounded(a * b);
}
inline float __fdiv_rn(float a, float b) {
  return ::fusedvae::simt::detail::rounded(a / b);
}
inline float __fmaf_rn(float a, float b, float c) {
  return std::fmaf(a, b, c);
}
inline float __frcp_rn(float x) {
  return ::fusedvae::simt::detail::rounded(1.0f / x);
}
inline float __fsqrt_rn(float x) {
  return std::sqrt(x);
}
inline float __frsqrt_rn(float x) {
  return static_cast<float>(1.0L / std::sqrt(static_cast<long double>(x)));
}
inline double __dadd_rn(double a, double b) {
  return ::fusedvae::simt::detail::rounded(a + b);
}
inline double __dsub_rn(double a, double b) {
  return ::fusedvae::simt::detail::rounded(a - b);
}
inline double __dmul_rn(double a, double b) {
  return ::fusedvae::simt::detail::rounded(a * b);
}
inline double __ddiv_rn(double a, double b) {
  return ::fusedvae::simt::detail::rounded(a / b);
}
inline double __fma_rn(double a, double b, double c) {
  return std::fma(a, b, c);
}
inline double __drcp_rn(double x) {
  return ::fusedvae::simt::detail::rounded(1.0 / x);
}
inline double __dsqrt_rn(double x) {
  return std::sqrt(x);
}

// Math library functions that only the device has (bounds: rsqrtf 2 ulp, rsqrt 1 ulp, rcbrtf and
// rcbrt 1 ulp, sinpif/cospif/sincospif 1 ulp, normcdff and normcdf 5 ulp, erfinvf 2 ulp,
// erfcinvf 4 ulp): computed in long double and rounded once.
inline float rsqrtf(float x) {
  return static_cast<float>(1.0L / std::sqrt(static_cast<long double>(x)));
}
inline double rsqrt(double x) {
  return static_cast<double>(1.0L / std::sqrt(static_cast<long double>(x)));
}
inline float rcbrtf(float x) {
  return static_cast<float>(1.0L / std::cbrt(static_cast<long double>(x)));
}
inline double rcbrt(double x) {
  return static_cast<double>(1.0L / std::cbrt(static_cast<long double>(x)));
}
namespace fusedvae::simt::detail {
// sin(pi x) with an exact reduction of x to [-1/2, 1/2] (x - 2k and 1 - r are exact for float
// and double x in long double), so that integers give exactly 0; cos(pi x) = sin(pi (x + 1/2)).
inline long double sinpi(long double x) {
  long double r = std::fmod(x, 2.0L);
  if (r > 1.0L) r -= 2.0L;
  if (r < -1.0L) r += 2.0L;
  if (r > 0.5L) r = 1.0L - r;
  if (r < -0.5L) r = -1.0L - r;
  return std::sin(3.141592653589793238462643383279502884L * r);
}
inline long double cospi(long double x) {
  return sinpi(std::fabs(x) + 0.5L);
}
}  // namespace fusedvae::simt::detail
inline float sinpif(float x) {
  return static_cast<float>(::fusedvae::simt::detail::sinpi(x));
}
inline float cospif(float x) {
  return static_cast<float>(::fusedvae::simt::detail::cospi(x));
}
inline double sinpi(double x) {
  return static_cast<double>(::fusedvae::simt::detail::sinpi(x));
}
inline double cospi(double x) {
  return static_cast<double>(::fusedvae::simt::detail::cospi(x));
}
inline void sincospif(float x, float* s, float* c) {
  *s = sinpif(x);
  *c = cospif(x);
}
inline void sincospi(double x, double* s, double* c) {
  *s = sinpi(x);
  *c = cospi(x);
}
inline float normcdff(float x) {
  return static_cast<float>(
      0.5L * std::erfc(-static_cast<long double>(x) / 1.414213562373095048801688724209698079L));
}
inline double normcdf(double x) {
  return static_cast<double>(
      0.5L * std::erfc(-static_cast<long double>(x) / 1.414213562373095048801688724209698079L));
}

// Bit casts and integer intrinsics (exact).
inline unsigned int __float_as_uint(float x) {
  unsigned int u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}
inline float __uint_as_float(unsigned int u) {
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}
inline int __float_as_int(float x) {
  int i;
  std::memcpy(&i, &x, sizeof i);
  return i;
}
inline float __int_as_float(int i) {
  float x;
  std::memcpy(&x, &i, sizeof x);
  return x;
}
inline long long __double_as_longlong(double x) {
  long long i;
  std::memcpy(&i, &x, sizeof i);
  return i;
}
inline double __longlong_as_double(long long i) {
  double x;
  std::memcpy(&x, &i, sizeof x);
  return x;
}
inline int __popc(unsigned int x) {
  return __builtin_popcount(x);
}
inline int __popcll(unsigned long long x) {
  return __builtin_popcountll(x);
}
inline int __clz(int x) {
  return x == 0 ? 32 : __builtin_clz(static_cast<unsigned int>(x));
}
inline int __clzll(long long x) {
  return x == 0 ? 64 : __builtin_clzll(static_cast<unsigned long long>(x));
}
inline int __ffs(int x) {
  return __builtin_ffs(x);
}
inline int __ffsll(long long x) {
  return __builtin_ffsll(x);
}
inline unsigned int __brev(unsigned int x) {
  unsigned int r = 0;
  for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i);
  return r;
}
inline unsigned long long __brevll(unsigned long long x) {
  unsigned long long r = 0;
  for (int i = 0; i < 64; ++i) r |= ((x >> i) & 1ull) << (63 - i);
  return r;
}
inline unsigned int __umulhi(unsigned int a, unsigned int b) {
  return static_cast<unsigned int>((static_cast<uint64_t>(a) * b) >> 32);
}
inline int __mulhi(int a, int b) {
  return static_cast<int>((static_cast<int64_t>(a) * b) >> 32);
}
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
  return static_cast<unsigned long long>((static_cast<unsigned __int128>(a) * b) >> 64);
}
inline long long __mul64hi(long long a, long long b) {
  return static_cast<long long>((static_cast<__int128>(a) * b) >> 64);
}
inline int __mul24(int a, int b) {
  const int a24 = (a << 8) >> 8, b24 = (b << 8) >> 8;
  return static_cast<int>(static_cast<int64_t>(a24) * b24);
}
inline unsigned int __umul24(unsigned int a, unsigned int b) {
  return (a & 0xffffffu) * (b & 0xffffffu);
}
inline unsigned int __byte_perm(unsigned int x, unsigned int y, unsigned int s) {
  const uint64_t bytes = (static_cast<uint64_t>(y) << 32) | x;
  unsigned int r = 0;
  for (int i = 0; i < 4; ++i) r |= ((bytes >> (8 * ((s >> (4 * i)) & 7u))) & 0xffu) << (8 * i);
  return r;
}
inline unsigned int __funnelshift_l(unsigned int lo, unsigned int hi, unsigned int shift) {
  const uint64_t v = (static_cast<uint64_t>(hi) << 32) | lo;
  return static_cast<unsigned int>((v << (shift & 31u)) >> 32);
}
inline unsigned int __funnelshift_r(unsigned int lo, unsigned int hi, unsigned int shift) {
  const uint64_t v = (static_cast<uint64_t>(hi) << 32) | lo;
  return static_cast<unsigned int>(v >> (shift & 31u));
}
inline int __float2int_rn(float x) {
  return static_cast<int>(std::nearbyint(x));
}
inline int __float2int_rz(float x) {
  return static_cast<int>(x);
}
inline unsigned int __float2uint_rn(float x) {
  return static_cast<unsigned int>(std::nearbyint(x));
}
inline float __int2float_rn(int x) {
  return static_cast<float>(x);
}
inline float __uint2float_rn(unsigned int x) {
  return static_cast<float>(x);
}

// A cycle counter that only moves forward (clock() would be the C library's: use clock64()).
long long clock64();
