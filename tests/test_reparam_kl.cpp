// @brief Fused reparameterization + KL: CPU twin and GPU kernels against the float64 golden cases,
// Philox eps (regeneration, keying, launch independence, statistics), determinism, finiteness
// and argument checks.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

// cuRAND's raw Philox block, host-callable as in kernels/philox_normal.cuh (for the emulation of
// the device's Box-Muller below).
#ifndef QUALIFIERS
#define QUALIFIERS static __forceinline__ __host__ __device__
#endif
#include <curand_globals.h>
#include <curand_philox4x32_x.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "host/ops/reparam_kl_cpu.h"
#include "kernels/reparam_kl.h"
#include "tests/support/test_support.h"

namespace fusedvae {
namespace {

using test::AccuracySummary;
using test::DeviceBuffer;
using test::DeviceScalar;
using test::GoldenCase;
using test::Tolerance;
using Workspace = test::ScopedReductionWorkspace;

constexpr double u = test::kFloat32Roundoff;

constexpr double kAbs = test::kDenormalAbs;

// ---------------------------------------------------------------------------------------------
// Tolerances (relative part, in units of u, times the reference's magnitude = sum of |terms|).
// Per-term error, first order. A k-ulp error is up to 2k u relative (an ulp is 2 u at the bottom of
// a binade). CUDA: expf <= 2 ulp, expm1f <= 1 ulp (CUDA C Programming Guide); glibc: < 1 ulp. nvcc
// fuses mul + add into one fmaf on the device (one rounding instead of two); the bounds below hold
// for both faces, the device counted with its larger ulp errors and its fused roundings.
//  z = mu + exp(lv/2) * eps: expf 4 u of sigma, the fused product and sum 1 u (CPU: expf 2 u, two
//    roundings): <= 5 u * (|mu| + |sigma eps|).
//  KL term 1/2 (mu^2 + (expm1(lv) - lv)): expm1f 2 u of |expm1|, the difference 1 u, mu^2 and the
//    sum fused 1 u (CPU: 1 u more for mu^2), halving exact: <= 4 u * 1/2 (mu^2 + |expm1 lv| +
//    |lv|); kKlTerm is 3 and every sum tolerance below adds 1 u to it.
//  dmu = dz + w mu, w = kl_weight * (loss_scale * float(1/batch)): 3 roundings in w, 1 in w*mu,
//    1 in the sum: <= 5 u * (|dz| + |w mu|). +1 u.
//  dlogvar = dz * (sigma eps / 2) + w expm1(lv) / 2: first part expf 4 + product 1 (+ product 1
//    unless fused) = 5-6 u; second part w 3 + expm1f 2 (+ product 1 unless fused) = 5-6 u; the
//    sum 1 u: <= 7 u * magnitude (the device fuses one of the two products).
constexpr double kZTerm = 5;
constexpr double kKlTerm = 3;
constexpr double kDmuTerm = 6;
constexpr double kDlogvarTerm = 7;

// CPU twin: per-sample sums run in double (error dim * 2^-53 relative, negligible) and are rounded
// to float32 once (1 u). The batch value adds the rounded per-sample values in double, rounds once
// (1 u) and multiplies by the float32 batch scale (1/batch rounded: 1 u, the product: 1 u).
Tolerance cpu_kl_per_sample_tol() {
  return {kAbs, (kKlTerm + 1) * u};
}
Tolerance cpu_kl_reduced_tol() {
  return {kAbs, (kKlTerm + 1 + 3) * u};
}

// GPU kernel: one warp per row, each lane adds its terms in sequence (groups of four columns, so
// 4 * ceil(ceil(dim/4) / 32) terms at most; n terms cost n - 1 roundings), then a 5-level shuffle
// tree. The batch value then runs through gpu_batch_sum_depth() more roundings.
int gpu_lane_terms(int dim) {
  const int groups = (dim + 3) / 4;
  return 4 * ((groups + 31) / 32);
}
Tolerance gpu_kl_per_sample_tol(int dim) {
  return {kAbs, (kKlTerm + gpu_lane_terms(dim) - 1 + 5 + 1) * u};
}
Tolerance gpu_kl_reduced_tol(int batch, int dim, int block_size) {
  return {kAbs, (kKlTerm + gpu_lane_terms(dim) - 1 + 5 +
                 test::gpu_batch_sum_depth(batch, block_size) + 1) *
                    u};
}

// ---------------------------------------------------------------------------------------------
// Golden inputs

struct ReparamCase {
  std::string name;
  int batch = 0;
  int dim = 0;
  LogvarClamp clamp;
  BatchReduction reduction = BatchReduction::kMean;
  float kl_weight = 1.0f;
  float loss_scale = 1.0f;
  std::vector<float> mu, logvar, eps, dz;
};

ReparamCase load(const GoldenCase& c) {
  ReparamCase r;
  r.name = c.op + "/" + c.name;
  r.batch = c.manifest.at("batch").get<int>();
  r.dim = c.manifest.at("dim").get<int>();
  r.clamp = {c.manifest.at("clamp_min").get<float>(), c.manifest.at("clamp_max").get<float>()};
  r.reduction = test::golden_reduction(c);
  r.mu = c.f32("mu");
  r.logvar = c.f32("logvar");
  r.eps = c.f32("eps");
  if (c.has("dz")) {
    r.dz = c.f32("dz");
    r.kl_weight = c.manifest.at("kl_weight").get<float>();
    r.loss_scale = c.manifest.at("loss_scale").get<float>();
  }
  const size_t n = static_cast<size_t>(r.batch) * r.dim;
  EXPECT_EQ(r.mu.size(), n) << r.name;
  EXPECT_EQ(r.logvar.size(), n) << r.name;
  EXPECT_EQ(r.eps.size(), n) << r.name;
  return r;
}

struct ForwardOut {
  std::vector<float> z, kl_per_sample, kl_reduced;
};
struct BackwardOut {
  std::vector<float> dmu, dlogvar;
};

ForwardOut cpu_forward(const ReparamCase& r) {
  const size_t n = r.mu.size();
  ForwardOut out{test::poisoned(n), test::poisoned(r.batch), test::poisoned(1)};
  cpu::reparam_kl_forward_given_eps(r.mu.data(), r.logvar.data(), r.eps.data(), r.batch, r.dim,
                                    r.clamp, r.reduction, out.z.data(), out.kl_per_sample.data(),
                                    out.kl_reduced.data());
  return out;
}

BackwardOut cpu_backward(const ReparamCase& r) {
  const size_t n = r.mu.size();
  BackwardOut out{test::poisoned(n), test::poisoned(n)};
  cpu::reparam_kl_backward_given_eps(r.dz.data(), r.mu.data(), r.logvar.data(), r.eps.data(),
                                     r.batch, r.dim, &r.kl_weight, r.loss_scale, r.clamp,
                                     r.reduction, out.dmu.data(), out.dlogvar.data());
  return out;
}

ForwardOut gpu_forward(const ReparamCase& r, ReductionWorkspace ws, int block_size) {
  DeviceBuffer mu(r.mu), logvar(r.logvar), eps(r.eps);
  DeviceBuffer z(r.mu.size()), kl(r.batch), kl_reduced(1);
  gpu::reparam_kl_forward_given_eps(mu.get(), logvar.get(), eps.get(), r.batch, r.dim, r.clamp,
                                    r.reduction, z.get(), kl.get(), kl_reduced.get(), ws, nullptr,
                                    block_size);
  ForwardOut out{z.to_host(), kl.to_host(), kl_reduced.to_host()};
  test::expect_all_written(out.z, "gpu z");
  test::expect_all_written(out.kl_per_sample, "gpu kl_per_sample");
  test::expect_all_written(out.kl_reduced, "gpu kl_reduced");
  return out;
}

BackwardOut gpu_backward(const ReparamCase& r, int block_size) {
  DeviceBuffer dz(r.dz), mu(r.mu), logvar(r.logvar), eps(r.eps);
  DeviceBuffer dmu(r.mu.size()), dlogvar(r.mu.size());
  DeviceScalar<float> kl_weight(r.kl_weight);
  gpu::reparam_kl_backward_given_eps(dz.get(), mu.get(), logvar.get(), eps.get(), r.batch, r.dim,
                                     kl_weight.get(), r.loss_scale, r.clamp, r.reduction, dmu.get(),
                                     dlogvar.get(), nullptr, block_size);
  BackwardOut out{dmu.to_host(), dlogvar.to_host()};
  test::expect_all_written(out.dmu, "gpu dmu");
  test::expect_all_written(out.dlogvar, "gpu dlogvar");
  return out;
}

void expect_same(const ForwardOut& a, const ForwardOut& b, const std::string& tag) {
  test::expect_bitwise_equal(a.z, b.z, "z" + tag);
  test::expect_bitwise_equal(a.kl_per_sample, b.kl_per_sample, "kl_per_sample" + tag);
  test::expect_bitwise_equal(a.kl_reduced, b.kl_reduced, "kl_reduced" + tag);
}

void expect_same(const BackwardOut& a, const BackwardOut& b, const std::string& tag) {
  test::expect_bitwise_equal(a.dmu, b.dmu, "dmu" + tag);
  test::expect_bitwise_equal(a.dlogvar, b.dlogvar, "dlogvar" + tag);
}

void check_forward(const GoldenCase& c, const ReparamCase& r, const ForwardOut& out,
                   Tolerance per_sample_tol, Tolerance reduced_tol, AccuracySummary* summary) {
  const auto z_mag = c.f64("z_mag");
  const auto kl_mag = c.f64("kl_per_sample_mag");
  const auto red_mag = c.f64("kl_reduced_mag");
  summary->add("z", r.name,
               test::expect_close(r.name + "/z", out.z, c.f64("z"), &z_mag, {kAbs, kZTerm * u}));
  summary->add("kl_per_sample", r.name,
               test::expect_close(r.name + "/kl_per_sample", out.kl_per_sample,
                                  c.f64("kl_per_sample"), &kl_mag, per_sample_tol));
  summary->add("kl_reduced", r.name,
               test::expect_close(r.name + "/kl_reduced", out.kl_reduced, c.f64("kl_reduced"),
                                  &red_mag, reduced_tol));
}

void check_backward(const GoldenCase& c, const ReparamCase& r, const BackwardOut& out,
                    AccuracySummary* summary) {
  const auto dmu_mag = c.f64("dmu_mag");
  const auto dlogvar_mag = c.f64("dlogvar_mag");
  summary->add(
      "dmu", r.name,
      test::expect_close(r.name + "/dmu", out.dmu, c.f64("dmu"), &dmu_mag, {kAbs, kDmuTerm * u}));
  summary->add("dlogvar", r.name,
               test::expect_close(r.name + "/dlogvar", out.dlogvar, c.f64("dlogvar"), &dlogvar_mag,
                                  {kAbs, kDlogvarTerm * u}));
}

// ---------------------------------------------------------------------------------------------
// Against the float64 reference

TEST(ReparamKlCpu, ForwardMatchesFloat64Reference) {
  AccuracySummary summary("cpu reparam_kl_forward");
  for (const GoldenCase& c : test::golden_cases("reparam_kl_forward")) {
    SCOPED_TRACE(c.name);
    const ReparamCase r = load(c);
    check_forward(c, r, cpu_forward(r), cpu_kl_per_sample_tol(), cpu_kl_reduced_tol(), &summary);
  }
}

TEST(ReparamKlCpu, BackwardMatchesFloat64Reference) {
  AccuracySummary summary("cpu reparam_kl_backward");
  for (const GoldenCase& c : test::golden_cases("reparam_kl_backward")) {
    SCOPED_TRACE(c.name);
    const ReparamCase r = load(c);
    check_backward(c, r, cpu_backward(r), &summary);
  }
}

TEST(ReparamKlGpu, ForwardMatchesFloat64Reference) {
  FUSEDVAE_REQUIRE_GPU();
  Workspace ws;
  for (const int block_size : {64, gpu::kDefaultBlockSize, 1024}) {
    AccuracySummary summary("gpu reparam_kl_forward, block " + std::to_string(block_size));
    for (const GoldenCase& c : test::golden_cases("reparam_kl_forward")) {
      SCOPED_TRACE(c.name + ", block " + std::to_string(block_size));
      const ReparamCase r = load(c);
      check_forward(c, r, gpu_forward(r, ws.ws, block_size), gpu_kl_per_sample_tol(r.dim),
                    gpu_kl_reduced_tol(r.batch, r.dim, block_size), &summary);
    }
  }
}

TEST(ReparamKlGpu, BackwardMatchesFloat64Reference) {
  FUSEDVAE_REQUIRE_GPU();
  AccuracySummary summary("gpu reparam_kl_backward");
  for (const GoldenCase& c : test::golden_cases("reparam_kl_backward")) {
    SCOPED_TRACE(c.name);
    const ReparamCase r = load(c);
    check_backward(c, r, gpu_backward(r, gpu::kDefaultBlockSize), &summary);
  }
}

// ---------------------------------------------------------------------------------------------
// Philox eps

// Odd sizes: the last group of four columns of each row is partial.
constexpr int kPhiloxBatch = 37;
constexpr int kPhiloxDim = 43;
constexpr uint64_t kSeed = 0x5eed1234abcdULL;

std::vector<float> random_floats(size_t n, uint32_t seed, float lo, float hi) {
  // A small LCG: the inputs only need to be varied, not statistically good.
  std::vector<float> v(n);
  uint64_t state = seed * 6364136223846793005ULL + 1442695040888963407ULL;
  for (auto& x : v) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    x = lo + (hi - lo) * static_cast<float>((state >> 40) * 0x1p-24);
  }
  return v;
}

ReparamCase philox_case() {
  ReparamCase r;
  r.name = "philox";
  r.batch = kPhiloxBatch;
  r.dim = kPhiloxDim;
  const size_t n = static_cast<size_t>(r.batch) * r.dim;
  r.mu = random_floats(n, 1, -3.0f, 3.0f);
  r.logvar = random_floats(n, 2, -35.0f, 25.0f);  // some outside the clamp
  r.dz = random_floats(n, 3, -2.0f, 2.0f);
  r.kl_weight = 0.37f;
  r.loss_scale = 512.0f;
  r.reduction = BatchReduction::kMean;
  return r;
}

std::vector<float> cpu_eps(int batch, int dim, uint64_t seed, uint64_t draw,
                           uint64_t first_row = 0) {
  std::vector<float> eps = test::poisoned(static_cast<size_t>(batch) * dim);
  cpu::draw_normal_eps(batch, dim, RngState{seed, &draw, first_row}, eps.data());
  test::expect_all_written(eps, "cpu eps");
  return eps;
}

// DyAD's noise_scale: the drawn eps times the scale, element by element (a product of two floats,
// so exactly scale * eps rounded once); scale 1 leaves the bits alone.
TEST(ReparamKlCpu, ScaledEpsIsTheDrawTimesTheScale) {
  const int batch = 3, dim = 7;
  const uint64_t draw = 4;
  const std::vector<float> eps = cpu_eps(batch, dim, kSeed, draw);
  for (float scale : {1.0f, 0.01f, -2.5f}) {
    std::vector<float> scaled = test::poisoned(eps.size());
    cpu::draw_normal_eps(batch, dim, RngState{kSeed, &draw}, scaled.data(), scale);
    for (size_t i = 0; i < eps.size(); ++i) ASSERT_EQ(scaled[i], scale * eps[i]) << i;
  }
}

TEST(ReparamKlCpu, PhiloxForwardAndBackwardUseTheDrawnEpsBitwise) {
  ReparamCase r = philox_case();
  const uint64_t draw = 7;
  r.eps = cpu_eps(r.batch, r.dim, kSeed, draw);
  const ForwardOut given = cpu_forward(r);
  const BackwardOut given_bwd = cpu_backward(r);

  const size_t n = r.mu.size();
  ForwardOut philox{test::poisoned(n), test::poisoned(r.batch), test::poisoned(1)};
  cpu::reparam_kl_forward(r.mu.data(), r.logvar.data(), r.batch, r.dim, RngState{kSeed, &draw},
                          r.clamp, r.reduction, philox.z.data(), philox.kl_per_sample.data(),
                          philox.kl_reduced.data());
  expect_same(philox, given, " (philox vs given eps)");

  // The backward regenerates exactly the forward's eps from the same draw index.
  BackwardOut philox_bwd{test::poisoned(n), test::poisoned(n)};
  cpu::reparam_kl_backward(r.dz.data(), r.mu.data(), r.logvar.data(), r.batch, r.dim,
                           RngState{kSeed, &draw}, &r.kl_weight, r.loss_scale, r.clamp, r.reduction,
                           philox_bwd.dmu.data(), philox_bwd.dlogvar.data());
  expect_same(philox_bwd, given_bwd, " (philox vs given eps)");
}

size_t count_equal(const std::vector<float>& a, const std::vector<float>& b) {
  size_t same = 0;
  for (size_t i = 0; i < a.size(); ++i) same += a[i] == b[i];
  return same;
}

TEST(ReparamKlCpu, PhiloxEpsDependsOnDrawSeedAndPositionOnly) {
  const std::vector<float> draw0 = cpu_eps(kPhiloxBatch, kPhiloxDim, kSeed, 0);
  // Independent normals coincide in float32 with probability ~1e-7 per pair; 1% flags a keying
  // error (a repeated or shifted stream) with a wide margin either way.
  const size_t limit = draw0.size() / 100;
  EXPECT_LE(count_equal(draw0, cpu_eps(kPhiloxBatch, kPhiloxDim, kSeed, 1)), limit) << "draw";
  EXPECT_LE(count_equal(draw0, cpu_eps(kPhiloxBatch, kPhiloxDim, kSeed + 1, 0)), limit) << "seed";
  // Rows must not repeat each other (a subsequence keyed by column alone would).
  const std::vector<float> row0(draw0.begin(), draw0.begin() + kPhiloxDim);
  const std::vector<float> row1(draw0.begin() + kPhiloxDim, draw0.begin() + 2 * kPhiloxDim);
  EXPECT_LE(count_equal(row0, row1), 1u);
  // The eps of a row does not depend on how many rows the tensor has.
  const std::vector<float> fewer_rows = cpu_eps(5, kPhiloxDim, kSeed, 0);
  test::expect_bitwise_equal(fewer_rows,
                             std::vector<float>(draw0.begin(), draw0.begin() + fewer_rows.size()),
                             "first rows of a taller tensor");
}

// Rows [first, first + n) of a draw, the shape of a chunked pass over a dataset.
std::vector<float> row_slice(const std::vector<float>& whole, int dim, int first, int rows) {
  return std::vector<float>(whole.begin() + static_cast<size_t>(first) * dim,
                            whole.begin() + static_cast<size_t>(first + rows) * dim);
}

// RngState::first_row keys a call's rows as rows of a taller tensor: chunks of any size, odd and
// partial ones included, draw exactly the eps of one whole draw.
TEST(ReparamKlCpu, ChunksFromFirstRowDrawTheRowsOfTheWholeTensor) {
  const std::vector<float> whole = cpu_eps(kPhiloxBatch, kPhiloxDim, kSeed, 2);
  for (const int chunk : {1, 3, 16}) {
    for (int first = 0; first < kPhiloxBatch; first += chunk) {
      const int rows = std::min(chunk, kPhiloxBatch - first);
      test::expect_bitwise_equal(
          cpu_eps(rows, kPhiloxDim, kSeed, 2, first), row_slice(whole, kPhiloxDim, first, rows),
          "chunk " + std::to_string(chunk) + " at row " + std::to_string(first));
    }
  }
}

// Sample statistics of n draws against N(0, 1). The draws are a fixed function of the seed, so
// these never flake; they fail when the transform or the keying is wrong (a bias, a wrong
// variance, a repeated stream, a bad tail).
//  mean: sd 1/sqrt(n); |mean| < 5/sqrt(n) (5 sigma).
//  variance: sd sqrt(2/n); |var - 1| < 5 sqrt(2/n).
//  Kolmogorov-Smirnov: sup |F_n - Phi| < 1.95/sqrt(n), the asymptotic critical value at 0.1%.
//  lag correlations (next column, next row, next draw): sd 1/sqrt(n); |r| < 5/sqrt(n).
void expect_standard_normal(std::vector<float> eps, const std::string& what) {
  const double n = static_cast<double>(eps.size());
  double sum = 0.0, sum_sq = 0.0;
  for (const float e : eps) {
    sum += e;
    sum_sq += static_cast<double>(e) * e;
  }
  const double mean = sum / n;
  const double variance = sum_sq / n - mean * mean;
  EXPECT_LT(std::fabs(mean), 5.0 / std::sqrt(n)) << what << ": mean " << mean;
  EXPECT_LT(std::fabs(variance - 1.0), 5.0 * std::sqrt(2.0 / n)) << what << ": var " << variance;
  std::sort(eps.begin(), eps.end());
  double ks = 0.0;
  for (size_t i = 0; i < eps.size(); ++i) {
    const double cdf = 0.5 * std::erfc(-eps[i] / std::sqrt(2.0));
    ks = std::max({ks, std::fabs((i + 1) / n - cdf), std::fabs(cdf - i / n)});
  }
  const double critical = 1.95 / std::sqrt(n);
  std::printf(
      "[ stats    ] %s: n = %.0f, mean = %.2e, var - 1 = %.2e, KS D = %.2e (critical "
      "%.2e)\n",
      what.c_str(), n, mean, variance - 1.0, ks, critical);
  EXPECT_LT(ks, critical) << what;
}

double correlation(const std::vector<float>& a, const std::vector<float>& b) {
  double ab = 0.0, aa = 0.0, bb = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    ab += static_cast<double>(a[i]) * b[i];
    aa += static_cast<double>(a[i]) * a[i];
    bb += static_cast<double>(b[i]) * b[i];
  }
  return ab / std::sqrt(aa * bb);
}

