// @brief The GRU's kernels (kernels/gru.h) against a long-double reference of the cell and of a
// whole direction's sequence: the per-step pointwise forward and backward and the persistent
// forward, with poisoned outputs (every element written, nothing outside the slice), bitwise
// determinism and the persistent kernels' independence of their layout (rows per block, blocks per
// cluster). GruKernelsGpu.* also
// runs on the CPU SIMT harness (tests/simt/); the whole op (cuBLASLt) is GPU-only.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "host/ops/gru_cpu.h"
#include "host/train/gpu/gru_gpu.h"
#include "kernels/cuda_check.h"
#include "kernels/gru.h"
#include "tests/support/test_support.h"

namespace fusedvae {
namespace {

using test::DeviceBuffer;
using test::Tolerance;
using Real = long double;
using test::random_floats;

constexpr double kU = test::kFloat32Roundoff;

// Every `every`-th element pushed to +-`big`: saturated gates (sigmoid at 0 or 1, tanh at +-1).
void saturate(std::vector<float>* v, size_t every, float big) {
  for (size_t i = 0; i < v->size(); i += every) (*v)[i] = (i / every) % 2 == 0 ? big : -big;
}

Real sigmoid_ref(Real x) {
  return 1.0L / (1.0L + std::exp(-x));
}

struct CellRef {
  Real r, z, n, gh_n, h_next;
};

CellRef cell_forward_ref(Real gi_r, Real gi_z, Real gi_n, Real gh_r, Real gh_z, Real gh_n, Real h) {
  CellRef c;
  c.r = sigmoid_ref(gi_r + gh_r);
  c.z = sigmoid_ref(gi_z + gh_z);
  c.n = std::tanh(gi_n + c.r * gh_n);
  c.gh_n = gh_n;
  c.h_next = (1.0L - c.z) * c.n + c.z * h;
  return c;
}

std::vector<double> to_double(const std::vector<Real>& v) {
  return std::vector<double>(v.begin(), v.end());
}

// The elements [offset + b * stride, + width) of a strided host copy, row by row.
std::vector<float> gather_rows(const std::vector<float>& v, size_t offset, size_t stride, int rows,
                               int width) {
  std::vector<float> out;
  for (int b = 0; b < rows; ++b)
    for (int j = 0; j < width; ++j) out.push_back(v[offset + b * stride + j]);
  return out;
}

// Fails unless every element outside the strided slice still holds the poison.
void expect_untouched_outside(const std::vector<float>& v, size_t offset, size_t stride, int rows,
                              int width, const std::string& name) {
  std::vector<bool> inside(v.size(), false);
  for (int b = 0; b < rows; ++b)
    for (int j = 0; j < width; ++j) inside[offset + b * stride + j] = true;
  for (size_t i = 0; i < v.size(); ++i)
    if (!inside[i] && std::memcmp(&v[i], &test::kPoisonBits, sizeof(float)) != 0) {
      ADD_FAILURE() << name << ": element " << i << " outside the step's slice was written";
      return;
    }
}

// ---------------------------------------------------------------------------------------------
// Tolerances (float32 against long double, each justified by the operations that formed it)

// A gate's pre-activation is gi + b_i + gh + b_h, up to 3 roundings of terms of magnitude up to M
// (M = 8 in these cases): an absolute error up to 3 * 8 * u, times the activation's slope (<= 1),
// plus the device's expf/tanhf (<= 2 ulp) and the sigmoid's add and divide: 32 u absolute (values
// are O(1)) and 8 u relative covers r, z, n; h' = n + z (h - n) adds 3 roundings of O(1) terms.
constexpr Tolerance kCellTol{32 * kU, 8 * kU};
// The backward's outputs are products of up to five O(1) factors and one difference (h - n, 1 - z,
// 1 - n^2): at most 8 roundings of O(1) values, plus the d_out + dh_carry sum.
constexpr Tolerance kCellGradTol{16 * kU, 8 * kU};

// Whether the current device launches thread-block clusters (sm_90 and later, and the SIMT
// harness's emulated device); without them the cluster layouts are not tried.
bool device_has_clusters() {
  int device = 0, clusters = 0;
  FUSEDVAE_CUDA_CHECK(cudaGetDevice(&device));
  FUSEDVAE_CUDA_CHECK(cudaDeviceGetAttribute(&clusters, cudaDevAttrClusterLaunch, device));
  return clusters != 0;
}

// A whole sequence: each step's gh is a dot product of H terms (error <= H u sum |w h|, with
// |w| <= 1/sqrt(H), |h| <= 1: sqrt(H) u), and the error carried in h is passed on through dh'/dh,
// whose size is below 1 for these weights, so errors add up over the steps at most linearly.
Tolerance sequence_tol(int steps, int hidden) {
  return {(steps + 1) * (32 + 2 * std::sqrt(static_cast<double>(hidden))) * kU, 8 * kU};
}

// ---------------------------------------------------------------------------------------------
// Pointwise forward

struct StepCase {
  int batch, steps, hidden, t, dirs, dir;
};

void run_pointwise_forward(const StepCase& s, uint32_t seed) {
  SCOPED_TRACE("B=" + std::to_string(s.batch) + " T=" + std::to_string(s.steps) +
               " H=" + std::to_string(s.hidden) + " t=" + std::to_string(s.t) +
               " dirs=" + std::to_string(s.dirs));
  const int B = s.batch, T = s.steps, H = s.hidden;
  std::vector<float> gi = random_floats(static_cast<size_t>(B) * T * 3 * H, -3.0f, 3.0f, seed);
  std::vector<float> gh = random_floats(static_cast<size_t>(B) * 3 * H, -3.0f, 3.0f, seed + 1);
  saturate(&gi, 7, 40.0f);
  saturate(&gh, 11, 40.0f);
  const std::vector<float> b_ih = random_floats(3 * H, -1.0f, 1.0f, seed + 2);
  const std::vector<float> b_hh = random_floats(3 * H, -1.0f, 1.0f, seed + 3);
  const std::vector<float> h_prev =
      random_floats(static_cast<size_t>(B) * H, -1.0f, 1.0f, seed + 4);

  DeviceBuffer d_gi(gi), d_gh(gh), d_bih(b_ih), d_bhh(b_hh), d_hprev(h_prev);
  DeviceBuffer d_hnext(static_cast<size_t>(B) * H), d_gates(static_cast<size_t>(B) * 4 * H);
  DeviceBuffer d_out(static_cast<size_t>(B) * T * s.dirs * H);
  const size_t gi_stride = static_cast<size_t>(T) * 3 * H;
  const size_t out_stride = static_cast<size_t>(T) * s.dirs * H;
  const size_t out_offset = static_cast<size_t>(s.t) * s.dirs * H + static_cast<size_t>(s.dir) * H;
  auto run = [&] {
    gpu::gru_pointwise_forward(d_gi.get() + static_cast<size_t>(s.t) * 3 * H, gi_stride, d_gh.get(),
                               d_bih.get(), d_bhh.get(), d_hprev.get(), B, H, d_hnext.get(),
                               d_out.get() + out_offset, out_stride, d_gates.get(), nullptr);
  };
  run();
  const std::vector<float> h_next = d_hnext.to_host(), gates = d_gates.to_host();
  const std::vector<float> out_all = d_out.to_host();
  test::expect_all_written(h_next, "h_next");
  test::expect_all_written(gates, "gates");
  expect_untouched_outside(out_all, out_offset, out_stride, B, H, "out");
  const std::vector<float> out = gather_rows(out_all, out_offset, out_stride, B, H);

  std::vector<Real> ref_h(static_cast<size_t>(B) * H), ref_gates(static_cast<size_t>(B) * 4 * H);
  for (int b = 0; b < B; ++b)
    for (int j = 0; j < H; ++j) {
      const size_t g0 = b * gi_stride + static_cast<size_t>(s.t) * 3 * H;
      const size_t h0 = static_cast<size_t>(b) * 3 * H;
      auto in = [&](int gate) { return Real(gi[g0 + gate * H + j]) + Real(b_ih[gate * H + j]); };
      auto rec = [&](int gate) { return Real(gh[h0 + gate * H + j]) + Real(b_hh[gate * H + j]); };
      const CellRef c = cell_forward_ref(in(0), in(1), in(2), rec(0), rec(1), rec(2),
                                         h_prev[static_cast<size_t>(b) * H + j]);
      ref_h[static_cast<size_t>(b) * H + j] = c.h_next;
      Real* g = &ref_gates[static_cast<size_t>(b) * 4 * H];
      g[j] = c.r, g[H + j] = c.z, g[2 * H + j] = c.n, g[3 * H + j] = c.gh_n;
    }
  test::expect_close("h_next", h_next, to_double(ref_h), nullptr, kCellTol);
  test::expect_close("out", out, to_double(ref_h), nullptr, kCellTol);
  test::expect_close("gates", gates, to_double(ref_gates), nullptr, kCellTol);

  // Run to run: bitwise the same.
  d_hnext.poison();
  d_gates.poison();
  run();
  test::expect_bitwise_equal(d_hnext.to_host(), h_next, "h_next (second run)");
  test::expect_bitwise_equal(d_gates.to_host(), gates, "gates (second run)");
}

TEST(GruKernelsGpu, PointwiseForwardMatchesReference) {
  FUSEDVAE_REQUIRE_GPU();
  run_pointwise_forward({1, 1, 1, 0, 1, 0}, 1);    // B = T = H = 1
  run_pointwise_forward({3, 4, 7, 2, 2, 1}, 2);    // odd H, a middle step, reverse half
  run_pointwise_forward({5, 2, 33, 1, 2, 0}, 3);   // H past a warp
  run_pointwise_forward({64, 3, 40, 0, 1, 0}, 4);  // several blocks
}

// ---------------------------------------------------------------------------------------------
// Pointwise backward

void run_pointwise_backward(const StepCase& s, uint32_t seed) {
  SCOPED_TRACE("B=" + std::to_string(s.batch) + " T=" + std::to_string(s.steps) +
               " H=" + std::to_string(s.hidden) + " t=" + std::to_string(s.t));
  const int B = s.batch, T = s.steps, H = s.hidden;
  const size_t BH = static_cast<size_t>(B) * H;
  // Gates as a forward makes them: r, z in [0, 1] (the ends included), n in [-1, 1].
  std::vector<float> gates(BH * 4);
  {
    const std::vector<float> pre = random_floats(BH * 4, -4.0f, 4.0f, seed);
    for (size_t i = 0; i < BH * 4; ++i) {
      const size_t j = i % (4 * H);
      const float x = i % 13 == 0 ? (i % 26 == 0 ? 60.0f : -60.0f) : pre[i];
      if (j < 2 * static_cast<size_t>(H))
        gates[i] = static_cast<float>(sigmoid_ref(x));
      else if (j < 3 * static_cast<size_t>(H))
        gates[i] = std::tanh(x);
      else
        gates[i] = pre[i];
    }
  }
  const std::vector<float> h_prev = random_floats(BH, -1.0f, 1.0f, seed + 1);
  const std::vector<float> d_out =
      random_floats(static_cast<size_t>(B) * T * s.dirs * H, -1, 1, seed + 2);
  const std::vector<float> carry_in = random_floats(BH, -1.0f, 1.0f, seed + 3);

  DeviceBuffer g_gates(gates), g_hprev(h_prev), g_dout(d_out), g_carry(carry_in);
  DeviceBuffer g_dgi(static_cast<size_t>(B) * T * 3 * H), g_dgh(BH * 3);
  const size_t d_out_stride = static_cast<size_t>(T) * s.dirs * H;
  const size_t d_out_offset =
      static_cast<size_t>(s.t) * s.dirs * H + static_cast<size_t>(s.dir) * H;
  const size_t gi_stride = static_cast<size_t>(T) * 3 * H;
  const size_t gi_offset = static_cast<size_t>(s.t) * 3 * H;
  gpu::gru_pointwise_backward(g_gates.get(), g_hprev.get(), g_dout.get() + d_out_offset,
                              d_out_stride, B, H, g_carry.get(), g_dgi.get() + gi_offset, gi_stride,
                              g_dgh.get(), nullptr);
  const std::vector<float> dgi_all = g_dgi.to_host(), dgh = g_dgh.to_host();
  const std::vector<float> carry = g_carry.to_host();
  expect_untouched_outside(dgi_all, gi_offset, gi_stride, B, 3 * H, "d_gi");
  test::expect_all_written(dgh, "d_gh");
  const std::vector<float> dgi = gather_rows(dgi_all, gi_offset, gi_stride, B, 3 * H);

  std::vector<Real> ref_dgi(BH * 3), ref_dgh(BH * 3), ref_carry(BH);
  for (int b = 0; b < B; ++b)
    for (int j = 0; j < H; ++j) {
      const float* g = &gates[static_cast<size_t>(b) * 4 * H];
      const Real r = g[j], z = g[H + j], n = g[2 * H + j], gh_n = g[3 * H + j];
      const size_t i = static_cast<size_t>(b) * H + j;
      const Real h = h_prev[i];
      const Real dh = Real(d_out[d_out_offset + b * d_out_stride + j]) + Real(carry_in[i]);
      const Real dn_pre = dh * (1 - z) * (1 - n * n);
      const Real dr_pre = dn_pre * gh_n * r * (1 - r);
      const Real dz_pre = dh * (h - n) * z * (1 - z);
      Real* di = &ref_dgi[static_cast<size_t>(b) * 3 * H];
      Real* dg = &ref_dgh[static_cast<size_t>(b) * 3 * H];
      di[j] = dr_pre, di[H + j] = dz_pre, di[2 * H + j] = dn_pre;
      dg[j] = dr_pre, dg[H + j] = dz_pre, dg[2 * H + j] = dn_pre * r;
      ref_carry[i] = dh * z;
    }
  test::expect_close("d_gi", dgi, to_double(ref_dgi), nullptr, kCellGradTol);
  test::expect_close("d_gh", dgh, to_double(ref_dgh), nullptr, kCellGradTol);
  test::expect_close("dh_direct", carry, to_double(ref_carry), nullptr, kCellGradTol);
}

TEST(GruKernelsGpu, PointwiseBackwardMatchesReference) {
  FUSEDVAE_REQUIRE_GPU();
  run_pointwise_backward({1, 1, 1, 0, 1, 0}, 11);
  run_pointwise_backward({3, 5, 7, 4, 2, 1}, 12);
  run_pointwise_backward({64, 2, 40, 1, 1, 0}, 13);
}

// ---------------------------------------------------------------------------------------------
// Persistent forward against a long-double sequence

struct DirectionRef {
  std::vector<Real> hs, gates, out;  // hs [T+1, B, H], gates [T, B, 4H], out [B, T, H]
};

DirectionRef sequence_ref(const std::vector<float>& gi, const std::vector<float>& w_hh,
                          const std::vector<float>& b_ih, const std::vector<float>& b_hh,
                          const std::vector<float>* h0, int B, int T, int H, bool reverse) {
  DirectionRef r;
  const size_t BH = static_cast<size_t>(B) * H;
  r.hs.assign((T + 1) * BH, 0.0L);
  r.gates.assign(static_cast<size_t>(T) * BH * 4, 0.0L);
  r.out.assign(static_cast<size_t>(T) * BH, 0.0L);
  if (h0 != nullptr)
    for (size_t i = 0; i < BH; ++i) r.hs[i] = (*h0)[i];
  for (int s = 0; s < T; ++s) {
    const int t = reverse ? T - 1 - s : s;
    for (int b = 0; b < B; ++b) {
      const Real* h = &r.hs[s * BH + static_cast<size_t>(b) * H];
      for (int j = 0; j < H; ++j) {
        Real gh[3];
        for (int g = 0; g < 3; ++g) {
          Real acc = b_hh[g * H + j];
          for (int k = 0; k < H; ++k)
            acc += Real(w_hh[(static_cast<size_t>(g) * H + j) * H + k]) * h[k];
          gh[g] = acc;
        }
        const float* gi_row = &gi[(static_cast<size_t>(b) * T + t) * 3 * H];
        const CellRef c =
            cell_forward_ref(Real(gi_row[j]) + b_ih[j], Real(gi_row[H + j]) + b_ih[H + j],
                             Real(gi_row[2 * H + j]) + b_ih[2 * H + j], gh[0], gh[1], gh[2], h[j]);
        r.hs[(s + 1) * BH + static_cast<size_t>(b) * H + j] = c.h_next;
        Real* g = &r.gates[(static_cast<size_t>(s) * B + b) * 4 * H];
        g[j] = c.r, g[H + j] = c.z, g[2 * H + j] = c.n, g[3 * H + j] = c.gh_n;
        r.out[(static_cast<size_t>(b) * T + t) * H + j] = c.h_next;
      }
    }
  }
  return r;
}

struct PersistentCase {
  int batch, steps, hidden, dirs;
  bool with_h0;
};

struct PersistentResult {
  std::vector<float> hs[2], gates[2], out;
};

PersistentResult run_persistent(const PersistentCase& p, const std::vector<float> (&gi)[2],
                                const std::vector<float> (&w_hh)[2],
                                const std::vector<float> (&b_ih)[2],
                                const std::vector<float> (&b_hh)[2],
                                const std::vector<float> (&h0)[2],
                                gpu::GruPersistentLayout layout) {
  const int B = p.batch, T = p.steps, H = p.hidden;
  std::vector<std::unique_ptr<DeviceBuffer>> keep;
  auto dev = [&](const std::vector<float>& v) {
    keep.push_back(std::make_unique<DeviceBuffer>(v));
    return keep.back()->get();
  };
  auto fresh = [&](size_t n) {
    keep.push_back(std::make_unique<DeviceBuffer>(n));
    return keep.back().get();
  };
  gpu::GruDirectionParams params[2];
  DeviceBuffer* hs[2];
  DeviceBuffer* gates[2];
  for (int d = 0; d < p.dirs; ++d) {
    params[d].gi = dev(gi[d]);
    params[d].w_hh = dev(w_hh[d]);
    params[d].b_ih = dev(b_ih[d]);
    params[d].b_hh = dev(b_hh[d]);
    params[d].h0 = p.with_h0 ? dev(h0[d]) : nullptr;
    hs[d] = fresh(static_cast<size_t>(T + 1) * B * H);
    gates[d] = fresh(static_cast<size_t>(T) * B * 4 * H);
    params[d].hs = hs[d]->get();
    params[d].gates = gates[d]->get();
  }
  DeviceBuffer out(static_cast<size_t>(B) * T * p.dirs * H);
  gpu::gru_persistent_forward(params, p.dirs, B, T, H, layout, out.get(), nullptr);
  PersistentResult r;
  for (int d = 0; d < p.dirs; ++d) r.hs[d] = hs[d]->to_host(), r.gates[d] = gates[d]->to_host();
  r.out = out.to_host();
  return r;
}

void check_persistent(const PersistentCase& p, uint32_t seed) {
  SCOPED_TRACE("B=" + std::to_string(p.batch) + " T=" + std::to_string(p.steps) +
               " H=" + std::to_string(p.hidden) + " dirs=" + std::to_string(p.dirs));
  const int B = p.batch, T = p.steps, H = p.hidden;
  const float bound = 1.0f / std::sqrt(static_cast<float>(H));  // PyTorch's initialisation
  std::vector<float> gi[2], w_hh[2], b_ih[2], b_hh[2], h0[2];
  for (int d = 0; d < 2; ++d) {
    const uint32_t sd = seed + 10 * d;
    gi[d] = random_floats(static_cast<size_t>(B) * T * 3 * H, -2.0f, 2.0f, sd);
    saturate(&gi[d], 17, 30.0f);
    w_hh[d] = random_floats(static_cast<size_t>(3) * H * H, -bound, bound, sd + 1);
    b_ih[d] = random_floats(3 * H, -bound, bound, sd + 2);
    b_hh[d] = random_floats(3 * H, -bound, bound, sd + 3);
    h0[d] = random_floats(static_cast<size_t>(B) * H, -1.0f, 1.0f, sd + 4);
  }
  const int rows =
      B < 3 ? B : 3;  // 3 rows per block: a partial last block when 3 does not divide B
  const PersistentResult got = run_persistent(p, gi, w_hh, b_ih, b_hh, h0, {rows, 1});
  const Tolerance tol = sequence_tol(T, H);
  for (int d = 0; d < p.dirs; ++d) {
    const std::string tag = d == 0 ? " (forward)" : " (reverse)";
    const DirectionRef ref = sequence_ref(gi[d], w_hh[d], b_ih[d], b_hh[d],
                                          p.with_h0 ? &h0[d] : nullptr, B, T, H, d == 1);
    test::expect_all_written(got.hs[d], "hs" + tag);
    test::expect_all_written(got.gates[d], "gates" + tag);
    test::expect_close("hs" + tag, got.hs[d], to_double(ref.hs), nullptr, tol);
    test::expect_close("gates" + tag, got.gates[d], to_double(ref.gates), nullptr, tol);
    std::vector<float> out_d;
    for (int b = 0; b < B; ++b)
      for (int t = 0; t < T; ++t)
        for (int j = 0; j < H; ++j)
          out_d.push_back(got.out[(static_cast<size_t>(b) * T + t) * p.dirs * H + d * H + j]);
    test::expect_all_written(out_d, "out" + tag);
    test::expect_close("out" + tag, out_d, to_double(ref.out), nullptr, tol);
  }

  // The rows per block and the blocks per cluster change the grid, not the sums: bitwise the same
  // results, run to run too. Clusters of 3 and 8 leave the last blocks fewer units, or none, at
  // most of these H.
  const gpu::GruPersistentLayout others[] = {
      {1, 1}, {B < 8 ? B : 8, 1}, {rows, 2}, {rows, 3}, {1, 8}};
  for (const gpu::GruPersistentLayout other : others) {
    if (other.cluster_blocks > 1 && !device_has_clusters()) continue;
    const PersistentResult again = run_persistent(p, gi, w_hh, b_ih, b_hh, h0, other);
    const std::string tag = " (rows per block " + std::to_string(other.rows_per_block) +
                            ", blocks per cluster " + std::to_string(other.cluster_blocks) + ")";
    test::expect_bitwise_equal(again.out, got.out, "out" + tag);
    for (int d = 0; d < p.dirs; ++d) {
      test::expect_bitwise_equal(again.hs[d], got.hs[d], "hs" + tag);
      test::expect_bitwise_equal(again.gates[d], got.gates[d], "gates" + tag);
    }
  }
}

TEST(GruKernelsGpu, PersistentForwardMatchesReference) {
  FUSEDVAE_REQUIRE_GPU();
  check_persistent({1, 1, 1, 1, false}, 21);   // B = T = H = 1, zero h0
  check_persistent({5, 7, 13, 2, true}, 22);   // odd H, both directions, a partial block
  check_persistent({4, 40, 9, 2, false}, 23);  // longer T: drift stays within the linear bound
}

// 3 * 80 * 80 * 4 + 80 * 4 = 77 KB: past the default 48 KB, so the launch must opt in (the SIMT
// harness enforces the 48 KB default and the 227 KB opt-in limit as H100/H200 do).
TEST(GruKernelsGpu, PersistentForwardOptsIntoLargeSharedMemory) {
  FUSEDVAE_REQUIRE_GPU();
  EXPECT_GT(gpu::gru_persistent_shared_bytes(80, {1, 1}), size_t{48 * 1024});
  check_persistent({2, 2, 80, 2, true}, 31);
}

TEST(GruKernelsGpu, PersistentFitsOnlyWhatTheDeviceHolds) {
  FUSEDVAE_REQUIRE_GPU();
  const size_t h100 = 227 * 1024, a100 = 163 * 1024;
  EXPECT_TRUE(gpu::gru_persistent_fits(128, {8, 1}, h100));
  EXPECT_FALSE(gpu::gru_persistent_fits(128, {8, 1}, a100));
  EXPECT_TRUE(gpu::gru_persistent_fits(112, {4, 1}, a100));
  EXPECT_FALSE(gpu::gru_persistent_fits(256, {1, 1}, h100));
  EXPECT_FALSE(gpu::gru_persistent_fits(256, {1, 2}, h100));
  EXPECT_TRUE(gpu::gru_persistent_fits(256, {8, 4}, h100));  // 192 KB of W_hh + 16 KB of states
  EXPECT_FALSE(gpu::gru_persistent_backward_fits(256, {8, 4}, h100));  // + 48 KB of d_gh
  EXPECT_TRUE(gpu::gru_persistent_backward_fits(256, {4, 4}, h100));
  EXPECT_FALSE(gpu::gru_persistent_fits(64, {gpu::kGruPersistentMaxRows + 1, 1}, h100));
  EXPECT_FALSE(gpu::gru_persistent_fits(64, {1, gpu::kGruMaxClusterBlocks + 1}, h100));
  EXPECT_FALSE(gpu::gru_persistent_fits(512, {1, 1}, size_t{1} << 30));  // 512 threads a block
  gpu::GruDirectionParams none[1];
  EXPECT_THROW(gpu::gru_persistent_forward(none, 1, 2, 3, 4, {0, 1}, nullptr, nullptr),
               std::invalid_argument);
  EXPECT_THROW(gpu::gru_persistent_forward(none, 1, 2, 3, 4, {1, 9}, nullptr, nullptr),
               std::invalid_argument);
}

// DyAD's shapes (B = 128, both directions) on H100 (132 SMs, 227 KB, clusters) and A100 (108 SMs,
// 163 KB, no clusters): one block per row group while W_hh fits (H <= 116 on A100), a cluster of 4
// at H = 256 on H100 (nothing on A100), nothing at H = 1024; rows for one block per SM where
// shared memory allows.
TEST(GruKernelsGpu, PlannerTakesTheFewestClusterBlocksThatFit) {
  FUSEDVAE_REQUIRE_GPU();
  const gpu::GruPersistentDevice h100{132, 227 * 1024, gpu::kGruMaxClusterBlocks},
      a100{108, 163 * 1024, 1};
  auto plan = [](bool backward, int hidden, const gpu::GruPersistentDevice& device) {
    const gpu::GruPersistentLayout l = gpu::plan_gru_persistent(backward, hidden, 128, 2, device);
    return std::pair<int, int>{l.rows_per_block, l.cluster_blocks};
  };
  using P = std::pair<int, int>;
  EXPECT_EQ(plan(false, 64, h100), P(2, 1));  // 256 row groups over 132 SMs
  EXPECT_EQ(plan(true, 128, h100), P(2, 1));
  EXPECT_EQ(plan(false, 256, h100), P(8, 4));  // 32 x 4 blocks
  EXPECT_EQ(plan(true, 256, h100), P(5, 4));   // 8 rows' d_gh would not fit beside W_hh's slice
  EXPECT_EQ(plan(false, 1024, h100), P(0, 1));
  EXPECT_EQ(plan(false, 112, a100), P(3, 1));  // 256 row groups over 108 SMs
  EXPECT_EQ(plan(true, 112, a100), P(3, 1));
  EXPECT_EQ(plan(false, 128, a100), P(0, 1));  // 192 KB of W_hh
  EXPECT_EQ(plan(false, 256, a100), P(0, 1));
  // Asked-for layouts are taken as they are, or not at all.
  EXPECT_EQ(gpu::plan_gru_persistent(false, 64, 128, 2, h100, 3, 2).cluster_blocks, 2);
  EXPECT_EQ(gpu::plan_gru_persistent(false, 256, 128, 2, h100, 8, 2).rows_per_block, 0);
}

// The layouts the op plans are ones the device can hold, and a layout it cannot hold falls back to
// the per-step path: 8 blocks of 219 KB a cluster (one block per SM), which the SIMT harness's
// emulated device (4 SMs of 228 KB) cannot hold at all, and an H100 (GPCs of 16 to 18 SMs) can.
TEST(GruKernelsGpu, PlannedClustersAreResidentOnTheDevice) {
  FUSEDVAE_REQUIRE_GPU();
  if (!device_has_clusters())
    GTEST_SKIP() << "this device has no thread-block clusters (sm_90 and later)";
  for (const bool backward : {false, true}) {
    gpu::GruGpuOptions options;
    options.reference_products = true;
    const gpu::GruGpu gru(gpu::GruShape{3, 3, 2, 256, 1, true}, options);
    const gpu::GruPersistentLayout l =
        backward ? gru.persistent_backward_layout() : gru.persistent_layout();
    ASSERT_GT(l.rows_per_block, 0) << backward;
    EXPECT_EQ(l.cluster_blocks, 4) << backward;
    EXPECT_GE(gpu::gru_persistent_resident_clusters(backward, 256, l), 1) << backward;
  }
  const int resident = gpu::gru_persistent_resident_clusters(false, 384, {1, 8}),
            resident_backward = gpu::gru_persistent_resident_clusters(true, 384, {1, 8});
#if defined(FUSEDVAE_SIMT)
  EXPECT_EQ(resident, 0);  // so that the fallback below runs in every ctest
  EXPECT_EQ(resident_backward, 0);
#endif
  gpu::GruGpuOptions eight;
  eight.reference_products = true;
  eight.persistent_rows = 1;
  eight.persistent_cluster_blocks = 8;
  const gpu::GruGpu gru(gpu::GruShape{1, 2, 2, 384, 1, false}, eight);
  EXPECT_EQ(gru.persistent(), resident > 0);
  EXPECT_EQ(gru.persistent_backward(), resident_backward > 0);
}

// ---------------------------------------------------------------------------------------------
// The whole op against a long-double GRU (forward and backward through time, every layer and
// direction), written here from nn.GRU's equations independently of kernels/gru_math.cuh.

using gpu::GruShape;

struct GruRef {
  std::vector<Real> output, h_n, d_x, d_h0, d_params;
};

GruRef gru_ref(const GruShape& sh, const std::vector<float>& params, const std::vector<float>& x,
               const std::vector<float>* h0, const std::vector<float>& d_output,
               const std::vector<float>* d_h_n) {
  const int B = sh.batch, T = sh.steps, H = sh.hidden, dirs = sh.directions(), L = sh.layers;
  const size_t BH = static_cast<size_t>(B) * H;
  const int F = dirs * H;
  GruRef r;
  r.h_n.assign(static_cast<size_t>(L) * dirs * BH, 0);
  r.d_h0.assign(r.h_n.size(), 0);
  r.d_params.assign(params.size(), 0);
  // Per layer: its input sequence; per layer and direction: hs [T+1][B][H] and gates [T][B][4].
  std::vector<std::vector<Real>> inputs(L + 1);
  inputs[0].assign(x.begin(), x.end());
  std::vector<std::vector<Real>> hs(L * dirs), gates(L * dirs);
  for (int l = 0; l < L; ++l) {
    const int in = sh.layer_input(l);
    inputs[l + 1].assign(static_cast<size_t>(B) * T * F, 0);
    for (int d = 0; d < dirs; ++d) {
      const gpu::GruTensorOffsets o = gpu::gru_param_offsets(sh, l, d);
      const float* w_ih = &params[o.weight_ih];
      const float* w_hh = &params[o.weight_hh];
      const float* b_ih = &params[o.bias_ih];
      const float* b_hh = &params[o.bias_hh];
      std::vector<Real>& h = hs[l * dirs + d];
      std::vector<Real>& g = gates[l * dirs + d];
      h.assign((T + 1) * BH, 0);
      g.assign(static_cast<size_t>(T) * BH * 4, 0);
      if (h0 != nullptr)
        for (size_t i = 0; i < BH; ++i) h[i] = (*h0)[(l * dirs + d) * BH + i];
      for (int s = 0; s < T; ++s) {
        const int t = d == 1 ? T - 1 - s : s;
        for (int b = 0; b < B; ++b) {
          const Real* xt = &inputs[l][(static_cast<size_t>(b) * T + t) * in];
          const Real* hp = &h[s * BH + static_cast<size_t>(b) * H];
          for (int j = 0; j < H; ++j) {
            Real gi[3], gh[3];
            for (int q = 0; q < 3; ++q) {
              const int row = q * H + j;
              gi[q] = b_ih[row];
              for (int i = 0; i < in; ++i)
                gi[q] += Real(w_ih[static_cast<size_t>(row) * in + i]) * xt[i];
              gh[q] = b_hh[row];
              for (int k = 0; k < H; ++k)
                gh[q] += Real(w_hh[static_cast<size_t>(row) * H + k]) * hp[k];
            }
            const CellRef c = cell_forward_ref(gi[0], gi[1], gi[2], gh[0], gh[1], gh[2], hp[j]);
            h[(s + 1) * BH + static_cast<size_t>(b) * H + j] = c.h_next;
            Real* gg = &g[((static_cast<size_t>(s) * B + b) * H + j) * 4];
            gg[0] = c.r, gg[1] = c.z, gg[2] = c.n, gg[3] = c.gh_n;
            inputs[l + 1][(static_cast<size_t>(b) * T + t) * F + d * H + j] = c.h_next;
          }
        }
      }
      for (size_t i = 0; i < BH; ++i) r.h_n[(l * dirs + d) * BH + i] = h[T * BH + i];
    }
  }
  r.output = inputs[L];

  std::vector<Real> dy(d_output.begin(), d_output.end());
  for (int l = L - 1; l >= 0; --l) {
    const int in = sh.layer_input(l);
    std::vector<Real> dx(static_cast<size_t>(B) * T * in, 0);
    for (int d = 0; d < dirs; ++d) {
      const gpu::GruTensorOffsets o = gpu::gru_param_offsets(sh, l, d);
      const float* w_ih = &params[o.weight_ih];
      const float* w_hh = &params[o.weight_hh];
      const std::vector<Real>& h = hs[l * dirs + d];
      const std::vector<Real>& g = gates[l * dirs + d];
      std::vector<Real> dh(BH, 0);
      if (d_h_n != nullptr)
        for (size_t i = 0; i < BH; ++i) dh[i] = (*d_h_n)[(l * dirs + d) * BH + i];
      for (int s = T - 1; s >= 0; --s) {
        const int t = d == 1 ? T - 1 - s : s;
        std::vector<Real> dh_prev(BH, 0);
        for (int b = 0; b < B; ++b) {
          const Real* xt = &inputs[l][(static_cast<size_t>(b) * T + t) * in];
          const Real* hp = &h[s * BH + static_cast<size_t>(b) * H];
          for (int j = 0; j < H; ++j) {
            const Real* gg = &g[((static_cast<size_t>(s) * B + b) * H + j) * 4];
            const Real rr = gg[0], z = gg[1], n = gg[2], gh_n = gg[3];
            const size_t i = static_cast<size_t>(b) * H + j;
            const Real dht = dy[(static_cast<size_t>(b) * T + t) * F + d * H + j] + dh[i];
            const Real dn = dht * (1 - z) * (1 - n * n);
            const Real dgi[3] = {dn * gh_n * rr * (1 - rr), dht * (hp[j] - n) * z * (1 - z), dn};
            const Real dgh[3] = {dgi[0], dgi[1], dn * rr};
            dh_prev[i] += dht * z;
            for (int q = 0; q < 3; ++q) {
              const int row = q * H + j;
              r.d_params[o.bias_ih + row] += dgi[q];
              r.d_params[o.bias_hh + row] += dgh[q];
              for (int k = 0; k < in; ++k) {
                r.d_params[o.weight_ih + static_cast<size_t>(row) * in + k] += dgi[q] * xt[k];
                dx[(static_cast<size_t>(b) * T + t) * in + k] +=
                    dgi[q] * Real(w_ih[static_cast<size_t>(row) * in + k]);
              }
              for (int k = 0; k < H; ++k) {
                r.d_params[o.weight_hh + static_cast<size_t>(row) * H + k] += dgh[q] * hp[k];
                dh_prev[static_cast<size_t>(b) * H + k] +=
                    dgh[q] * Real(w_hh[static_cast<size_t>(row) * H + k]);
              }
            }
          }
        }
        dh = dh_prev;
      }
      for (size_t i = 0; i < BH; ++i) r.d_h0[(l * dirs + d) * BH + i] = dh[i];
    }
    dy = dx;
  }
  r.d_x = dy;
  return r;
}

struct OpCase {
  std::string name;
  GruShape shape;
  bool with_h0, with_d_h_n;
};

std::vector<OpCase> small_op_cases() {
  return {
      {"B1 T1 C1 H1", {1, 1, 1, 1, 1, false}, false, false},
      {"B3 T5 C7 H9, 2 layers bidirectional, h0", {3, 5, 7, 9, 2, true}, true, true},
      {"B2 T6 C2 H5, bidirectional", {2, 6, 2, 5, 1, true}, false, true},
      {"B4 T3 C3 H4, 2 layers", {4, 3, 3, 4, 2, false}, true, false},
      // 77 KB of W_hh: the persistent kernels opt into more than the default 48 KB.
      {"B2 T3 C3 H80, bidirectional", {2, 3, 3, 80, 1, true}, true, true},
      // 768 KB of W_hh: the persistent kernels split it over clusters of 4 blocks.
      {"B3 T3 C2 H256, bidirectional", {3, 3, 2, 256, 1, true}, true, true},
  };
}

struct OpInputs {
  std::vector<float> params, x, h0, d_output, d_h_n;
};

OpInputs op_inputs(const GruShape& sh, uint32_t seed) {
  const float bound = 1.0f / std::sqrt(static_cast<float>(sh.hidden));  // nn.GRU's init
  const size_t states = static_cast<size_t>(sh.layers) * sh.directions() * sh.batch * sh.hidden;
  const size_t seq = static_cast<size_t>(sh.batch) * sh.steps;
  OpInputs in;
  in.params = random_floats(gpu::gru_param_count(sh), -bound, bound, seed);
  in.x = random_floats(seq * sh.input, -2.0f, 2.0f, seed + 1);
  in.h0 = random_floats(states, -1.0f, 1.0f, seed + 2);
  in.d_output = random_floats(seq * sh.output_features(), -1.0f, 1.0f, seed + 3);
  in.d_h_n = random_floats(states, -1.0f, 1.0f, seed + 4);
  return in;
}

struct OpOutputs {
  std::vector<float> output, h_n, d_x, d_h0, d_params;
};

OpOutputs run_op(const OpCase& c, const OpInputs& in, const gpu::GruGpuOptions& options) {
  const GruShape& sh = c.shape;
  gpu::GruGpu gru(sh, options);
  // Every case's W_hh up to H = 80 fits a block of an A100 or H100/H200, up to H = 256 a cluster
  // of an H100/H200 (or of the SIMT harness's emulated device).
  if (!options.allow_persistent) {
    EXPECT_FALSE(gru.persistent());
    EXPECT_FALSE(gru.persistent_backward());
  }
  if (options.allow_persistent && sh.hidden <= (device_has_clusters() ? 256 : 80) &&
      options.persistent_rows == 0 && options.persistent_cluster_blocks == 0) {
    EXPECT_TRUE(gru.persistent());
    EXPECT_TRUE(gru.persistent_backward());
  }
  DeviceBuffer params(in.params), x(in.x), h0(in.h0), d_output(in.d_output), d_h_n(in.d_h_n);
  const size_t states = in.h0.size();
  DeviceBuffer output(in.d_output.size()), h_n(states), d_x(in.x.size()), d_h0(states),
      d_params(in.params.size());
  gru.forward_train(params.get(), x.get(), c.with_h0 ? h0.get() : nullptr, output.get(), h_n.get(),
                    nullptr);
  gru.backward(params.get(), x.get(), d_output.get(), c.with_d_h_n ? d_h_n.get() : nullptr,
               d_x.get(), d_h0.get(), d_params.get(), nullptr);
  FUSEDVAE_CUDA_CHECK(cudaDeviceSynchronize());
  OpOutputs out{output.to_host(), h_n.to_host(), d_x.to_host(), d_h0.to_host(), d_params.to_host()};
  for (const auto& [name, v] :
       {std::pair<const char*, const std::vector<float>*>{"output", &out.output},
        {"h_n", &out.h_n},
        {"d_x", &out.d_x},
        {"d_h0", &out.d_h0},
        {"d_params", &out.d_params}})
    test::expect_all_written(*v, name);
  return out;
}

// Errors grow at most linearly along the chain of steps and layers (each step's products add
// about (32 + 2 sqrt(width)) roundings relative to the tensor's scale, where width is the longest
// dot product, as in sequence_tol); the weight and bias gradients are sums over all B * T steps
// and rows, whose rounding error grows with their count. Relative to the largest |value| of the
// tensor, since a gradient is a sum of terms of both signs.
Tolerance op_tol(const GruShape& sh, const std::vector<Real>& ref, bool summed_over_steps) {
  Real scale = 0;
  for (const Real v : ref) scale = std::fabs(v) > scale ? std::fabs(v) : scale;
  const int width = std::max(sh.input, 3 * sh.hidden);
  double factor = (sh.steps + 1) * sh.layers * (32 + 2 * std::sqrt(static_cast<double>(width)));
  if (summed_over_steps) factor *= std::sqrt(static_cast<double>(sh.batch) * sh.steps);
  return {factor * kU * static_cast<double>(scale > 0 ? scale : 1), 8 * kU};
}

void check_op(const OpCase& c, const OpInputs& in, const OpOutputs& got, const std::string& tag) {
  const GruShape& sh = c.shape;
  const GruRef ref = gru_ref(sh, in.params, in.x, c.with_h0 ? &in.h0 : nullptr, in.d_output,
                             c.with_d_h_n ? &in.d_h_n : nullptr);
  test::expect_close("output" + tag, got.output, to_double(ref.output), nullptr,
                     op_tol(sh, ref.output, false));
  test::expect_close("h_n" + tag, got.h_n, to_double(ref.h_n), nullptr, op_tol(sh, ref.h_n, false));
  test::expect_close("d_x" + tag, got.d_x, to_double(ref.d_x), nullptr, op_tol(sh, ref.d_x, false));
  test::expect_close("d_h0" + tag, got.d_h0, to_double(ref.d_h0), nullptr,
                     op_tol(sh, ref.d_h0, false));
  // Each parameter tensor on its own, named as PyTorch names it.
  for (int l = 0; l < sh.layers; ++l)
    for (int d = 0; d < sh.directions(); ++d) {
      const gpu::GruTensorOffsets o = gpu::gru_param_offsets(sh, l, d);
      const std::string suffix = std::to_string(l) + (d == 1 ? "_reverse" : "");
      const size_t ends[] = {o.weight_hh, o.bias_ih, o.bias_hh, o.bias_hh + 3 * sh.hidden};
      const size_t begins[] = {o.weight_ih, o.weight_hh, o.bias_ih, o.bias_hh};
      const char* names[] = {"weight_ih_l", "weight_hh_l", "bias_ih_l", "bias_hh_l"};
      for (int q = 0; q < 4; ++q) {
        const std::vector<float> g(got.d_params.begin() + begins[q],
                                   got.d_params.begin() + ends[q]);
        const std::vector<Real> r(ref.d_params.begin() + begins[q], ref.d_params.begin() + ends[q]);
        test::expect_close(std::string("d ") + names[q] + suffix + tag, g, to_double(r), nullptr,
                           op_tol(sh, r, true));
      }
    }
}

void expect_same_outputs(const OpOutputs& a, const OpOutputs& b, const std::string& tag) {
  test::expect_bitwise_equal(a.output, b.output, "output" + tag);
  test::expect_bitwise_equal(a.h_n, b.h_n, "h_n" + tag);
  test::expect_bitwise_equal(a.d_x, b.d_x, "d_x" + tag);
  test::expect_bitwise_equal(a.d_h0, b.d_h0, "d_h0" + tag);
  test::expect_bitwise_equal(a.d_params, b.d_params, "d_params" + tag);
}

// The op with the reference products (kernels/reference_matmul.h): its orchestration (strides,
// step order, directions, layers, the persistent path, the bias reductions) on the SIMT harness.
TEST(GruOpGpu, ReferenceProductsMatchLongDouble) {
  FUSEDVAE_REQUIRE_GPU();
  uint32_t seed = 100;
  for (const OpCase& c : small_op_cases()) {
    SCOPED_TRACE(c.name);
    const OpInputs in = op_inputs(c.shape, seed += 10);
    std::vector<OpOutputs> results;
    for (const bool persistent : {false, true}) {
      gpu::GruGpuOptions options;
      options.reference_products = true;
      options.allow_persistent = persistent;
      const std::string tag = persistent ? " (persistent)" : " (per step)";
      results.push_back(run_op(c, in, options));
      check_op(c, in, results.back(), tag);
      expect_same_outputs(run_op(c, in, options), results.back(), tag + ", second run");
    }
    // The reference product sums gh in the persistent kernel's order (k = 0..H-1, one fused
    // multiply-add each, the bias added after), so the two paths agree to the bit.
    expect_same_outputs(results[1], results[0], " (persistent against per step)");
  }
}

// The persistent kernels' layout changes the grid, not the sums: bitwise the same results at 1, 2
// and 3 rows per block (3 leaves a partial last block) and in clusters of 2, 3 and 8 blocks (8
// leaves the last block without units at H = 7), and the same as the per-step path.
TEST(GruOpGpu, PersistentLayoutDoesNotChangeTheBits) {
  FUSEDVAE_REQUIRE_GPU();
  const OpCase c{"B5 T4 C3 H7, 2 layers bidirectional", {5, 4, 3, 7, 2, true}, true, true};
  const OpInputs in = op_inputs(c.shape, 400);
  gpu::GruGpuOptions per_step;
  per_step.reference_products = true;
  per_step.allow_persistent = false;
  const OpOutputs expected = run_op(c, in, per_step);
  const std::pair<int, int> layouts[] = {{1, 1}, {2, 1}, {3, 1}, {2, 2}, {3, 3}, {1, 8}};
  for (const auto& [rows, cluster_blocks] : layouts) {
    if (cluster_blocks > 1 && !device_has_clusters()) continue;
    gpu::GruGpuOptions options;
    options.reference_products = true;
    options.persistent_rows = rows;
    options.persistent_cluster_blocks = cluster_blocks;
    const std::string tag = " (" + std::to_string(rows) + " rows per block, " +
                            std::to_string(cluster_blocks) + " blocks per cluster)";
    gpu::GruGpu gru(c.shape, options);
    ASSERT_TRUE(gru.persistent()) << tag;
    ASSERT_TRUE(gru.persistent_backward()) << tag;
    EXPECT_EQ(gru.persistent_layout().cluster_blocks, cluster_blocks) << tag;
    EXPECT_EQ(gru.persistent_backward_layout().rows_per_block, rows) << tag;
    expect_same_outputs(run_op(c, in, options), expected, tag);
  }
}

// ---------------------------------------------------------------------------------------------
// Golden cases (python_ref/gru_ref.py in float64, python_ref/make_golden.py) and the CPU twin
// (host/ops/gru_cpu.h) on the same inputs.

// As tests/test_gru_cpu.cpp: a GRU's rounding errors are carried through the recurrence, so the
// tolerance is measured per case and tensor: err32 is the largest error of the same reference
// evaluated in float32 (another draw of the same error propagation), and an implementation in
// float32 must come within kErr32Factor times it. The kernels differ from that evaluation as the
// twin does (other summation orders: cuBLASLt's or the reference product's k order, and the
// persistent kernel's; the exp-based sigmoid; the device's expf and tanhf, within 2 ulp), so the
// twin's factor applies. 8 u relative for the few-rounding elements, kDenormalAbs for the
// underflowing gradients of saturated gates.
constexpr double kErr32Factor = 8.0;

Tolerance golden_tol(const test::GoldenCase& c, const std::string& name, double factor = 1.0) {
  return {
      test::kDenormalAbs + factor * kErr32Factor * c.manifest.at("err32").at(name).get<double>(),
      factor * 8 * kU};
}

OpCase golden_op_case(const test::GoldenCase& c) {
  const nlohmann::json& m = c.manifest;
  GruShape s;
  s.batch = m.at("batch"), s.steps = m.at("steps"), s.input = m.at("input");
  s.hidden = m.at("hidden"), s.layers = m.at("layers"), s.bidirectional = m.at("bidirectional");
  return {c.name, s, c.has("h0"), true};
}

OpInputs golden_inputs(const test::GoldenCase& c, const GruShape& s) {
  OpInputs in;
  in.params = c.f32("params");
  in.x = c.f32("x");
  in.h0 = c.has("h0")
              ? c.f32("h0")
              : std::vector<float>(
                    static_cast<size_t>(s.layers) * s.directions() * s.batch * s.hidden, 0.0f);
  in.d_output = c.f32("d_output");
  in.d_h_n = c.f32("d_h_n");
  return in;
}

// Compares got with reference tensor by tensor (d_params split into PyTorch's named tensors),
// with golden_tol(factor) per tensor.
void check_against(const test::GoldenCase& c, const GruShape& s, const OpOutputs& got,
                   const OpOutputs* twin, double factor, const std::string& tag,
                   test::AccuracySummary* summary) {
  auto ref_of = [&](const char* name, const std::vector<float>& twin_values) {
    return twin != nullptr ? std::vector<double>(twin_values.begin(), twin_values.end())
                           : c.f64(name);
  };
  auto check = [&](const std::string& name, const std::vector<float>& actual,
                   const std::vector<double>& reference, const std::string& tol_name) {
    summary->add(name, c.name,
                 test::expect_close(c.name + "/" + name + tag, actual, reference, nullptr,
                                    golden_tol(c, tol_name, factor)));
  };
  check("output", got.output, ref_of("output", twin ? twin->output : got.output), "output");
  check("h_n", got.h_n, ref_of("h_n", twin ? twin->h_n : got.h_n), "h_n");
  check("d_x", got.d_x, ref_of("d_x", twin ? twin->d_x : got.d_x), "d_x");
  check("d_h0", got.d_h0, ref_of("d_h0", twin ? twin->d_h0 : got.d_h0), "d_h0");
  const std::vector<double> d_params = ref_of("d_params", twin ? twin->d_params : got.d_params);
  ASSERT_EQ(got.d_params.size(), d_params.size());
  for (const nlohmann::json& t : c.manifest.at("param_tensors")) {
    const std::string name = t.at("name");
    const size_t offset = t.at("offset");
    size_t count = 1;
    for (const size_t dim : t.at("shape").get<std::vector<size_t>>()) count *= dim;
    check("d_" + name.substr(0, name.find("_l")),
          std::vector<float>(got.d_params.begin() + offset, got.d_params.begin() + offset + count),
          std::vector<double>(d_params.begin() + offset, d_params.begin() + offset + count),
          "d_" + name);
  }
}

void check_goldens(bool reference_products, const std::string& title) {
  for (const bool persistent : {false, true}) {
    const std::string tag = persistent ? " (persistent)" : " (per step)";
    test::AccuracySummary summary(title + tag);
    for (const test::GoldenCase& c : test::golden_cases("gru")) {
      SCOPED_TRACE(c.name + tag);
      const OpCase oc = golden_op_case(c);
      gpu::GruGpuOptions options;
      options.reference_products = reference_products;
      options.allow_persistent = persistent;
      check_against(c, oc.shape, run_op(oc, golden_inputs(c, oc.shape), options), nullptr, 1.0, tag,
                    &summary);
    }
  }
}

// GPU and CPU twin on the same inputs. Each is within 8 err32 of the float64 reference, so the two
// are within twice that of each other.
void check_twin(bool reference_products, const std::string& title) {
  test::AccuracySummary summary(title);
  for (const test::GoldenCase& c : test::golden_cases("gru")) {
    SCOPED_TRACE(c.name);
    const OpCase oc = golden_op_case(c);
    const OpInputs in = golden_inputs(c, oc.shape);
    gpu::GruGpuOptions options;
    options.reference_products = reference_products;
    const OpOutputs gpu_out = run_op(oc, in, options);
    const cpu::GruPlan plan(oc.shape);
    OpOutputs cpu_out{std::vector<float>(in.d_output.size()), std::vector<float>(in.h0.size()),
                      std::vector<float>(in.x.size()), std::vector<float>(in.h0.size()),
                      std::vector<float>(in.params.size())};
    std::vector<float> reserve(cpu::gru_reserve_floats(oc.shape)),
        scratch(cpu::gru_scratch_floats(oc.shape));
    plan.forward_train(in.params.data(), in.x.data(), oc.with_h0 ? in.h0.data() : nullptr,
                       cpu_out.output.data(), cpu_out.h_n.data(), reserve.data(), scratch.data());
    plan.backward(in.params.data(), in.x.data(), reserve.data(), in.d_output.data(),
                  in.d_h_n.data(), cpu_out.d_x.data(), cpu_out.d_h0.data(), cpu_out.d_params.data(),
                  scratch.data());
    check_against(c, oc.shape, gpu_out, &cpu_out, 2.0, " (against the CPU twin)", &summary);
  }
}

TEST(GruOpGpu, GoldenCases) {
  FUSEDVAE_REQUIRE_GPU();
  check_goldens(true, "gpu gru, reference products");
}

TEST(GruOpGpu, MatchesCpuTwin) {
  FUSEDVAE_REQUIRE_GPU();
  check_twin(true, "gpu gru (reference products) against the cpu twin");
}

// ---------------------------------------------------------------------------------------------
// The op with cuBLASLt: GPU-only.

TEST(GruGpu, MatchesLongDouble) {
  FUSEDVAE_REQUIRE_GPU();
  std::vector<OpCase> cases = small_op_cases();
  // DyAD's encoder shape, scaled down in B for the reference's time; T long enough for drift.
  cases.push_back({"B4 T128 C7 H64, 2 layers bidirectional", {4, 128, 7, 64, 2, true}, true, true});
  cases.push_back({"B2 T16 C2 H160 (per step only)", {2, 16, 2, 160, 1, true}, false, true});
  uint32_t seed = 200;
  for (const OpCase& c : cases) {
    SCOPED_TRACE(c.name);
    const OpInputs in = op_inputs(c.shape, seed += 10);
    for (const bool persistent : {false, true}) {
      gpu::GruGpuOptions options;
      options.allow_persistent = persistent;
      const std::string tag = persistent ? " (persistent)" : " (per step)";
      const OpOutputs got = run_op(c, in, options);
      check_op(c, in, got, tag);
      expect_same_outputs(run_op(c, in, options), got, tag + ", second run");
    }
  }
}

TEST(GruGpu, GoldenCases) {
  FUSEDVAE_REQUIRE_GPU();
  check_goldens(false, "gpu gru, cuBLASLt");
}

TEST(GruGpu, MatchesCpuTwin) {
  FUSEDVAE_REQUIRE_GPU();
  check_twin(false, "gpu gru (cuBLASLt) against the cpu twin");
}

TEST(GruGpu, CapturedGraphGivesTheEagerBits) {
  FUSEDVAE_REQUIRE_GPU();
  const OpCase c{"B3 T5 C7 H9, 2 layers bidirectional", {3, 5, 7, 9, 2, true}, true, true};
  const OpInputs in = op_inputs(c.shape, 300);
  // Both paths: the persistent kernels (with their shared-memory opt-in inside the capture) and
  // the per-step products and kernels on two streams.
  for (const bool persistent : {true, false}) {
    SCOPED_TRACE(persistent ? "persistent" : "per step");
    gpu::GruGpuOptions options;
    options.allow_persistent = persistent;
    const OpOutputs eager = run_op(c, in, options);
    gpu::GruGpu gru(c.shape, options);
    DeviceBuffer params(in.params), x(in.x), h0(in.h0), d_output(in.d_output), d_h_n(in.d_h_n);
    DeviceBuffer output(in.d_output.size()), h_n(in.h0.size()), d_x(in.x.size()),
        d_h0(in.h0.size()), d_params(in.params.size());
    cudaStream_t stream = nullptr;
    FUSEDVAE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    FUSEDVAE_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    gru.forward_train(params.get(), x.get(), h0.get(), output.get(), h_n.get(), stream);
    gru.backward(params.get(), x.get(), d_output.get(), d_h_n.get(), d_x.get(), d_h0.get(),
                 d_params.get(), stream);
    FUSEDVAE_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
    FUSEDVAE_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    for (int replay = 0; replay < 2; ++replay) {
      FUSEDVAE_CUDA_CHECK(cudaGraphLaunch(exec, stream));
      FUSEDVAE_CUDA_CHECK(cudaStreamSynchronize(stream));
      const OpOutputs got{output.to_host(), h_n.to_host(), d_x.to_host(), d_h0.to_host(),
                          d_params.to_host()};
      expect_same_outputs(got, eager, " (graph replay " + std::to_string(replay) + ")");
    }
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    cudaStreamDestroy(stream);
  }
}

TEST(GruGpu, RejectsBadShapesAndMisalignedBuffers) {
  FUSEDVAE_REQUIRE_GPU();
  EXPECT_THROW(gpu::GruGpu({0, 1, 1, 1, 1, false}), std::invalid_argument);
  EXPECT_THROW(gpu::GruGpu({1, 1, 1, 1, 0, false}), std::invalid_argument);
  gpu::GruGpu gru({2, 3, 4, 5, 1, false});
  DeviceBuffer params(gpu::gru_param_count(gru.shape()) + 1), x(2 * 3 * 4 + 1), out(2 * 3 * 5);
  EXPECT_THROW(gru.forward_train(params.get() + 1, x.get(), nullptr, out.get(), nullptr, nullptr),
               std::invalid_argument);
  EXPECT_THROW(gru.forward_train(params.get(), x.get() + 1, nullptr, out.get(), nullptr, nullptr),
               std::invalid_argument);
}

}  // namespace
}  // namespace fusedvae
