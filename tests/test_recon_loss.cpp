// @brief Fused reconstruction losses (Bernoulli logits, Gaussian NLL, MSE, SmoothL1): CPU twin and
// GPU kernel against the float64 golden cases, determinism, finiteness and argument checks.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "host/ops/recon_loss_cpu.h"
#include "kernels/recon_loss.h"
#include "tests/support/test_support.h"

namespace fusedvae {
namespace {

using test::AccuracySummary;
using test::DeviceBuffer;
using test::GoldenCase;
using test::Tolerance;
using Workspace = test::ScopedReductionWorkspace;

constexpr double u = test::kFloat32Roundoff;

constexpr double kAbs = test::kDenormalAbs;

// Per-feature error of each loss and gradient, first order, in units of u times the reference
// magnitude (sum of |terms|); each gets +1 u for second-order terms. grad_scale = loss_scale *
// float(1/batch) carries 2 roundings, and multiplying by it 1 more.
//  bernoulli loss max(x,0) - x y + log1p(exp(-|x|)): x*y 1, the difference 1, expf 2 ulp (CUDA)
//    feeding log1pf 1 ulp (the propagated error shrinks: 3 in all), the sum 1: <= 4.
//  bernoulli grad sigmoid(x) - y: expf 2, 1 + e 1, the division 1 (IEEE, no fast math): 4 for the
//    sigmoid, the difference 1, the scaling 3: <= 8.
//  gaussian loss 1/2 ((x-y)/s)^2 + log s + 1/2 log 2pi: r = (x-y)/s 2, r*r 5, logf 1, the rounded
//    constant 1/2, two sums 2: <= 7.   grad r/s: 3, scaling 3: <= 6.
//  mse loss (x-y)^2: 3.   grad 2 (x-y): 1, scaling 3: <= 4.
//  smooth_l1 loss: quadratic branch r 1, r*r 2, /beta 1: 4; linear branch |r| 1, minus beta/2 1:
//    2 -> <= 4. A float residual on the other side of |r| = beta than the exact one changes the
//    value by O(u^2) and the gradient by O(u): both branches meet there.
//    grad r/beta 2 or sign(r) exact (float subtraction keeps the sign), scaling 3: <= 5.
struct LossBounds {
  double loss;
  double grad;
};
LossBounds per_term_bounds(ReconLossKind kind) {
  switch (kind) {
    case ReconLossKind::kBernoulliLogits:
      return {4 + 1, 8 + 1};
    case ReconLossKind::kGaussian:
      return {7 + 1, 6 + 1};
    case ReconLossKind::kMse:
      return {3 + 1, 4 + 1};
    case ReconLossKind::kSmoothL1:
      return {4 + 1, 5 + 1};
  }
  return {0, 0};
}

// CPU twin: sums in double (dim * 2^-53, negligible), one rounding of each per-sample value; the
// batch value adds those in double, rounds once and multiplies by the float32 scale (2 more).
// GPU kernel: one warp per row, lanes stride over features (ceil(dim/32) terms each, one rounding
// per addition after the first), a 5-level shuffle tree; then gpu_batch_sum_depth() for the batch.
struct ReconTolerances {
  Tolerance per_sample, reduced, grad;
};
ReconTolerances cpu_tolerances(ReconLossKind kind) {
  const LossBounds b = per_term_bounds(kind);
  return {{kAbs, (b.loss + 1) * u}, {kAbs, (b.loss + 1 + 3) * u}, {kAbs, b.grad * u}};
}
ReconTolerances gpu_tolerances(ReconLossKind kind, int batch, int dim, int block_size) {
  const LossBounds b = per_term_bounds(kind);
  const double row_sum = (dim + 31) / 32 - 1 + 5;
  return {{kAbs, (b.loss + row_sum) * u},
          {kAbs, (b.loss + row_sum + test::gpu_batch_sum_depth(batch, block_size)) * u},
          {kAbs, b.grad * u}};
}

struct ReconCase {
  std::string name;
  int batch = 0;
  int dim = 0;
  ReconLoss loss;
  BatchReduction reduction = BatchReduction::kMean;
  float loss_scale = 1.0f;
  std::vector<float> output, target;
};

ReconCase load(const GoldenCase& c) {
  ReconCase r;
  r.name = c.op + "/" + c.name;
  r.batch = c.manifest.at("batch").get<int>();
  r.dim = c.manifest.at("dim").get<int>();
  const std::string kind = c.manifest.at("loss_kind").get<std::string>();
  if (!parse_recon_loss_kind(kind.c_str(), &r.loss.kind))
    ADD_FAILURE() << r.name << ": unknown loss kind " << kind;
  r.loss.gaussian_sigma = c.manifest.at("gaussian_sigma").get<float>();
  r.loss.smooth_l1_beta = c.manifest.at("smooth_l1_beta").get<float>();
  r.reduction = test::golden_reduction(c);
  r.loss_scale = c.manifest.at("loss_scale").get<float>();
  r.output = c.f32("output");
  r.target = c.f32("target");
  EXPECT_EQ(r.output.size(), static_cast<size_t>(r.batch) * r.dim) << r.name;
  EXPECT_EQ(r.target.size(), r.output.size()) << r.name;
  return r;
}

struct ReconOut {
  std::vector<float> loss_per_sample, loss_reduced, grad_output;
};

ReconOut cpu_run(const ReconCase& r) {
  ReconOut out{test::poisoned(r.batch), test::poisoned(1), test::poisoned(r.output.size())};
  cpu::recon_loss_forward_backward(r.output.data(), r.target.data(), r.batch, r.dim, r.loss,
                                   r.reduction, r.loss_scale, out.loss_per_sample.data(),
                                   out.loss_reduced.data(), out.grad_output.data());
  return out;
}

ReconOut gpu_run(const ReconCase& r, ReductionWorkspace ws, int block_size) {
  DeviceBuffer output(r.output), target(r.target);
  DeviceBuffer per_sample(r.batch), reduced(1), grad(r.output.size());
  gpu::recon_loss_forward_backward(output.get(), target.get(), r.batch, r.dim, r.loss, r.reduction,
                                   r.loss_scale, per_sample.get(), reduced.get(), grad.get(), ws,
                                   nullptr, block_size);
  ReconOut out{per_sample.to_host(), reduced.to_host(), grad.to_host()};
  test::expect_all_written(out.loss_per_sample, "gpu loss_per_sample");
  test::expect_all_written(out.loss_reduced, "gpu loss_reduced");
  test::expect_all_written(out.grad_output, "gpu grad_output");
  return out;
}

void check(const GoldenCase& c, const ReconCase& r, const ReconOut& out, const ReconTolerances& tol,
           AccuracySummary* summary) {
  const std::string kind = recon_loss_name(r.loss.kind);
  const auto per_sample_mag = c.f64("loss_per_sample_mag");
  const auto reduced_mag = c.f64("loss_reduced_mag");
  const auto grad_mag = c.f64("grad_output_mag");
  summary->add(kind + " loss_per_sample", r.name,
               test::expect_close(r.name + "/loss_per_sample", out.loss_per_sample,
                                  c.f64("loss_per_sample"), &per_sample_mag, tol.per_sample));
  summary->add(kind + " loss_reduced", r.name,
               test::expect_close(r.name + "/loss_reduced", out.loss_reduced, c.f64("loss_reduced"),
                                  &reduced_mag, tol.reduced));
  summary->add(kind + " grad_output", r.name,
               test::expect_close(r.name + "/grad_output", out.grad_output, c.f64("grad_output"),
                                  &grad_mag, tol.grad));
}

TEST(ReconLossCpu, MatchesFloat64Reference) {
  AccuracySummary summary("cpu recon_loss");
  for (const GoldenCase& c : test::golden_cases("recon_loss")) {
    SCOPED_TRACE(c.name);
    const ReconCase r = load(c);
    check(c, r, cpu_run(r), cpu_tolerances(r.loss.kind), &summary);
  }
}

TEST(ReconLossGpu, MatchesFloat64Reference) {
  FUSEDVAE_REQUIRE_GPU();
  Workspace ws;
  for (const int block_size : {64, 256, 1024}) {
    AccuracySummary summary("gpu recon_loss, block " + std::to_string(block_size));
    for (const GoldenCase& c : test::golden_cases("recon_loss")) {
      SCOPED_TRACE(c.name + ", block " + std::to_string(block_size));
      const ReconCase r = load(c);
      check(c, r, gpu_run(r, ws.ws, block_size),
            gpu_tolerances(r.loss.kind, r.batch, r.dim, block_size), &summary);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Determinism: every output, batch reduction included, bitwise the same run to run.

std::vector<ReconCase> determinism_cases(const std::string& shape) {
  std::vector<ReconCase> cases;
  for (const GoldenCase& c : test::golden_cases("recon_loss"))
    if (c.name.find(shape) != std::string::npos) cases.push_back(load(c));
  EXPECT_FALSE(cases.empty()) << "no golden case of shape " << shape;
  return cases;
}

void expect_same(const ReconOut& a, const ReconOut& b, const std::string& name) {
  test::expect_bitwise_equal(a.loss_per_sample, b.loss_per_sample, name + "/loss_per_sample");
  test::expect_bitwise_equal(a.loss_reduced, b.loss_reduced, name + "/loss_reduced");
  test::expect_bitwise_equal(a.grad_output, b.grad_output, name + "/grad_output");
}

TEST(ReconLossCpu, RunToRunBitwiseDeterministic) {
  for (const ReconCase& r : determinism_cases("b129_d33"))
    expect_same(cpu_run(r), cpu_run(r), r.name);
}

TEST(ReconLossGpu, RunToRunBitwiseDeterministic) {
  FUSEDVAE_REQUIRE_GPU();
  Workspace ws;
  // The large case has 512 blocks racing to finish the batch sum; the small ones every loss kind.
  std::vector<ReconCase> cases = determinism_cases("b4096_d1024");
  for (ReconCase& r : determinism_cases("b129_d33")) cases.push_back(std::move(r));
  for (const ReconCase& r : cases) {
    const ReconOut first = gpu_run(r, ws.ws, 256);
    for (int run = 0; run < 3; ++run) expect_same(gpu_run(r, ws.ws, 256), first, r.name);
  }
}

// ---------------------------------------------------------------------------------------------
// Finite outputs over the documented input ranges: logits up to |1e4| (and the usual +-100) with
// targets 0, 1 and soft; for the other losses |output|, |target| <= 1e3, sigma and beta from 1e-3
// to 1e3 (beta also 0); loss_scale up to 65536.

std::vector<ReconCase> extreme_cases() {
  std::vector<ReconCase> cases;
  auto add = [&](ReconLoss loss, const std::vector<float>& outputs,
                 const std::vector<float>& targets) {
    ReconCase r;
    r.loss = loss;
    r.name = std::string(recon_loss_name(loss.kind)) + " sigma " +
             std::to_string(loss.gaussian_sigma) + " beta " + std::to_string(loss.smooth_l1_beta);
    r.batch = static_cast<int>(targets.size());
    r.dim = static_cast<int>(outputs.size());
    for (const float t : targets)
      for (const float o : outputs) {
        r.output.push_back(o);
        r.target.push_back(t);
      }
    r.reduction = BatchReduction::kSum;
    r.loss_scale = 65536.0f;
    cases.push_back(r);
  };
  add({ReconLossKind::kBernoulliLogits},
      {-1e4f, -100.0f, -88.0f, -30.0f, -1e-30f, 0.0f, 1e-30f, 30.0f, 88.0f, 100.0f, 1e4f},
      {0.0f, 1.0f, 0.5f, 1e-7f});
  const std::vector<float> values = {-1e3f, -1.0f, -1e-30f, 0.0f, 1e-30f, 0.5f, 1e3f};
  for (const float p : {1e-3f, 1.0f, 1e3f}) {
    add({ReconLossKind::kGaussian, p, 1.0f}, values, values);
    add({ReconLossKind::kSmoothL1, 1.0f, p}, values, values);
  }
  add({ReconLossKind::kSmoothL1, 1.0f, 0.0f}, values, values);
  add({ReconLossKind::kMse}, values, values);
  return cases;
}

void expect_finite(const ReconOut& out, const std::string& name) {
  test::expect_all_finite(out.loss_per_sample, name + "/loss_per_sample");
  test::expect_all_finite(out.loss_reduced, name + "/loss_reduced");
  test::expect_all_finite(out.grad_output, name + "/grad_output");
}

TEST(ReconLossCpu, OutputsFiniteOverDocumentedRange) {
  for (const ReconCase& r : extreme_cases()) expect_finite(cpu_run(r), r.name);
}

TEST(ReconLossGpu, OutputsFiniteOverDocumentedRange) {
  FUSEDVAE_REQUIRE_GPU();
  Workspace ws;
  for (const ReconCase& r : extreme_cases()) expect_finite(gpu_run(r, ws.ws, 256), r.name);
}

// ---------------------------------------------------------------------------------------------
// Argument validation (checked before any device work, so the GPU launcher is tested too).

TEST(ReconLossArguments, NonPositiveBatchOrDimThrows) {
  float buffer[4] = {};
  for (const auto [batch, dim] : {std::pair{0, 1}, {1, 0}, {-2, 3}, {3, -1}}) {
    SCOPED_TRACE(std::to_string(batch) + " x " + std::to_string(dim));
    EXPECT_THROW(
        cpu::recon_loss_forward_backward(buffer, buffer, batch, dim, ReconLoss{},
                                         BatchReduction::kMean, 1.0f, buffer, buffer, buffer),
        std::invalid_argument);
    EXPECT_THROW(gpu::recon_loss_forward_backward(buffer, buffer, batch, dim, ReconLoss{},
                                                  BatchReduction::kMean, 1.0f, buffer, buffer,
                                                  buffer, ReductionWorkspace{}, nullptr),
                 std::invalid_argument);
  }
}

TEST(ReconLossArguments, BadBlockSizeThrows) {
  float buffer[4] = {};
  for (const int block_size : {0, 16, 100, 2048})
    EXPECT_THROW(gpu::recon_loss_forward_backward(
                     buffer, buffer, 1, 4, ReconLoss{}, BatchReduction::kSum, 1.0f, buffer, buffer,
                     buffer, ReductionWorkspace{}, nullptr, block_size),
                 std::invalid_argument)
        << block_size;
}

TEST(ReconLossArguments, BadLossParametersThrow) {
  float buffer[4] = {};
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<ReconLoss> bad;
  for (const float sigma : {0.0f, -1.0f, nan, inf})
    bad.push_back({ReconLossKind::kGaussian, sigma, 1.0f});
  for (const float beta : {-0.1f, nan, inf}) bad.push_back({ReconLossKind::kSmoothL1, 1.0f, beta});
  for (const ReconLoss& loss : bad) {
    SCOPED_TRACE(std::string(recon_loss_name(loss.kind)) + " sigma " +
                 std::to_string(loss.gaussian_sigma) + " beta " +
                 std::to_string(loss.smooth_l1_beta));
    EXPECT_THROW(cpu::recon_loss_forward_backward(buffer, buffer, 1, 4, loss, BatchReduction::kSum,
                                                  1.0f, buffer, buffer, buffer),
                 std::invalid_argument);
    EXPECT_THROW(
        gpu::recon_loss_forward_backward(buffer, buffer, 1, 4, loss, BatchReduction::kSum, 1.0f,
                                         buffer, buffer, buffer, ReductionWorkspace{}, nullptr),
        std::invalid_argument);
  }
  // Only the chosen loss's parameter is checked: a Bernoulli loss ignores sigma and beta.
  const std::vector<float> x = {0.5f, -1.0f, 2.0f, 0.0f}, y = {1.0f, 0.0f, 0.5f, 1.0f};
  EXPECT_NO_THROW(cpu::recon_loss_forward_backward(
      x.data(), y.data(), 1, 4, {ReconLossKind::kBernoulliLogits, 0.0f, -1.0f},
      BatchReduction::kSum, 1.0f, buffer, buffer, buffer));
}

}  // namespace
}  // namespace fusedvae