// Correlations between neighbours in column, row and draw.
void expect_uncorrelated(const std::vector<float>& eps, const std::vector<float>& next_draw,
                         int dim, const std::string& what) {
  const double limit = 5.0 / std::sqrt(static_cast<double>(eps.size()));
  const std::vector<float> shifted_col(eps.begin() + 1, eps.end());
  const std::vector<float> shifted_row(eps.begin() + dim, eps.end());
  EXPECT_LT(std::fabs(correlation(std::vector<float>(eps.begin(), eps.end() - 1), shifted_col)),
            limit)
      << what << ": next column";
  EXPECT_LT(std::fabs(correlation(std::vector<float>(eps.begin(), eps.end() - dim), shifted_row)),
            limit)
      << what << ": next row";
  EXPECT_LT(std::fabs(correlation(eps, next_draw)), limit) << what << ": next draw";
}

constexpr int kStatsBatch = 1000;
constexpr int kStatsDim = 1001;  // 1,001,000 draws, not a multiple of 4 per row

TEST(ReparamKlCpu, PhiloxEpsIsStandardNormal) {
  const std::vector<float> eps = cpu_eps(kStatsBatch, kStatsDim, kSeed, 3);
  expect_standard_normal(eps, "cpu eps");
  expect_uncorrelated(eps, cpu_eps(kStatsBatch, kStatsDim, kSeed, 4), kStatsDim, "cpu eps");
}

