// @brief The training step's other ops against the float64 NumPy reference (python_ref/vae_ref.py,
// golden cases from python_ref/make_golden.py): bias add and gradient, bias + activation and its
// backward, the batch gather (normalise, binarise with Philox) and the shuffle, the global gradient
// norm and clip factor, AdamW over several steps, free bits, and the schedules of the step-state
// advance. Each CPU twin (fusedvae::cpu) runs now; each GPU launcher (fusedvae::gpu) runs the same
// cases in the same test when a GPU is present, and is skipped with the reason otherwise.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "host/ops/activation_cpu.h"
#include "host/ops/adamw_cpu.h"
#include "host/ops/batch_gather_cpu.h"
#include "host/ops/bias_cpu.h"
#include "host/ops/free_bits_cpu.h"
#include "host/ops/grad_norm_cpu.h"
#include "host/ops/step_state_cpu.h"
#include "kernels/activation.h"
#include "kernels/adamw.h"
#include "kernels/batch_gather.h"
#include "kernels/bias.h"
#include "kernels/cuda_check.h"
#include "kernels/free_bits.h"
#include "kernels/grad_norm.h"
#include "kernels/adamw_math.cuh"
#include "kernels/step_state_math.cuh"
#include "kernels/step_state.h"
#include "tests/support/test_support.h"

