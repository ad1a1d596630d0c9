// @brief The GRU's kernels (kernels/gru.h) against a long-double reference of the cell and of a
// whole direction's sequence: the per-step pointwise forward and backward and the persistent
// forward, with poisoned outputs (every element written, nothing outside the slice), bitwise
// determinism and the persistent kernel's independence of its rows per block. GruKernelsGpu.* also
// runs on the CPU SIMT harness (tests/simt/); the whole op (cuBLASLt) is GPU-only.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernels/gru.h"
#include "tests/support/test_support.h"

namespace fusedvae {
namespace {

using test::DeviceBuffer;
using test::Tolerance;
using Real = long double;

constexpr double kU = test::kFloat32Roundoff;

std::vector<float> uniform(size_t n, float lo, float hi, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

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
  std::vector<float> gi = uniform(static_cast<size_t>(B) * T * 3 * H, -3.0f, 3.0f, seed);
  std::vector<float> gh = uniform(static_cast<size_t>(B) * 3 * H, -3.0f, 3.0f, seed + 1);
  saturate(&gi, 7, 40.0f);
  saturate(&gh, 11, 40.0f);
  const std::vector<float> b_ih = uniform(3 * H, -1.0f, 1.0f, seed + 2);
  const std::vector<float> b_hh = uniform(3 * H, -1.0f, 1.0f, seed + 3);
  const std::vector<float> h_prev = uniform(static_cast<size_t>(B) * H, -1.0f, 1.0f, seed + 4);

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
    const std::vector<float> pre = uniform(BH * 4, -4.0f, 4.0f, seed);
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
  const std::vector<float> h_prev = uniform(BH, -1.0f, 1.0f, seed + 1);
  const std::vector<float> d_out =
      uniform(static_cast<size_t>(B) * T * s.dirs * H, -1, 1, seed + 2);
  const std::vector<float> carry_in = uniform(BH, -1.0f, 1.0f, seed + 3);

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
                                const std::vector<float> (&h0)[2], int rows_per_block) {
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
  gpu::gru_persistent_forward(params, p.dirs, B, T, H, rows_per_block, out.get(), nullptr);
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
    gi[d] = uniform(static_cast<size_t>(B) * T * 3 * H, -2.0f, 2.0f, sd);
    saturate(&gi[d], 17, 30.0f);
    w_hh[d] = uniform(static_cast<size_t>(3) * H * H, -bound, bound, sd + 1);
    b_ih[d] = uniform(3 * H, -bound, bound, sd + 2);
    b_hh[d] = uniform(3 * H, -bound, bound, sd + 3);
    h0[d] = uniform(static_cast<size_t>(B) * H, -1.0f, 1.0f, sd + 4);
  }
  const int rows =
      B < 3 ? B : 3;  // 3 rows per block: a partial last block when 3 does not divide B
  const PersistentResult got = run_persistent(p, gi, w_hh, b_ih, b_hh, h0, rows);
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

  // The rows per block change the grid, not the sums: bitwise the same results, run to run too.
  for (const int other : {1, B < 8 ? B : 8}) {
    const PersistentResult again = run_persistent(p, gi, w_hh, b_ih, b_hh, h0, other);
    const std::string tag = " (rows per block " + std::to_string(other) + ")";
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
  EXPECT_GT(gpu::gru_persistent_shared_bytes(80, 1), size_t{48 * 1024});
  check_persistent({2, 2, 80, 2, true}, 31);
}

TEST(GruKernelsGpu, PersistentFitsOnlyWhatTheDeviceHolds) {
  FUSEDVAE_REQUIRE_GPU();
  const size_t h100 = 227 * 1024, a100 = 163 * 1024;
  EXPECT_TRUE(gpu::gru_persistent_fits(128, 8, h100));
  EXPECT_FALSE(gpu::gru_persistent_fits(128, 8, a100));
  EXPECT_TRUE(gpu::gru_persistent_fits(112, 4, a100));
  EXPECT_FALSE(gpu::gru_persistent_fits(256, 1, h100));
  EXPECT_FALSE(gpu::gru_persistent_fits(64, gpu::kGruPersistentMaxRows + 1, h100));
  gpu::GruDirectionParams none[1];
  EXPECT_THROW(gpu::gru_persistent_forward(none, 1, 2, 3, 4, 0, nullptr, nullptr),
               std::invalid_argument);
}

}  // namespace
}  // namespace fusedvae