std::vector<float> gpu_eps(int batch, int dim, uint64_t seed, uint64_t draw, int block_size,
                           uint64_t first_row = 0) {
  DeviceScalar<uint64_t> draw_index(draw);
  DeviceBuffer eps(static_cast<size_t>(batch) * dim);
  gpu::draw_normal_eps(batch, dim, RngState{seed, draw_index.get(), first_row}, eps.get(), nullptr,
                       block_size);
  std::vector<float> host = eps.to_host();
  test::expect_all_written(host, "gpu eps");
  return host;
}

TEST(ReparamKlGpu, PhiloxEpsIsStandardNormal) {
  FUSEDVAE_REQUIRE_GPU();
  const std::vector<float> eps = gpu_eps(kStatsBatch, kStatsDim, kSeed, 3, 256);
  expect_standard_normal(eps, "gpu eps");
  expect_uncorrelated(eps, gpu_eps(kStatsBatch, kStatsDim, kSeed, 4, 256), kStatsDim, "gpu eps");
}

// cuRAND's Box-Muller (curand_normal.h) differs between the faces in three places, all absolute
// errors in the angle v in [0, 2 pi) that scale with the pair's radius r = sqrt(-2 log u):
//  - v = y * C + C / 2: nvcc contracts this into one fmaf on the device; a host without FMA in its
//    instruction set (the host code's -march level, CMakeLists.txt) rounds the product and then the
//    sum, so the two v differ by up to one ulp of v, 2^-21 = 4.8e-7 for
//    v >= 4 (emulating the fmaf on the host over this test's 4884 eps: 52 angles differ, worst
//    4.77e-7, which alone uses 0.42 of a 1e-6 r budget);
//  - the device's __sincosf: <= 2^-21.41 = 3.6e-7 on [-pi, pi] (CUDA C Programming Guide) plus
//    up to 3.7e-7 on [pi, 2 pi) from the intrinsic's float32 scaling of v by 1 / (2 pi);
//  - the host's sinf/cosf: < 1 ulp of a result <= 1, 6e-8.
// And s = sqrt(-2 log u) itself: logf <= 1 ulp on each face, sqrtf exact, so s differs by about
// 1.5 u relative per face: <= 1.8e-7 r. In all <= 1.45e-6 r; tolerance 1.5e-6 r. A keying or
// transform error moves eps by O(r), so this leaves the test's power intact.
// The part of that budget a CPU can check: cuRAND's device Box-Muller computed on the host, exactly
// but for __sincosf (the angle fused as nvcc fuses it, sine and cosine in double), against the CPU
// twin's eps. What remains is the angle's fusion and the host's sinf/cosf: <= (4.8e-7 + 0.6e-7) r.
// Fails if the twin stops following cuRAND's host path, or if the fused angle errs more than the
// GPU test's tolerance assumes.
TEST(ReparamKlCpu, EmulatedDeviceBoxMullerIsWithinTheGpuEpsBudget) {
  const int groups = (kPhiloxDim + 3) / 4;
  double worst_share = 0.0;
  int fused_angles_differ = 0;
  for (const uint64_t draw : {0ull, 1ull, 123456789ull}) {
    const std::vector<float> host = cpu_eps(kPhiloxBatch, kPhiloxDim, kSeed, draw);
    for (int row = 0; row < kPhiloxBatch; ++row)
      for (int g = 0; g < groups; ++g) {
        // curand_init(seed, subsequence, 4 * draw) + curand4: the counter holds the draw in its
        // low half and the subsequence in its high half (philox_normal.cuh's keying).
        const uint64_t subsequence = static_cast<uint64_t>(row) * groups + g;
        const uint4 words = curand_Philox4x32_10(
            make_uint4(static_cast<uint32_t>(draw), static_cast<uint32_t>(draw >> 32),
                       static_cast<uint32_t>(subsequence),
                       static_cast<uint32_t>(subsequence >> 32)),
            make_uint2(static_cast<uint32_t>(kSeed), static_cast<uint32_t>(kSeed >> 32)));
        const uint32_t radius_words[2] = {words.x, words.z}, angle_words[2] = {words.y, words.w};
        for (int pair = 0; pair < 2; ++pair) {
          // The radius' uniform: the product by 2^-32 is exact, so fusing changes nothing.
          const float uniform =
              static_cast<float>(radius_words[pair]) * CURAND_2POW32_INV + CURAND_2POW32_INV / 2;
          const float radius = std::sqrt(-2.0f * std::log(uniform));
          const float angle = std::fmaf(static_cast<float>(angle_words[pair]),
                                        CURAND_2POW32_INV_2PI, CURAND_2POW32_INV_2PI / 2);
          // Rounded after the product, as cuRAND's host path computes it without FMA (volatile:
          // the compiler contracts a * b + c into an FMA where the instruction set has one, as
          // at x86-64-v3, and then the twin's own angle is the fused one).
          const volatile float product =
              static_cast<float>(angle_words[pair]) * CURAND_2POW32_INV_2PI;
          const float unfused_angle = product + CURAND_2POW32_INV_2PI / 2;
          fused_angles_differ += angle != unfused_angle;
          const double emulated[2] = {radius * std::sin(static_cast<double>(angle)),
                                      radius * std::cos(static_cast<double>(angle))};
          for (int k = 0; k < 2; ++k) {
            const int col = 4 * g + 2 * pair + k;
            if (col >= kPhiloxDim) continue;
            const double err =
                std::fabs(emulated[k] - host[static_cast<size_t>(row) * kPhiloxDim + col]);
            worst_share = std::max(worst_share, err / (5.4e-7 * radius));
          }
        }
      }
  }
  std::printf(
      "[ accuracy ] emulated device eps vs cpu eps: worst %.3g of 5.4e-7 r; %d fused "
      "angles differ from the unfused\n",
      worst_share, fused_angles_differ);
  EXPECT_LE(worst_share, 1.0);
  // The fusion does move some angles: eps from a host path without FMA cannot be bitwise the GPU's.
  EXPECT_GT(fused_angles_differ, 0);
}