namespace fusedvae {
namespace {

using test::AccuracySummary;
using test::GoldenCase;
using test::Tolerance;

constexpr double u = test::kFloat32Roundoff;
constexpr double kAbs = test::kDenormalAbs;

// ---------------------------------------------------------------------------------------------
// Tolerances: |actual - ref| <= abs + rel * mag, mag from the reference (<name>_mag: the sum of
// |terms| that formed the value, or |value| where one rounding of the result is all there is).
// Counts are float32 roundings of the op's arithmetic, first order, each at most u = 2^-24 of the
// value it rounds (a k-ulp library function up to 2k u: an ulp is 2u at the bottom of a binade),
// plus 1 u for second-order terms. nvcc's FMA contraction only removes roundings, so each bound
// holds for the kernel as well as the twin unless a GPU tolerance says otherwise.
//
// bias_add: y + b, one rounding of the result: 1 + 1 = 2 u of |ref|.
const Tolerance kBiasAddTol{kAbs, 2 * u};
// bias_gradient: each column's rows go to 32 lanes (ceil(rows/32) terms, one rounding per addition
// after the first), then a 5-level pairwise tree: a term passes through at most
// ceil(rows/32) - 1 + 5 roundings, of at most the sum of |dy| each. Twin and kernel share the
// order.
Tolerance bias_gradient_tol(int rows) {
  return {kAbs, ((rows + 31) / 32 - 1 + 5 + 1) * u};
}
// bias_activation_forward: the sum y + b rounds once, relative to y + b; relu passes it exactly,
// tanh passes it without growth (|s| tanh'(s) <= |tanh(s)|) and adds its own error (CUDA tanhf
// <= 2 ulp = 4 u; glibc's less): relu 1 + 1 = 2 u, tanh 1 + 4 + 1 = 6 u of |ref|.
Tolerance activation_forward_tol(Activation act) {
  return {kAbs, (act == Activation::kTanh ? 6 : 2) * u};
}
// activation_backward: relu multiplies by exactly 1 or 0 (exact: rel 0); tanh's 1 - y*y rounds
// twice (u y^2 + u |1 - y^2|) and the product once: 2 + 1 = 3 u of |dy| (y^2 + |1 - y^2|).
Tolerance activation_backward_tol(Activation act) {
  return {kAbs, (act == Activation::kTanh ? 3 : 0) * u};
}
// gather_batch: clip(fmaf(raw, scale, offset), 0, 1) rounds once, relative to the result (the
// clip is exact): 1 + 1 = 2 u of |ref|. Binarised, the output is 0 or 1 and every element must
// equal the reference (abs 0.25: a flip is an error of 1), except where the reference marks the
// element undecided (out_mag = 1: the uniform lies within the value's rounding of it), where
// either answer passes (0.25 + 1 * 1 > 1).
const Tolerance kGatherTol{kAbs, 2 * u};
const Tolerance kBinarisedTol{0.25, 1.0};
// global_grad_norm: the squares are summed in double (n * 2^-53 relative, n <= 3e5: < 0.001 u) and
// the square root rounded to float once; the factor max_norm / (norm + 1e-6) is formed in double
// and rounded once (the reference's 1e-6 against the op's float32 1e-6: < 0.05 u). 1 + 1 = 2 u of
// |ref|, twin and kernel alike (they differ only in the double summation order).
const Tolerance kGradNormTol{kAbs, 2 * u};
// adamw_update, per step (the reference carries the magnitudes through the steps, see
// vae_ref.adamw_update):
//  m = b1 m + (1 - b1) g, g = grad * scale: g 1, (1 - b1) exact (Sterbenz), its product 1, b1 m 1,
//    the sum 1: <= 3 u of (|b1 m| + |(1 - b1) g|), an earlier error shrinking by b1: 3 + 1 = 4 u.
//  v = b2 v + (1 - b2) g g: ((1 - b2) g) g 4 (g twice, two products), b2 v 1, the sum 1, all terms
//    >= 0: <= 5 u of v_mag: 5 + 1 = 6 u.
//  p -= lr wd p; p -= lr m_hat / denom: lr wd p 2 u of the decay; m_hat 2 (1/(1 - b1^t) rounded
//    from double, the product), denom = sqrt(v) / sqrt(1 - b2^t) + eps 4, lr * 1, the division 1:
//    the step 8 u; the two subtractions 1 u each of |p| + |decay| + |step|; m's and v's errors
//    enter as 3 u of lr m_mag / (1 - b1^t) / denom and 2.5 u of |step| v_mag / v: <= 9 u of
//    params_mag, accumulated over the steps: 9 + 1 = 10 u.
const Tolerance kAdamMTol{kAbs, 4 * u};
const Tolerance kAdamVTol{kAbs, 6 * u};
const Tolerance kAdamParamsTol{kAbs, 10 * u};
// free_bits_forward: one KL term 1/2 (mu^2 + (expm1(lv) - lv)) in float: expm1f 2 u (CUDA 1 ulp,
// glibc < 1), the difference 1, mu^2 and the sum 2 (fewer if fused): <= 4 u of its magnitude (as
// tests/test_reparam_kl.cpp's kKlTerm + 1). The twin sums a column in double and rounds the mean
// once: 4 + 1 = 5 u; the floored sum of max(mean, floor) adds the means' errors (max is
// 1-Lipschitz) in double and rounds once: 5 + 1 = 6 u of sum_j max(mean_mag_j, floor).
// The kernel sums a column in float: ceil(batch/256) terms per thread, a 10-level block tree,
// then divides by batch (1 u); the floored value adds the dim means in float (dim roundings).
const Tolerance kFreeBitsMeanCpuTol{kAbs, 5 * u};
const Tolerance kFreeBitsFlooredCpuTol{kAbs, 6 * u};
Tolerance free_bits_mean_gpu_tol(int batch) {
  return {kAbs, (4 + (batch + 255) / 256 - 1 + 10 + 1 + 1) * u};
}
Tolerance free_bits_floored_gpu_tol(int batch, int dim) {
  return {kAbs, (4 + (batch + 255) / 256 - 1 + 10 + 1 + dim + 1) * u};
}
// free_bits_backward: w = kl_weight * (loss_scale * float(1/batch)) 3 u; the mask and the clamp
// pass are exact 0/1 factors. dmu + w mu: the product 1, the sum 1: 5 + 1 = 6 u of |dmu| + |w mu|
// (tests/test_reparam_kl.cpp's kDmuTerm). dlogvar + w (expm1(lv) / 2): expm1f 2, the product 1,
// w 3, the sum 1: 7 + 1 = 8 u of |dlogvar| + |w expm1(lv) / 2|.
const Tolerance kFreeBitsDmuTol{kAbs, 6 * u};
const Tolerance kFreeBitsDlogvarTol{kAbs, 8 * u};
// step_state: kl_weight: linear t/x0 1, * w 1, float(step) 1 past 2^24: 3 + 1 = 4 u; cyclical
// phase / cycle 1, / ratio 1, * w 1: 4 u; logistic: the exponent a = k (t - x0) errs by up to
// 3 u |k| (|t| + |x0|), expf 4 u (CUDA 2 ulp), the sum and division 2: within 4 u of the
// reference's magnitude |w_t| (1 + share (|k| (|t| + |x0|) + 1)): 4 + 1 = 5 u.
// lr: cosine forms lr - min_lr in float (1 u of it), the rest in double, rounds the result once:
// 2 + 1 = 3 u of |min_lr| + |lr - min_lr| c; constant is exact.
const Tolerance kKlWeightTol{kAbs, 5 * u};
const Tolerance kLrTol{kAbs, 3 * u};

// ---------------------------------------------------------------------------------------------
// Helpers

// A device copy of a host vector of any POD type (the float DeviceBuffer covers the rest).
template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(const std::vector<T>& host) : count_(host.size()) {
    FUSEDVAE_CUDA_CHECK(cudaMalloc(&ptr_, std::max<size_t>(count_, 1) * sizeof(T)));
    test::copy_to_device(ptr_, host.data(), count_ * sizeof(T));
  }
  ~DeviceArray() { cudaFree(ptr_); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  T* get() const { return ptr_; }
  std::vector<T> to_host() const {
    std::vector<T> host(count_);
    FUSEDVAE_CUDA_CHECK(cudaDeviceSynchronize());
    FUSEDVAE_CUDA_CHECK(cudaMemcpy(host.data(), ptr_, count_ * sizeof(T), cudaMemcpyDeviceToHost));
    return host;
  }

 private:
  T* ptr_ = nullptr;
  size_t count_ = 0;
};

// A float tensor between poisoned guard bands, on the host or on the device. Outputs start
// poisoned; in-place tensors start with their input.
std::vector<float> guarded_output(size_t count) {
  return test::with_guards(test::poisoned(count));
}
float* tensor(std::vector<float>& guarded) {
  return guarded.data() + test::kGuardFloats;
}
float* tensor(const test::DeviceBuffer& guarded) {
  return guarded.get() + test::kGuardFloats;
}

// Compares one output with the golden reference and its magnitude (an in-place op's updated
// tensor is "<name>_new" in the golden case), and records the worst share
// under `label` (the output's name, prefixed with a kind where an op has several).
void check(const GoldenCase& c, const std::string& output, const std::vector<float>& actual,
           Tolerance tol, AccuracySummary* summary, const std::string& label = "") {
  const std::vector<double> mag = c.f64(output + "_mag");
  summary->add(
      label.empty() ? output : label, c.name,
      test::expect_close(c.op + "/" + c.name + "/" + output, actual, c.f64(output), &mag, tol));
}

Activation golden_activation(const GoldenCase& c) {
  Activation act = Activation::kRelu;
  const std::string name = c.manifest.at("activation").get<std::string>();
  if (!parse_activation(name, &act)) ADD_FAILURE() << c.name << ": unknown activation " << name;
  return act;
}

struct Shape {
  int rows = 0, cols = 0;
  explicit Shape(const GoldenCase& c)
      : rows(c.manifest.at("rows").get<int>()), cols(c.manifest.at("cols").get<int>()) {}
};

// ---------------------------------------------------------------------------------------------
// Bias add and bias gradient

TEST(BiasGolden, CpuBiasAddMatchesFloat64Reference) {
  AccuracySummary summary("cpu bias_add");
  for (const GoldenCase& c : test::golden_cases("bias_add")) {
    SCOPED_TRACE(c.name);
    const Shape s(c);
    std::vector<float> y = test::with_guards(c.f32("y"));
    cpu::bias_add(tensor(y), c.f32("bias").data(), s.rows, s.cols);
    check(c, "y_new", test::strip_guards(y, c.name + "/y"), kBiasAddTol, &summary);
  }
}

TEST(BiasGolden, GpuBiasAddMatchesFloat64Reference) {
  FUSEDVAE_REQUIRE_GPU();
  AccuracySummary summary("gpu bias_add");
  for (const GoldenCase& c : test::golden_cases("bias_add")) {
    SCOPED_TRACE(c.name);
    const Shape s(c);
    test::DeviceBuffer y(test::with_guards(c.f32("y"))), bias(c.f32("bias"));
    gpu::bias_add(tensor(y), bias.get(), s.rows, s.cols, nullptr);
    check(c, "y_new", test::strip_guards(y.to_host(), c.name + "/y"), kBiasAddTol, &summary);
  }
}

TEST(BiasGolden, CpuBiasGradientMatchesFloat64Reference) {
  AccuracySummary summary("cpu bias_gradient");
  for (const GoldenCase& c : test::golden_cases("bias_gradient")) {
    SCOPED_TRACE(c.name);
    const Shape s(c);
    std::vector<float> grad = guarded_output(s.cols);
    cpu::bias_gradient(c.f32("dy").data(), s.rows, s.cols, tensor(grad));
    check(c, "bias_grad", test::strip_guards(grad, c.name + "/bias_grad"),
          bias_gradient_tol(s.rows), &summary);
  }
}

TEST(BiasGolden, GpuBiasGradientMatchesFloat64Reference) {
  FUSEDVAE_REQUIRE_GPU();
  AccuracySummary summary("gpu bias_gradient");
  for (const GoldenCase& c : test::golden_cases("bias_gradient")) {
    SCOPED_TRACE(c.name);
    const Shape s(c);
    test::DeviceBuffer dy(c.f32("dy")), grad(guarded_output(s.cols));
    gpu::bias_gradient(dy.get(), s.rows, s.cols, tensor(grad), nullptr);
    check(c, "bias_grad", test::strip_guards(grad.to_host(), c.name + "/bias_grad"),
          bias_gradient_tol(s.rows), &summary);
  }
}

// ---------------------------------------------------------------------------------------------
// Bias + activation, and the activation's backward (both in place)

TEST(ActivationGolden, CpuForwardMatchesFloat64Reference) {
  AccuracySummary summary("cpu bias_activation_forward");
  for (const GoldenCase& c : test::golden_cases("bias_activation_forward")) {
    SCOPED_TRACE(c.name);
    const Shape s(c);
    const Activation act = golden_activation(c);
    std::vector<float> y = test::with_guards(c.f32("y"));
    cpu::bias_activation_forward(tensor(y), c.f32("bias").data(), s.rows, s.cols, act);
    check(c, "y_new", test::strip_guards(y, c.name + "/y"), activation_forward_tol(act), &summary,
          std::string(activation_name(act)) + " y_new");
  }
}

TEST(ActivationGolden, GpuForwardMatchesFloat64Reference) {
  FUSEDVAE_REQUIRE_GPU();
  AccuracySummary summary("gpu bias_activation_forward");
  for (const GoldenCase& c : test::golden_cases("bias_activation_forward")) {
    SCOPED_TRACE(c.name);
    const Shape s(c);
    const Activation act = golden_activation(c);
    test::DeviceBuffer y(test::with_guards(c.f32("y"))), bias(c.f32("bias"));
    gpu::bias_activation_forward(tensor(y), bias.get(), s.rows, s.cols, act, nullptr);
    check(c, "y_new", test::strip_guards(y.to_host(), c.name + "/y"), activation_forward_tol(act),
          &summary, std::string(activation_name(act)) + " y_new");
  }
}

TEST(ActivationGolden, CpuBackwardMatchesFloat64Reference) {
  AccuracySummary summary("cpu activation_backward");
  for (const GoldenCase& c : test::golden_cases("activation_backward")) {
    SCOPED_TRACE(c.name);
    const Shape s(c);
    const Activation act = golden_activation(c);
    std::vector<float> dy = test::with_guards(c.f32("dy"));
    cpu::activation_backward(c.f32("y").data(), tensor(dy), s.rows, s.cols, act);
    check(c, "dy_new", test::strip_guards(dy, c.name + "/dy"), activation_backward_tol(act),
          &summary, std::string(activation_name(act)) + " dy_new");
  }
}

TEST(ActivationGolden, GpuBackwardMatchesFloat64Reference) {
  FUSEDVAE_REQUIRE_GPU();
  AccuracySummary summary("gpu activation_backward");
  for (const GoldenCase& c : test::golden_cases("activation_backward")) {
    SCOPED_TRACE(c.name);
    const Shape s(c);
    const Activation act = golden_activation(c);
    test::DeviceBuffer y(c.f32("y")), dy(test::with_guards(c.f32("dy")));
    gpu::activation_backward(y.get(), tensor(dy), s.rows, s.cols, act, nullptr);
    check(c, "dy_new", test::strip_guards(dy.to_host(), c.name + "/dy"),
          activation_backward_tol(act), &summary, std::string(activation_name(act)) + " dy_new");
  }
}

// ---------------------------------------------------------------------------------------------
// Batch gather (normalise, binarise) and shuffle

struct GatherCase {
  bool u8 = false;
  int dim = 0, rows = 0;
  int32_t first = 0;
  float scale = 0, offset = 0;
  bool binarize = false;
  uint64_t seed = 0, draw = 0;
  std::vector<uint8_t> data_u8;
  std::vector<float> data_f32;
  std::vector<int32_t> perm;
  explicit GatherCase(const GoldenCase& c) {
    const auto& m = c.manifest;
    u8 = m.at("dtype").get<std::string>() == "uint8";
    dim = m.at("dim").get<int>();
    rows = m.at("rows").get<int>();
    first = m.at("first").get<int32_t>();
    scale = m.at("scale").get<float>();
    offset = m.at("offset").get<float>();
    binarize = m.at("binarize").get<bool>();
    seed = m.at("seed").get<uint64_t>();
    draw = m.at("draw").get<uint64_t>();
    if (u8)
      data_u8 = c.u8("data");
    else
      data_f32 = c.f32("data");
    perm = c.i32("perm");
  }
  Tolerance tol() const { return binarize ? kBinarisedTol : kGatherTol; }
  std::string label() const {
    return std::string(u8 ? "u8" : "f32") + (binarize ? " binarised out" : " out");
  }
};

TEST(GatherGolden, CpuMatchesFloat64Reference) {
  AccuracySummary summary("cpu gather_batch");
  for (const GoldenCase& c : test::golden_cases("gather_batch")) {
    SCOPED_TRACE(c.name);
    const GatherCase g(c);
    std::vector<float> out = guarded_output(static_cast<size_t>(g.rows) * g.dim);
    cpu::gather_batch(g.u8 ? g.data_u8.data() : nullptr, g.u8 ? nullptr : g.data_f32.data(), g.dim,
                      g.perm.data(), &g.first, g.rows, g.scale, g.offset, g.binarize,
                      RngState{g.seed, &g.draw}, tensor(out));
    check(c, "out", test::strip_guards(out, c.name + "/out"), g.tol(), &summary, g.label());
  }
}

TEST(GatherGolden, GpuMatchesFloat64Reference) {
  FUSEDVAE_REQUIRE_GPU();
  AccuracySummary summary("gpu gather_batch");
  for (const GoldenCase& c : test::golden_cases("gather_batch")) {
    SCOPED_TRACE(c.name);
    const GatherCase g(c);
    DeviceArray<uint8_t> data_u8(g.data_u8);
    DeviceArray<float> data_f32(g.data_f32);
    DeviceArray<int32_t> perm(g.perm), first(std::vector<int32_t>{g.first});
    test::DeviceScalar<uint64_t> draw(g.draw);
    test::DeviceBuffer out(guarded_output(static_cast<size_t>(g.rows) * g.dim));
    gpu::gather_batch(g.u8 ? data_u8.get() : nullptr, g.u8 ? nullptr : data_f32.get(), g.dim,
                      perm.get(), first.get(), g.rows, g.scale, g.offset, g.binarize,
                      RngState{g.seed, draw.get()}, tensor(out), nullptr);
    check(c, "out", test::strip_guards(out.to_host(), c.name + "/out"), g.tol(), &summary,
          g.label());
  }
}

// The permutation is integer: it must equal the reference's (Philox keys, stable sort) exactly,
// ties included (one case holds equal keys).
void expect_golden_permutation(const GoldenCase& c, const std::vector<int32_t>& perm) {
  const std::vector<int32_t> expected = c.i32("perm");
  ASSERT_EQ(perm.size(), expected.size());
  size_t mismatches = 0, first_mismatch = 0;
  for (size_t i = 0; i < perm.size(); ++i)
    if (perm[i] != expected[i] && mismatches++ == 0) first_mismatch = i;
  EXPECT_EQ(mismatches, 0u) << c.name << ": " << mismatches << " of " << perm.size()
                            << " positions differ, first at " << first_mismatch << ": "
                            << perm[first_mismatch] << " vs " << expected[first_mismatch];
  std::printf("[ exact    ] shuffle_indices/%s: %zu rows, %zu differ (%d tied keys)\n",
              c.name.c_str(), perm.size(), mismatches, c.manifest.at("tied_keys").get<int>());
}

TEST(ShuffleGolden, CpuEqualsReferencePermutation) {
  for (const GoldenCase& c : test::golden_cases("shuffle_indices")) {
    SCOPED_TRACE(c.name);
    const int rows = c.manifest.at("rows").get<int>();
    std::vector<int32_t> perm(rows, -1);
    cpu::shuffle_indices(rows, c.manifest.at("seed").get<uint64_t>(),
                         c.manifest.at("epoch").get<uint64_t>(), perm.data());
    expect_golden_permutation(c, perm);
  }
}

TEST(ShuffleGolden, GpuEqualsReferencePermutation) {
  FUSEDVAE_REQUIRE_GPU();
  for (const GoldenCase& c : test::golden_cases("shuffle_indices")) {
    SCOPED_TRACE(c.name);
    const int rows = c.manifest.at("rows").get<int>();
    gpu::ShuffleWorkspace ws = gpu::create_shuffle_workspace(rows);
    DeviceArray<int32_t> perm(std::vector<int32_t>(rows, -1));
    gpu::shuffle_indices(rows, c.manifest.at("seed").get<uint64_t>(),
                         c.manifest.at("epoch").get<uint64_t>(), perm.get(), ws, nullptr);
    expect_golden_permutation(c, perm.to_host());
    gpu::destroy_shuffle_workspace(&ws);
  }
}

// ---------------------------------------------------------------------------------------------
// Global gradient norm and clip factor

TEST(GradNormGolden, CpuMatchesFloat64Reference) {
  AccuracySummary summary("cpu global_grad_norm");
  for (const GoldenCase& c : test::golden_cases("global_grad_norm")) {
    SCOPED_TRACE(c.name);
    const std::vector<float> grads = c.f32("grads");
    std::vector<float> out = guarded_output(2);
    cpu::global_grad_norm(grads.data(), grads.size(), c.manifest.at("max_norm").get<float>(),
                          tensor(out), tensor(out) + 1);
    const std::vector<float> values = test::strip_guards(out, c.name);
    check(c, "grad_norm", {values[0]}, kGradNormTol, &summary);
    check(c, "grad_scale", {values[1]}, kGradNormTol, &summary);
  }
}

TEST(GradNormGolden, GpuMatchesFloat64Reference) {
  FUSEDVAE_REQUIRE_GPU();
  gpu::GradNormWorkspace ws = gpu::create_grad_norm_workspace();
  for (const int block : {32, 256, 1024}) {
    AccuracySummary summary("gpu global_grad_norm, block " + std::to_string(block));
    for (const GoldenCase& c : test::golden_cases("global_grad_norm")) {
      SCOPED_TRACE(c.name + ", block " + std::to_string(block));
      const std::vector<float> grads_host = c.f32("grads");
      test::DeviceBuffer grads(grads_host), out(guarded_output(2));
      gpu::global_grad_norm(grads.get(), grads_host.size(), c.manifest.at("max_norm").get<float>(),
                            tensor(out), tensor(out) + 1, ws, nullptr, block);
      const std::vector<float> values = test::strip_guards(out.to_host(), c.name);
      check(c, "grad_norm", {values[0]}, kGradNormTol, &summary);
      check(c, "grad_scale", {values[1]}, kGradNormTol, &summary);
    }
  }
  gpu::destroy_grad_norm_workspace(&ws);
}

// ---------------------------------------------------------------------------------------------
// AdamW, several steps

struct AdamwCase {
  size_t count = 0;
  std::vector<uint64_t> steps;
  std::vector<float> lrs;
  OptimizerConfig opt;
  bool clipped = false;
  float grad_scale = 1.0f;
  std::vector<float> params, m, v, grads;  // grads: [steps, count]
  explicit AdamwCase(const GoldenCase& c) {
    const auto& j = c.manifest;
    count = j.at("count").get<size_t>();
    steps = j.at("steps").get<std::vector<uint64_t>>();
    lrs = j.at("lrs").get<std::vector<float>>();
    opt.beta1 = j.at("beta1").get<float>();
    opt.beta2 = j.at("beta2").get<float>();
    opt.eps = j.at("eps").get<float>();
    opt.weight_decay = j.at("weight_decay").get<float>();
    clipped = !j.at("grad_scale").is_null();
    if (clipped) grad_scale = j.at("grad_scale").get<float>();
    params = test::with_guards(c.f32("params"));
    m = test::with_guards(c.f32("m"));
    v = test::with_guards(c.f32("v"));
    grads = c.f32("grads");
    EXPECT_EQ(grads.size(), steps.size() * count) << c.name;
    EXPECT_EQ(lrs.size(), steps.size()) << c.name;
  }
  StepState state(size_t k) const {
    StepState s;
    s.step = steps[k];
    s.lr = lrs[k];
    return s;
  }
};

void check_adamw(const GoldenCase& c, const std::vector<float>& params, const std::vector<float>& m,
                 const std::vector<float>& v, AccuracySummary* summary) {
  check(c, "params_new", test::strip_guards(params, c.name + "/params"), kAdamParamsTol, summary);
  check(c, "m_new", test::strip_guards(m, c.name + "/m"), kAdamMTol, summary);
  check(c, "v_new", test::strip_guards(v, c.name + "/v"), kAdamVTol, summary);
}

TEST(AdamwGolden, CpuSeveralStepsMatchFloat64Reference) {
  AccuracySummary summary("cpu adamw_update");
  for (const GoldenCase& c : test::golden_cases("adamw_update")) {
    SCOPED_TRACE(c.name);
    AdamwCase a(c);
    for (size_t k = 0; k < a.steps.size(); ++k) {
      const StepState state = a.state(k);
      cpu::adamw_update(tensor(a.params), tensor(a.m), tensor(a.v), a.grads.data() + k * a.count,
                        a.count, &state, a.opt, a.clipped ? &a.grad_scale : nullptr);
    }
    check_adamw(c, a.params, a.m, a.v, &summary);
  }
}

TEST(AdamwGolden, GpuSeveralStepsMatchFloat64Reference) {
  FUSEDVAE_REQUIRE_GPU();
  AccuracySummary summary("gpu adamw_update");
  for (const GoldenCase& c : test::golden_cases("adamw_update")) {
    SCOPED_TRACE(c.name);
    const AdamwCase a(c);
    test::DeviceBuffer params(a.params), m(a.m), v(a.v), grads(a.grads);
    test::DeviceScalar<float> grad_scale(a.grad_scale);
    DeviceArray<StepState> state(std::vector<StepState>(1));
    for (size_t k = 0; k < a.steps.size(); ++k) {
      const StepState s = a.state(k);
      test::copy_to_device(state.get(), &s, sizeof s);
      gpu::adamw_update(tensor(params), tensor(m), tensor(v), grads.get() + k * a.count, a.count,
                        state.get(), a.opt, a.clipped ? grad_scale.get() : nullptr, nullptr);
    }
    check_adamw(c, params.to_host(), m.to_host(), v.to_host(), &summary);
  }
}

// ---------------------------------------------------------------------------------------------
// Free bits

struct FreeBitsCase {
  int batch = 0, dim = 0;
  LogvarClamp clamp;
  float free_bits = 0;
  std::vector<float> mu, logvar;
  explicit FreeBitsCase(const GoldenCase& c) {
    batch = c.manifest.at("batch").get<int>();
    dim = c.manifest.at("dim").get<int>();
    clamp = {c.manifest.at("clamp_min").get<float>(), c.manifest.at("clamp_max").get<float>()};
    free_bits = c.manifest.at("free_bits").get<float>();
    mu = c.f32("mu");
    logvar = c.f32("logvar");
  }
};

TEST(FreeBitsGolden, CpuForwardMatchesFloat64Reference) {
  AccuracySummary summary("cpu free_bits_forward");
  for (const GoldenCase& c : test::golden_cases("free_bits_forward")) {
    SCOPED_TRACE(c.name);
    const FreeBitsCase f(c);
    std::vector<float> means = guarded_output(f.dim), floored = guarded_output(1);
    cpu::free_bits_forward(f.mu.data(), f.logvar.data(), f.batch, f.dim, f.clamp, f.free_bits,
                           tensor(means), tensor(floored));
    check(c, "kl_dim_mean", test::strip_guards(means, c.name + "/kl_dim_mean"), kFreeBitsMeanCpuTol,
          &summary);
    check(c, "kl_floored", test::strip_guards(floored, c.name + "/kl_floored"),
          kFreeBitsFlooredCpuTol, &summary);
  }
}

TEST(FreeBitsGolden, GpuForwardMatchesFloat64Reference) {
  FUSEDVAE_REQUIRE_GPU();
  AccuracySummary summary("gpu free_bits_forward");
  for (const GoldenCase& c : test::golden_cases("free_bits_forward")) {
    SCOPED_TRACE(c.name);
    const FreeBitsCase f(c);
    test::DeviceBuffer mu(f.mu), logvar(f.logvar);
    test::DeviceBuffer means(guarded_output(f.dim)), floored(guarded_output(1));
    gpu::free_bits_forward(mu.get(), logvar.get(), f.batch, f.dim, f.clamp, f.free_bits,
                           tensor(means), tensor(floored), nullptr);
    check(c, "kl_dim_mean", test::strip_guards(means.to_host(), c.name + "/kl_dim_mean"),
          free_bits_mean_gpu_tol(f.batch), &summary);
    check(c, "kl_floored", test::strip_guards(floored.to_host(), c.name + "/kl_floored"),
          free_bits_floored_gpu_tol(f.batch, f.dim), &summary);
  }
}

struct FreeBitsBackwardCase : FreeBitsCase {
  float kl_weight = 0, loss_scale = 0;
  BatchReduction reduction = BatchReduction::kMean;
  std::vector<float> kl_dim_mean, dmu, dlogvar;
  explicit FreeBitsBackwardCase(const GoldenCase& c) : FreeBitsCase(c) {
    kl_weight = c.manifest.at("kl_weight").get<float>();
    loss_scale = c.manifest.at("loss_scale").get<float>();
    reduction = test::golden_reduction(c);
    kl_dim_mean = c.f32("kl_dim_mean");
    dmu = test::with_guards(c.f32("dmu"));
    dlogvar = test::with_guards(c.f32("dlogvar"));
  }
};

TEST(FreeBitsGolden, CpuBackwardMatchesFloat64Reference) {
  AccuracySummary summary("cpu free_bits_backward");
  for (const GoldenCase& c : test::golden_cases("free_bits_backward")) {
    SCOPED_TRACE(c.name);
    FreeBitsBackwardCase f(c);
    cpu::free_bits_backward(f.mu.data(), f.logvar.data(), f.kl_dim_mean.data(), f.batch, f.dim,
                            f.clamp, f.free_bits, &f.kl_weight, f.loss_scale, f.reduction,
                            tensor(f.dmu), tensor(f.dlogvar));
    check(c, "dmu_new", test::strip_guards(f.dmu, c.name + "/dmu"), kFreeBitsDmuTol, &summary);
    check(c, "dlogvar_new", test::strip_guards(f.dlogvar, c.name + "/dlogvar"), kFreeBitsDlogvarTol,
          &summary);
  }
}

TEST(FreeBitsGolden, GpuBackwardMatchesFloat64Reference) {
  FUSEDVAE_REQUIRE_GPU();
  AccuracySummary summary("gpu free_bits_backward");
  for (const GoldenCase& c : test::golden_cases("free_bits_backward")) {
    SCOPED_TRACE(c.name);
    const FreeBitsBackwardCase f(c);
    test::DeviceBuffer mu(f.mu), logvar(f.logvar), means(f.kl_dim_mean);
    test::DeviceBuffer dmu(f.dmu), dlogvar(f.dlogvar);
    test::DeviceScalar<float> kl_weight(f.kl_weight);
    gpu::free_bits_backward(mu.get(), logvar.get(), means.get(), f.batch, f.dim, f.clamp,
                            f.free_bits, kl_weight.get(), f.loss_scale, f.reduction, tensor(dmu),
                            tensor(dlogvar), nullptr);
    check(c, "dmu_new", test::strip_guards(dmu.to_host(), c.name + "/dmu"), kFreeBitsDmuTol,
          &summary);
    check(c, "dlogvar_new", test::strip_guards(dlogvar.to_host(), c.name + "/dlogvar"),
          kFreeBitsDlogvarTol, &summary);
  }
}

// ---------------------------------------------------------------------------------------------
// Step state: the schedules after each advance

struct ScheduleCase {
  KlSchedule kl;
  OptimizerConfig opt;
  uint64_t total_steps = 0;
  std::vector<uint64_t> steps;
  explicit ScheduleCase(const GoldenCase& c) {
    const auto& j = c.manifest;
    const std::string kind = j.at("kl_schedule").get<std::string>();
    const std::vector<std::pair<std::string, KlScheduleKind>> kinds = {
        {"constant", KlScheduleKind::kConstant},
        {"linear", KlScheduleKind::kLinear},
        {"logistic", KlScheduleKind::kLogistic},
        {"cyclical", KlScheduleKind::kCyclical}};
    bool known = false;
    for (const auto& [name, value] : kinds)
      if (name == kind) kl.kind = value, known = true;
    if (!known) ADD_FAILURE() << c.name << ": unknown KL schedule " << kind;
    kl.weight = j.at("kl_weight").get<float>();
    kl.x0 = j.at("x0").get<float>();
    kl.k = j.at("k").get<float>();
    kl.cycle_steps = j.at("cycle_steps").get<int64_t>();
    kl.cycle_ratio = j.at("cycle_ratio").get<float>();
    opt.schedule = j.at("lr_schedule").get<std::string>() == "cosine" ? LrSchedule::kCosine
                                                                      : LrSchedule::kConstant;
    opt.lr = j.at("lr").get<float>();
    opt.min_lr = j.at("min_lr").get<float>();
    total_steps = j.at("total_steps").get<uint64_t>();
    steps = j.at("steps").get<std::vector<uint64_t>>();
  }
  // The state before `step`'s advance: one step earlier, a draw index of its own, and schedule
  // fields poisoned (the advance must write both).
  StepState before(uint64_t step) const {
    StepState s;
    s.step = step - 1;
    s.draw_index = 1000 + step;
    s.kl_weight = test::poison_value();
    s.lr = test::poison_value();
    return s;
  }
};

void check_schedules(const GoldenCase& c, const std::vector<float>& kl_weight,
                     const std::vector<float>& lr, AccuracySummary* summary) {
  check(c, "kl_weight", kl_weight, kKlWeightTol, summary,
        c.manifest.at("kl_schedule").get<std::string>() + " kl_weight");
  check(c, "lr", lr, kLrTol, summary, c.manifest.at("lr_schedule").get<std::string>() + " lr");
}

// Step 0 is the initial state (math::initial_step_state, which both trainers start from); every
// later step is the twin's advance from the step before.
TEST(StepStateGolden, CpuSchedulesMatchFloat64Reference) {
  AccuracySummary summary("cpu step_state");
  for (const GoldenCase& c : test::golden_cases("step_state")) {
    SCOPED_TRACE(c.name);
    const ScheduleCase s(c);
    std::vector<float> kl_weight, lr;
    for (const uint64_t step : s.steps) {
      StepState state;
      if (step == 0) {
        state = math::initial_step_state(s.kl, s.opt, s.total_steps);
        EXPECT_EQ(state.draw_index, 0u);
      } else {
        state = s.before(step);
        cpu::advance_step_state(&state, s.kl, s.opt, s.total_steps);
        EXPECT_EQ(state.draw_index, 1001 + step) << "the draw index advances by one";
      }
      EXPECT_EQ(state.step, step);
      kl_weight.push_back(state.kl_weight);
      lr.push_back(state.lr);
    }
    check_schedules(c, kl_weight, lr, &summary);
  }
}

// The kernel has no step-0 face (the initial state is made on the host): steps >= 1.
TEST(StepStateGolden, GpuSchedulesMatchFloat64Reference) {
  FUSEDVAE_REQUIRE_GPU();
  AccuracySummary summary("gpu step_state");
  for (const GoldenCase& c : test::golden_cases("step_state")) {
    SCOPED_TRACE(c.name);
    const ScheduleCase s(c);
    std::vector<float> kl_weight, lr;
    std::vector<double> kl_ref, lr_ref, kl_mag, lr_mag;
    const auto kl_all = c.f64("kl_weight"), lr_all = c.f64("lr");
    const auto kl_mag_all = c.f64("kl_weight_mag"), lr_mag_all = c.f64("lr_mag");
    for (size_t i = 0; i < s.steps.size(); ++i) {
      const uint64_t step = s.steps[i];
      if (step == 0) continue;
      DeviceArray<StepState> state(std::vector<StepState>{s.before(step)});
      gpu::advance_step_state(state.get(), s.kl, s.opt, s.total_steps, nullptr);
      const StepState after = state.to_host()[0];
      EXPECT_EQ(after.step, step);
      EXPECT_EQ(after.draw_index, 1001 + step);
      kl_weight.push_back(after.kl_weight);
      lr.push_back(after.lr);
      kl_ref.push_back(kl_all[i]);
      lr_ref.push_back(lr_all[i]);
      kl_mag.push_back(kl_mag_all[i]);
      lr_mag.push_back(lr_mag_all[i]);
    }
    const std::string kl_kind = c.manifest.at("kl_schedule").get<std::string>();
    const std::string lr_kind = c.manifest.at("lr_schedule").get<std::string>();
    summary.add(kl_kind + " kl_weight", c.name,
                test::expect_close(c.op + "/" + c.name + "/kl_weight", kl_weight, kl_ref, &kl_mag,
                                   kKlWeightTol));
    summary.add(lr_kind + " lr", c.name,
                test::expect_close(c.op + "/" + c.name + "/lr", lr, lr_ref, &lr_mag, kLrTol));
  }
}

}  // namespace
}  // namespace fusedvae