TEST(ReparamKlGpu, PhiloxEpsMatchesCpu) {
  FUSEDVAE_REQUIRE_GPU();
  for (const uint64_t draw : {0ull, 1ull, 123456789ull}) {
    const std::vector<float> host = cpu_eps(kPhiloxBatch, kPhiloxDim, kSeed, draw);
    const std::vector<float> device = gpu_eps(kPhiloxBatch, kPhiloxDim, kSeed, draw, 256);
    std::vector<double> reference(host.begin(), host.end());
    std::vector<double> radius(host.size());
    for (int row = 0; row < kPhiloxBatch; ++row)
      for (int col = 0; col < kPhiloxDim; ++col) {
        const size_t i = static_cast<size_t>(row) * kPhiloxDim + col;
        const int partner = col ^ 1;  // pairs (x, y) and (z, w) of each group of four
        radius[i] = partner < kPhiloxDim
                        ? std::hypot(host[i], host[static_cast<size_t>(row) * kPhiloxDim + partner])
                        : 6.7;  // partner beyond the row: not stored, use the largest radius
      }
    test::expect_close("eps gpu vs cpu, draw " + std::to_string(draw), device, reference, &radius,
                       {0.0, 1.5e-6});
  }
}

TEST(ReparamKlGpu, PhiloxForwardAndBackwardUseTheDrawnEpsBitwise) {
  FUSEDVAE_REQUIRE_GPU();
  Workspace ws;
  ReparamCase r = philox_case();
  const uint64_t draw = 7;
  r.eps = gpu_eps(r.batch, r.dim, kSeed, draw, gpu::kDefaultBlockSize);
  const ForwardOut given = gpu_forward(r, ws.ws, gpu::kDefaultBlockSize);
  const BackwardOut given_bwd = gpu_backward(r, gpu::kDefaultBlockSize);

  DeviceScalar<uint64_t> draw_index(draw);
  DeviceScalar<float> kl_weight(r.kl_weight);
  DeviceBuffer mu(r.mu), logvar(r.logvar), dz(r.dz);
  DeviceBuffer z(r.mu.size()), kl(r.batch), kl_reduced(1), dmu(r.mu.size()), dlogvar(r.mu.size());
  const RngState rng{kSeed, draw_index.get()};
  gpu::reparam_kl_forward(mu.get(), logvar.get(), r.batch, r.dim, rng, r.clamp, r.reduction,
                          z.get(), kl.get(), kl_reduced.get(), ws.ws, nullptr);
  gpu::reparam_kl_backward(dz.get(), mu.get(), logvar.get(), r.batch, r.dim, rng, kl_weight.get(),
                           r.loss_scale, r.clamp, r.reduction, dmu.get(), dlogvar.get(), nullptr);
  expect_same(ForwardOut{z.to_host(), kl.to_host(), kl_reduced.to_host()}, given,
              " (philox vs given eps)");
  expect_same(BackwardOut{dmu.to_host(), dlogvar.to_host()}, given_bwd, " (philox vs given eps)");

  // advance_draw_index moves the device counter: the next forward uses draw + 3.
  gpu::advance_draw_index(draw_index.get(), 3, nullptr);
  EXPECT_EQ(draw_index.read(), draw + 3);
  const std::vector<float> eps_before = r.eps;
  r.eps = gpu_eps(r.batch, r.dim, kSeed, draw + 3, gpu::kDefaultBlockSize);
  const ForwardOut later = gpu_forward(r, ws.ws, gpu::kDefaultBlockSize);
  gpu::reparam_kl_forward(mu.get(), logvar.get(), r.batch, r.dim, rng, r.clamp, r.reduction,
                          z.get(), kl.get(), kl_reduced.get(), ws.ws, nullptr);
  test::expect_bitwise_equal(z.to_host(), later.z, "z after advance_draw_index");
  // The eps, not z: z = mu wherever sigma * eps is below half an ulp of mu (logvar clamped at -30
  // gives sigma = 3e-7), about 1.5% of this case's elements whatever the draw.
  EXPECT_LE(count_equal(r.eps, eps_before), r.mu.size() / 100) << "the draw did not change";
}

// As on the CPU: chunks keyed from first_row draw the rows of one whole draw, for the eps alone
// and inside the forward (z of a chunk = those rows of the whole tensor's z).
TEST(ReparamKlGpu, ChunksFromFirstRowDrawTheRowsOfTheWholeTensor) {
  FUSEDVAE_REQUIRE_GPU();
  Workspace ws;
  const ReparamCase r = philox_case();
  const int dim = r.dim;
  const std::vector<float> whole = gpu_eps(r.batch, dim, kSeed, 2, gpu::kDefaultBlockSize);
  DeviceScalar<uint64_t> draw_index(2);
  DeviceBuffer mu(r.mu), logvar(r.logvar), z(r.mu.size()), kl(r.batch), kl_reduced(1);
  gpu::reparam_kl_forward(mu.get(), logvar.get(), r.batch, dim, RngState{kSeed, draw_index.get()},
                          r.clamp, r.reduction, z.get(), kl.get(), kl_reduced.get(), ws.ws,
                          nullptr);
  const std::vector<float> whole_z = z.to_host();
  for (const int chunk : {1, 3, 16}) {
    for (int first = 0; first < r.batch; first += chunk) {
      const int rows = std::min(chunk, r.batch - first);
      const std::string tag = "chunk " + std::to_string(chunk) + " at row " + std::to_string(first);
      test::expect_bitwise_equal(gpu_eps(rows, dim, kSeed, 2, gpu::kDefaultBlockSize, first),
                                 row_slice(whole, dim, first, rows), tag + ", eps");
      const size_t at = static_cast<size_t>(first) * dim;
      DeviceBuffer chunk_z(static_cast<size_t>(rows) * dim), chunk_kl(rows);
      gpu::reparam_kl_forward(mu.get() + at, logvar.get() + at, rows, dim,
                              RngState{kSeed, draw_index.get(), static_cast<uint64_t>(first)},
                              r.clamp, r.reduction, chunk_z.get(), chunk_kl.get(), kl_reduced.get(),
                              ws.ws, nullptr);
      test::expect_bitwise_equal(chunk_z.to_host(), row_slice(whole_z, dim, first, rows),
                                 tag + ", z");
    }
  }
}

// eps, z and the per-sample KL do not depend on the block size (the batch value may: its tree
// follows the grid).
TEST(ReparamKlGpu, EpsZAndPerSampleKlAreBitwiseIndependentOfBlockSize) {
  FUSEDVAE_REQUIRE_GPU();
  Workspace ws;
  const ReparamCase r = philox_case();
  DeviceScalar<uint64_t> draw_index(11);
  DeviceBuffer mu(r.mu), logvar(r.logvar);
  std::vector<float> first_eps, first_z, first_kl;
  for (const int block_size : {64, 256, 1024}) {
    const std::string tag = "block " + std::to_string(block_size);
    const std::vector<float> eps = gpu_eps(r.batch, r.dim, kSeed, 11, block_size);
    DeviceBuffer z(r.mu.size()), kl(r.batch), kl_reduced(1);
    gpu::reparam_kl_forward(mu.get(), logvar.get(), r.batch, r.dim,
                            RngState{kSeed, draw_index.get()}, r.clamp, r.reduction, z.get(),
                            kl.get(), kl_reduced.get(), ws.ws, nullptr, block_size);
    if (first_eps.empty()) {
      first_eps = eps;
      first_z = z.to_host();
      first_kl = kl.to_host();
      // Every launch gets fresh poisoned outputs: without this, a kernel that wrote nothing would
      // compare poison with poison and pass.
      test::expect_all_written(first_z, "z, " + tag);
      test::expect_all_written(first_kl, "kl_per_sample, " + tag);
      continue;
    }
    test::expect_bitwise_equal(eps, first_eps, "eps, " + tag);
    test::expect_bitwise_equal(z.to_host(), first_z, "z, " + tag);
    test::expect_bitwise_equal(kl.to_host(), first_kl, "kl_per_sample, " + tag);
  }
}

// ---------------------------------------------------------------------------------------------
// Determinism: the same inputs give the same bits, every output, batch reductions included.

// The forward and the backward golden case of one name.
std::pair<ReparamCase, ReparamCase> load_both(const std::string& name) {
  std::pair<ReparamCase, ReparamCase> both;
  bool found[2] = {false, false};
  const char* ops[2] = {"reparam_kl_forward", "reparam_kl_backward"};
  for (int k = 0; k < 2; ++k)
    for (const GoldenCase& c : test::golden_cases(ops[k]))
      if (c.name == name) {
        (k == 0 ? both.first : both.second) = load(c);
        found[k] = true;
      }
  EXPECT_TRUE(found[0] && found[1]) << "golden case " << name << " missing";
  return both;
}

TEST(ReparamKlCpu, RunToRunBitwiseDeterministic) {
  const auto [fwd, bwd] = load_both("b129_d33_sum");
  ASSERT_FALSE(fwd.mu.empty() || bwd.dz.empty());
  expect_same(cpu_forward(fwd), cpu_forward(fwd), "");
  expect_same(cpu_backward(bwd), cpu_backward(bwd), "");
}

TEST(ReparamKlGpu, RunToRunBitwiseDeterministic) {
  FUSEDVAE_REQUIRE_GPU();
  Workspace ws;
  // The large case: 512 blocks race to finish the batch sum, so the last-block election differs
  // from run to run while the order of the additions must not.
  const auto [fwd, bwd] = load_both("b4096_d1024_mean");
  ASSERT_FALSE(fwd.mu.empty() || bwd.dz.empty());
  const ForwardOut first = gpu_forward(fwd, ws.ws, gpu::kDefaultBlockSize);
  const BackwardOut first_bwd = gpu_backward(bwd, gpu::kDefaultBlockSize);
  for (int run = 1; run <= 3; ++run) {
    const std::string tag = ", run " + std::to_string(run);
    expect_same(gpu_forward(fwd, ws.ws, gpu::kDefaultBlockSize), first, tag);
    expect_same(gpu_backward(bwd, gpu::kDefaultBlockSize), first_bwd, tag);
  }
}

// ---------------------------------------------------------------------------------------------
// Finite outputs over the documented input range: any logvar (the clamp), |mu| <= 1e3, |dz| <=
// 1e3, kl_weight in [0, 1], loss_scale up to 65536.

ReparamCase extreme_case() {
  ReparamCase r;
  r.name = "extremes";
  const float big = std::numeric_limits<float>::max();
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> logvars = {-inf,   -big,  -1e30f, -80.0f, -40.0f, -30.0f, -15.0f, 0.0f,
                                      1e-30f, 15.0f, 20.0f,  30.0f,  88.0f,  1e30f,  big,    inf};
  const std::vector<float> mus = {-1e3f, -1.0f, -1e-30f, 0.0f, 1e-30f, 1.0f, 1e3f};
  r.batch = static_cast<int>(mus.size());
  r.dim = static_cast<int>(logvars.size());
  for (const float m : mus)
    for (const float lv : logvars) {
      r.mu.push_back(m);
      r.logvar.push_back(lv);
    }
  const size_t n = r.mu.size();
  r.eps = random_floats(n, 5, -6.7f, 6.7f);  // the Box-Muller range of 32-bit uniforms
  r.dz = random_floats(n, 6, -1e3f, 1e3f);
  r.kl_weight = 1.0f;
  r.loss_scale = 65536.0f;
  r.reduction = BatchReduction::kSum;
  return r;
}

TEST(ReparamKlCpu, OutputsFiniteOverDocumentedRange) {
  const ReparamCase r = extreme_case();
  const ForwardOut f = cpu_forward(r);
  test::expect_all_finite(f.z, "z");
  test::expect_all_finite(f.kl_per_sample, "kl_per_sample");
  test::expect_all_finite(f.kl_reduced, "kl_reduced");
  const BackwardOut b = cpu_backward(r);
  test::expect_all_finite(b.dmu, "dmu");
  test::expect_all_finite(b.dlogvar, "dlogvar");
}

TEST(ReparamKlGpu, OutputsFiniteOverDocumentedRange) {
  FUSEDVAE_REQUIRE_GPU();
  Workspace ws;
  const ReparamCase r = extreme_case();
  const ForwardOut f = gpu_forward(r, ws.ws, gpu::kDefaultBlockSize);
  test::expect_all_finite(f.z, "z");
  test::expect_all_finite(f.kl_per_sample, "kl_per_sample");
  test::expect_all_finite(f.kl_reduced, "kl_reduced");
  const BackwardOut b = gpu_backward(r, gpu::kDefaultBlockSize);
  test::expect_all_finite(b.dmu, "dmu");
  test::expect_all_finite(b.dlogvar, "dlogvar");
}

// ---------------------------------------------------------------------------------------------
// Argument validation (checked before any device work, so the GPU launchers are tested too).

TEST(ReparamKlArguments, NonPositiveBatchOrDimThrows) {
  float buffer[4] = {};
  const float kl_weight = 1.0f;
  uint64_t draw = 0;
  const RngState rng{1, &draw};
  const LogvarClamp clamp;
  const auto mean = BatchReduction::kMean;
  for (const auto [batch, dim] : {std::pair{0, 1}, {1, 0}, {-1, 4}, {4, -3}}) {
    SCOPED_TRACE(std::to_string(batch) + " x " + std::to_string(dim));
    EXPECT_THROW(cpu::reparam_kl_forward(buffer, buffer, batch, dim, rng, clamp, mean, buffer,
                                         buffer, buffer),
                 std::invalid_argument);
    EXPECT_THROW(cpu::reparam_kl_forward_given_eps(buffer, buffer, buffer, batch, dim, clamp, mean,
                                                   buffer, buffer, buffer),
                 std::invalid_argument);
    EXPECT_THROW(cpu::reparam_kl_backward(buffer, buffer, buffer, batch, dim, rng, &kl_weight, 1.0f,
                                          clamp, mean, buffer, buffer),
                 std::invalid_argument);
    EXPECT_THROW(cpu::reparam_kl_backward_given_eps(buffer, buffer, buffer, buffer, batch, dim,
                                                    &kl_weight, 1.0f, clamp, mean, buffer, buffer),
                 std::invalid_argument);
    EXPECT_THROW(cpu::draw_normal_eps(batch, dim, rng, buffer), std::invalid_argument);
    EXPECT_THROW(gpu::reparam_kl_forward(buffer, buffer, batch, dim, rng, clamp, mean, buffer,
                                         buffer, buffer, ReductionWorkspace{}, nullptr),
                 std::invalid_argument);
    EXPECT_THROW(
        gpu::reparam_kl_forward_given_eps(buffer, buffer, buffer, batch, dim, clamp, mean, buffer,
                                          buffer, buffer, ReductionWorkspace{}, nullptr),
        std::invalid_argument);
    EXPECT_THROW(gpu::reparam_kl_backward(buffer, buffer, buffer, batch, dim, rng, &kl_weight, 1.0f,
                                          clamp, mean, buffer, buffer, nullptr),
                 std::invalid_argument);
    EXPECT_THROW(
        gpu::reparam_kl_backward_given_eps(buffer, buffer, buffer, buffer, batch, dim, &kl_weight,
                                           1.0f, clamp, mean, buffer, buffer, nullptr),
        std::invalid_argument);
    EXPECT_THROW(gpu::draw_normal_eps(batch, dim, rng, buffer, nullptr), std::invalid_argument);
  }
}

TEST(ReparamKlArguments, BadBlockSizeThrows) {
  float buffer[4] = {};
  uint64_t draw = 0;
  for (const int block_size : {0, 16, 48, 2048})
    EXPECT_THROW(gpu::draw_normal_eps(1, 4, RngState{1, &draw}, buffer, nullptr, block_size),
                 std::invalid_argument)
        << block_size;
}

TEST(ReparamKlArguments, BadClampThrows) {
  float buffer[4] = {};
  const float kl_weight = 1.0f;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const auto sum = BatchReduction::kSum;
  for (const LogvarClamp clamp : {LogvarClamp{5.0f, -5.0f}, LogvarClamp{nan, 20.0f},
                                  LogvarClamp{-30.0f, nan}, LogvarClamp{-inf, 20.0f}}) {
    SCOPED_TRACE(std::to_string(clamp.min) + ", " + std::to_string(clamp.max));
    EXPECT_THROW(cpu::reparam_kl_forward_given_eps(buffer, buffer, buffer, 1, 4, clamp, sum, buffer,
                                                   buffer, buffer),
                 std::invalid_argument);
    EXPECT_THROW(cpu::reparam_kl_backward_given_eps(buffer, buffer, buffer, buffer, 1, 4,
                                                    &kl_weight, 1.0f, clamp, sum, buffer, buffer),
                 std::invalid_argument);
    EXPECT_THROW(gpu::reparam_kl_forward_given_eps(buffer, buffer, buffer, 1, 4, clamp, sum, buffer,
                                                   buffer, buffer, ReductionWorkspace{}, nullptr),
                 std::invalid_argument);
    EXPECT_THROW(
        gpu::reparam_kl_backward_given_eps(buffer, buffer, buffer, buffer, 1, 4, &kl_weight, 1.0f,
                                           clamp, sum, buffer, buffer, nullptr),
        std::invalid_argument);
  }
}

}  // namespace
}  // namespace fusedvae
