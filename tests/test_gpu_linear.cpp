// @brief The cuBLASLt Linear layers (forward, input and weight gradients, every epilogue and its
// kernel fallback) and their elementwise kernels, against float64 CPU references on random data
// with odd sizes; the kernels also against their CPU twins.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "host/ops/activation_cpu.h"
#include "host/ops/bias_cpu.h"
#include "host/train/gpu/cublaslt_linear.h"
#include "kernels/activation.h"
#include "kernels/bias.h"
#include "kernels/cuda_check.h"
#include "tests/support/test_support.h"

namespace fusedvae {
namespace {

using gpu::CublasLtLinear;
using test::DeviceBuffer;
using test::expect_close;
using test::Tolerance;

// Unit roundoff of float32.
constexpr double kFloatEps = 5.9604644775390625e-8;  // 2^-24

using test::random_floats;

// A float32 sum of k products carries an error of at most about k * u times the sum of the
// products' magnitudes (the classical bound for any summation order, which covers cuBLASLt's
// blocked orders); the factor 2 leaves room for the rounding of the products and of the bias.
// TF32 rounds each input to 10 mantissa bits first: relative 2^-11 per input, 2 * 2^-11 per
// product, on top of the float32 accumulation.
Tolerance product_tolerance(int k, bool tf32) {
  const double accumulate = 2.0 * (k + 2) * kFloatEps;
  return {1e-30, accumulate + (tf32 ? 2.0 * std::ldexp(1.0, -11) : 0.0)};
}

double derivative_from_output(Activation act, double y) {
  if (act == Activation::kRelu) return y > 0.0 ? 1.0 : 0.0;
  if (act == Activation::kTanh) return 1.0 - y * y;
  return 1.0;
}

// ----------------------------------------------------------------------------------------------
// Elementwise kernels

struct Shape {
  int rows;
  int cols;
};
const Shape kElementwiseShapes[] = {{1, 1}, {3, 5}, {7, 130}, {33, 67}, {257, 401}};

TEST(LinearKernels, BiasActivationForwardMatchesReferenceAndTwin) {
  FUSEDVAE_REQUIRE_GPU();
  for (const Shape s : kElementwiseShapes)
    for (const Activation act : {Activation::kRelu, Activation::kTanh}) {
      const std::string name = std::string(activation_name(act)) + " " + std::to_string(s.rows) +
                               "x" + std::to_string(s.cols);
      const size_t n = static_cast<size_t>(s.rows) * s.cols;
      const std::vector<float> y0 = random_floats(n, -3.0f, 3.0f, 11 + s.cols);
      const std::vector<float> bias = random_floats(s.cols, -1.0f, 1.0f, 12 + s.rows);
      DeviceBuffer y(y0), b(bias);
      gpu::bias_activation_forward(y.get(), b.get(), s.rows, s.cols, act, nullptr);
      FUSEDVAE_CUDA_CHECK(cudaDeviceSynchronize());
      const std::vector<float> got = y.to_host();
      std::vector<double> ref(n);
      for (size_t i = 0; i < n; ++i) {
        const double pre = static_cast<double>(y0[i] + bias[i % s.cols]);  // the add is in float
        ref[i] = act == Activation::kTanh ? std::tanh(pre) : (pre > 0.0 ? pre : 0.0);
      }
      // ReLU is exact; CUDA's tanhf is within 2 ulp of the rounded value (CUDA C Programming
      // Guide, maths functions), so 4 u relative plus an absolute floor for results near 0.
      expect_close(name, got, ref, nullptr, {1e-30, 4.0 * kFloatEps});
      if (act == Activation::kRelu) {
        std::vector<float> twin = y0;
        cpu::bias_activation_forward(twin.data(), bias.data(), s.rows, s.cols, act);
        test::expect_bitwise_equal(got, twin, name + " twin");
      }
    }
}

TEST(LinearKernels, ActivationBackwardMatchesReference) {
  FUSEDVAE_REQUIRE_GPU();
  for (const Shape s : kElementwiseShapes)
    for (const Activation act : {Activation::kRelu, Activation::kTanh}) {
      const std::string name = std::string(activation_name(act)) + " " + std::to_string(s.rows) +
                               "x" + std::to_string(s.cols);
      const size_t n = static_cast<size_t>(s.rows) * s.cols;
      // Outputs as the activation produces them: ReLU's >= 0 with exact zeros, tanh's in (-1, 1).
      std::vector<float> y = random_floats(n, -1.0f, 1.0f, 21 + s.cols);
      if (act == Activation::kRelu)
        for (auto& v : y) v = v > 0.0f ? 2.0f * v : 0.0f;
      const std::vector<float> dy0 = random_floats(n, -2.0f, 2.0f, 22 + s.rows);
      DeviceBuffer y_dev(y), dy(dy0);
      gpu::activation_backward(y_dev.get(), dy.get(), s.rows, s.cols, act, nullptr);
      FUSEDVAE_CUDA_CHECK(cudaDeviceSynchronize());
      const std::vector<float> got = dy.to_host();
      std::vector<double> ref(n);
      for (size_t i = 0; i < n; ++i) ref[i] = dy0[i] * derivative_from_output(act, y[i]);
      // Two roundings (1 - y^2, then the product) and possibly one fused multiply-add: 3 u.
      expect_close(name, got, ref, nullptr, {1e-30, 3.0 * kFloatEps});
      std::vector<float> twin = dy0;
      cpu::activation_backward(y.data(), twin.data(), s.rows, s.cols, act);
      if (act == Activation::kRelu) test::expect_bitwise_equal(got, twin, name + " twin");
    }
}

TEST(LinearKernels, BiasAddAndBiasGradientMatchReferenceAndTwin) {
  FUSEDVAE_REQUIRE_GPU();
  for (const Shape s : kElementwiseShapes) {
    const std::string name = std::to_string(s.rows) + "x" + std::to_string(s.cols);
    const size_t n = static_cast<size_t>(s.rows) * s.cols;
    const std::vector<float> y0 = random_floats(n, -3.0f, 3.0f, 31 + s.cols);
    const std::vector<float> bias = random_floats(s.cols, -1.0f, 1.0f, 32 + s.rows);
    DeviceBuffer y(y0), b(bias), grad(static_cast<size_t>(s.cols));
    grad.poison();
    gpu::bias_add(y.get(), b.get(), s.rows, s.cols, nullptr);
    gpu::bias_gradient(y.get(), s.rows, s.cols, grad.get(), nullptr);
    FUSEDVAE_CUDA_CHECK(cudaDeviceSynchronize());
    const std::vector<float> got_y = y.to_host();
    const std::vector<float> got_grad = grad.to_host();
    test::expect_all_written(got_grad, name + " bias gradient");

    std::vector<float> twin_y = y0, twin_grad(s.cols);
    cpu::bias_add(twin_y.data(), bias.data(), s.rows, s.cols);
    cpu::bias_gradient(twin_y.data(), s.rows, s.cols, twin_grad.data());
    test::expect_bitwise_equal(got_y, twin_y, name + " bias add twin");
    test::expect_bitwise_equal(got_grad, twin_grad, name + " bias gradient twin");

    std::vector<double> ref(s.cols, 0.0), mag(s.cols, 0.0);
    for (int r = 0; r < s.rows; ++r)
      for (int c = 0; c < s.cols; ++c) {
        const double v = twin_y[static_cast<size_t>(r) * s.cols + c];
        ref[c] += v;
        mag[c] += std::fabs(v);
      }
    // A float sum of `rows` terms, in order: error <= (rows - 1) u sum|terms|.
    expect_close(name + " bias gradient", got_grad, ref, &mag, {1e-30, (s.rows + 1) * kFloatEps});
  }
}

// The CPU twins alone (these run without a GPU): against the float64 sums.
TEST(LinearKernelTwins, BiasAddAndBiasGradientMatchReference) {
  for (const Shape s : kElementwiseShapes) {
    const std::string name = std::to_string(s.rows) + "x" + std::to_string(s.cols);
    const size_t n = static_cast<size_t>(s.rows) * s.cols;
    std::vector<float> y = random_floats(n, -3.0f, 3.0f, 41 + s.cols);
    const std::vector<float> y0 = y;
    const std::vector<float> bias = random_floats(s.cols, -1.0f, 1.0f, 42 + s.rows);
    std::vector<float> grad = test::poisoned(s.cols);
    cpu::bias_add(y.data(), bias.data(), s.rows, s.cols);
    cpu::bias_gradient(y0.data(), s.rows, s.cols, grad.data());
    test::expect_all_written(grad, name + " bias gradient");
    std::vector<double> y_ref(n), ref(s.cols, 0.0), mag(s.cols, 0.0);
    for (size_t i = 0; i < n; ++i) {
      y_ref[i] = static_cast<double>(y0[i]) + bias[i % s.cols];
      ref[i % s.cols] += y0[i];
      mag[i % s.cols] += std::fabs(y0[i]);
    }
    // One float addition: half an ulp of the result.
    expect_close(name + " bias add", y, y_ref, nullptr, {1e-30, kFloatEps});
    // A float sum of `rows` terms, in order: error <= (rows - 1) u sum|terms|.
    expect_close(name + " bias gradient", grad, ref, &mag, {1e-30, (s.rows + 1) * kFloatEps});
  }
  EXPECT_THROW(cpu::bias_gradient(nullptr, 0, 3, nullptr), std::invalid_argument);
}

// ----------------------------------------------------------------------------------------------
// Linear layers

struct LinearCase {
  int batch;
  int in;
  int out;
};
// One element, odd sizes, sizes straddling the 128-bit mask leading dimension, and the MNIST
// encoder's first layer.
const LinearCase kLinearCases[] = {
    {1, 1, 1}, {3, 5, 7}, {7, 13, 129}, {33, 130, 67}, {128, 784, 400}};

// x [rows, in] W^T + b in double, W [out, in] at params[w], b at params[b], with the sum of the
// terms' magnitudes per element (what a float32 result's error is proportional to).
struct Reference {
  std::vector<double> value;
  std::vector<double> magnitude;
};
Reference dense_reference(const std::vector<float>& x, int rows, int in,
                          const std::vector<float>& params, size_t w, size_t b, int out) {
  Reference ref{std::vector<double>(static_cast<size_t>(rows) * out),
                std::vector<double>(static_cast<size_t>(rows) * out)};
  for (int r = 0; r < rows; ++r)
    for (int j = 0; j < out; ++j) {
      double sum = params[b + j], mag = std::fabs(params[b + j]);
      for (int k = 0; k < in; ++k) {
        const double t = static_cast<double>(x[static_cast<size_t>(r) * in + k]) *
                         params[w + static_cast<size_t>(j) * in + k];
        sum += t;
        mag += std::fabs(t);
      }
      ref.value[static_cast<size_t>(r) * out + j] = sum;
      ref.magnitude[static_cast<size_t>(r) * out + j] = mag;
    }
  return ref;
}

// A two-layer chain, below -> above, so that the backward of `above` exercises the ReLU mask and
// the activation derivative written by `below`. All buffers from cudaMalloc (256-byte aligned);
// the weights sit at odd float offsets inside one buffer, as in the flat parameter buffer.
struct Chain {
  LinearCase c;
  int hidden;  // below: in -> hidden (activated), above: hidden -> out
  Activation act;
  bool tf32;
  bool fused;
};

void run_chain(const Chain& ch) {
  const LinearCase& c = ch.c;
  const int B = c.batch, in = c.in, H = ch.hidden, out = c.out;
  const std::string name = "batch " + std::to_string(B) + " " + std::to_string(in) + "->" +
                           std::to_string(H) + "->" + std::to_string(out) + " act " +
                           std::to_string(static_cast<int>(ch.act)) + (ch.tf32 ? " tf32" : "") +
                           (ch.fused ? " fused" : " unfused");
  SCOPED_TRACE(name);

  // Flat parameters: W1 [H, in], b1 [H], W2 [out, H], b2 [out], with a one-float gap in front so
  // the weights are only 4-byte aligned when the sizes are odd.
  const size_t w1 = 1, b1 = w1 + static_cast<size_t>(H) * in, w2 = b1 + H,
               b2 = w2 + static_cast<size_t>(out) * H, total = b2 + out;
  const std::vector<float> params = random_floats(total, -0.5f, 0.5f, 100 + B + in);
  const std::vector<float> x = random_floats(static_cast<size_t>(B) * in, -1.0f, 1.0f, 200 + H);
  const std::vector<float> dy = random_floats(static_cast<size_t>(B) * out, -1.0f, 1.0f, 300 + out);
  DeviceBuffer p(params), grads(total), x_dev(x), dy_dev(dy);
  DeviceBuffer h(static_cast<size_t>(B) * H), y(static_cast<size_t>(B) * out),
      dh(static_cast<size_t>(B) * H);
  grads.poison();
  h.poison();
  y.poison();
  dh.poison();
  void* mask = nullptr;
  FUSEDVAE_CUDA_CHECK(cudaMalloc(&mask, gpu::relu_mask_bytes(H, B)));

  gpu::LinearEngine engine(ch.tf32);
  gpu::LinearSpec below_spec{in, H, ch.act, Activation::kIdentity, false, false};
  gpu::LinearSpec above_spec{H, out, Activation::kIdentity, ch.act, true, false};
  gpu::LinearAlignment below_align{p.get() + w1, p.get() + b1, grads.get() + w1, grads.get() + b1};
  gpu::LinearAlignment above_align{p.get() + w2, p.get() + b2, grads.get() + w2, grads.get() + b2};
  CublasLtLinear below(engine, below_spec, below_align, ch.fused);
  CublasLtLinear above(engine, above_spec, above_align, ch.fused);
  below.add_batch(B, false);
  above.add_batch(B, below.writes_relu_mask(B));
  const gpu::LinearPaths bp = below.paths(B), ap = above.paths(B);
  std::printf(
      "[ paths    ] %s: below fwd act %d bias %d bgrad %d; above fwd bias %d drelu %d "
      "bgrad %d; declined: below [%s] above [%s]\n",
      name.c_str(), bp.forward_fused_act, bp.forward_fused_bias, bp.weight_fused_bgrad,
      ap.forward_fused_bias, ap.input_fused_drelu, ap.weight_fused_bgrad,
      below.declined_epilogues(B).c_str(), above.declined_epilogues(B).c_str());
  if (!ch.fused) {
    EXPECT_FALSE(bp.forward_fused_act || bp.forward_fused_bias || bp.weight_fused_bgrad);
    EXPECT_FALSE(ap.forward_fused_bias || ap.input_fused_drelu || ap.weight_fused_bgrad);
  }

  below.forward(B, x_dev.get(), p.get() + w1, p.get() + b1, h.get(), mask, nullptr);
  above.forward(B, h.get(), p.get() + w2, p.get() + b2, y.get(), nullptr, nullptr);
  above.backward_weight(B, dy_dev.get(), h.get(), grads.get() + w2, grads.get() + b2, nullptr);
  above.backward_input(B, dy_dev.get(), p.get() + w2, h.get(), mask, dh.get(), nullptr);
  below.backward_weight(B, dh.get(), x_dev.get(), grads.get() + w1, grads.get() + b1, nullptr);
  FUSEDVAE_CUDA_CHECK(cudaDeviceSynchronize());
  cudaFree(mask);

  const std::vector<float> h_got = h.to_host(), y_got = y.to_host(), dh_got = dh.to_host(),
                           g_got = grads.to_host();
  test::expect_all_written(h_got, "h");
  test::expect_all_written(y_got, "y");
  test::expect_all_written(dh_got, "dh");
  test::expect_all_written(std::vector<float>(g_got.begin() + 1, g_got.end()), "gradients");

  // Each stage's reference takes the GPU's own float inputs of that stage (h, dh), so that every
  // comparison measures one layer's arithmetic; the activation decisions (ReLU's sign) then agree.
  auto at = [](const std::vector<float>& m, int r, int cols, int c) {
    return static_cast<double>(m[static_cast<size_t>(r) * cols + c]);
  };
  // h = act(x W1^T + b1). tanh' <= 1 and ReLU' in {0, 1}: the pre-activation's error bound carries
  // over, plus the 2 ulp of tanhf (relative to |h| <= the pre-activation magnitude).
  Reference h_ref = dense_reference(x, B, in, params, w1, b1, H);
  for (double& v : h_ref.value)
    v = ch.act == Activation::kTanh ? std::tanh(v) : (v > 0.0 ? v : 0.0);
  Tolerance tol_in = product_tolerance(in, ch.tf32);
  tol_in.rel += 4.0 * kFloatEps;
  expect_close("h", h_got, h_ref.value, &h_ref.magnitude, tol_in);

  // y = h W2^T + b2, from the GPU's h.
  const Reference y_ref = dense_reference(h_got, B, H, params, w2, b2, out);
  expect_close("y", y_got, y_ref.value, &y_ref.magnitude, product_tolerance(H, ch.tf32));

  // dh = (dy W2) * act'(h), from the GPU's h.
  std::vector<double> dh_ref(static_cast<size_t>(B) * H), dh_mag(dh_ref.size());
  for (int r = 0; r < B; ++r)
    for (int k = 0; k < H; ++k) {
      double s = 0.0, m = 0.0;
      for (int j = 0; j < out; ++j) {
        const double t = at(dy, r, out, j) * params[w2 + static_cast<size_t>(j) * H + k];
        s += t;
        m += std::fabs(t);
      }
      const double d = derivative_from_output(ch.act, at(h_got, r, H, k));
      dh_ref[static_cast<size_t>(r) * H + k] = s * d;
      dh_mag[static_cast<size_t>(r) * H + k] = m * std::fabs(d);
    }
  Tolerance tol_out = product_tolerance(out, ch.tf32);
  tol_out.rel += 3.0 * kFloatEps;  // the derivative's own roundings (tanh: 1 - h^2, product)
  expect_close("dh", dh_got, dh_ref, &dh_mag, tol_out);

  // dW2 = dy^T h, db2 = sum_r dy; dW1 = dh^T x, db1 = sum_r dh (from the GPU's dh).
  auto check_weight_grad = [&](const char* what, const std::vector<float>& delta, int rows_out,
                               const std::vector<float>& input, int cols_in, size_t w, size_t b) {
    std::vector<double> ref(static_cast<size_t>(rows_out) * cols_in), mag(ref.size());
    std::vector<double> bref(rows_out, 0.0), bmag(rows_out, 0.0);
    std::vector<float> got(g_got.begin() + w, g_got.begin() + w + ref.size());
    std::vector<float> bgot(g_got.begin() + b, g_got.begin() + b + rows_out);
    for (int j = 0; j < rows_out; ++j)
      for (int r = 0; r < B; ++r) {
        const double dj = at(delta, r, rows_out, j);
        bref[j] += dj;
        bmag[j] += std::fabs(dj);
        for (int k = 0; k < cols_in; ++k) {
          const double t = dj * at(input, r, cols_in, k);
          ref[static_cast<size_t>(j) * cols_in + k] += t;
          mag[static_cast<size_t>(j) * cols_in + k] += std::fabs(t);
        }
      }
    expect_close(std::string(what) + " weight gradient", got, ref, &mag,
                 product_tolerance(B, ch.tf32));
    // A plain sum of B floats; the fused BGRADB epilogue may sum the operand as the TF32 product
    // loaded it, so under TF32 the rounding of the inputs is allowed for as well.
    expect_close(std::string(what) + " bias gradient", bgot, bref, &bmag,
                 product_tolerance(B, ch.tf32));
  };
  check_weight_grad("above", dy, out, h_got, H, w2, b2);
  check_weight_grad("below", dh_got, H, x, in, w1, b1);
}

TEST(GpuLinear, ChainMatchesFloat64ReferenceForEveryPath) {
  FUSEDVAE_REQUIRE_GPU();
  for (const LinearCase& c : kLinearCases)
    for (const Activation act : {Activation::kRelu, Activation::kTanh})
      for (const bool fused : {true, false})
        run_chain({c, c.out % 2 == 0 ? c.out + 1 : c.out + 2, act, false, fused});
}

TEST(GpuLinear, Tf32MatchesFloat64ReferenceWithinTf32Rounding) {
  FUSEDVAE_REQUIRE_GPU();
  for (const LinearCase& c : {kLinearCases[2], kLinearCases[4]})
    run_chain({c, 257, Activation::kRelu, true, true});
}

// Same inputs, same plans: bitwise the same outputs, call after call.
TEST(GpuLinear, RepeatedCallsAreBitwiseIdentical) {
  FUSEDVAE_REQUIRE_GPU();
  const int B = 128, in = 784, out = 400;
  const std::vector<float> w = random_floats(static_cast<size_t>(out) * in, -0.1f, 0.1f, 1);
  const std::vector<float> b = random_floats(out, -0.1f, 0.1f, 2);
  const std::vector<float> x = random_floats(static_cast<size_t>(B) * in, 0.0f, 1.0f, 3);
  DeviceBuffer w_dev(w), b_dev(b), x_dev(x), y(static_cast<size_t>(B) * out),
      dw(static_cast<size_t>(out) * in), db(static_cast<size_t>(out));
  void* mask = nullptr;
  FUSEDVAE_CUDA_CHECK(cudaMalloc(&mask, gpu::relu_mask_bytes(out, B)));
  gpu::LinearEngine engine(false);
  CublasLtLinear layer(engine, {in, out, Activation::kRelu, Activation::kIdentity, false, false},
                       {w_dev.get(), b_dev.get(), dw.get(), db.get()});
  layer.add_batch(B, false);
  std::vector<float> first_y, first_dw, first_db;
  for (int run = 0; run < 3; ++run) {
    layer.forward(B, x_dev.get(), w_dev.get(), b_dev.get(), y.get(), mask, nullptr);
    layer.backward_weight(B, y.get(), x_dev.get(), dw.get(), db.get(), nullptr);
    FUSEDVAE_CUDA_CHECK(cudaDeviceSynchronize());
    if (run == 0) {
      first_y = y.to_host();
      first_dw = dw.to_host();
      first_db = db.to_host();
      continue;
    }
    test::expect_bitwise_equal(y.to_host(), first_y, "y");
    test::expect_bitwise_equal(dw.to_host(), first_dw, "dW");
    test::expect_bitwise_equal(db.to_host(), first_db, "db");
  }
  cudaFree(mask);
}

TEST(GpuLinear, RejectsUnplannedBatchAndMisalignedPointers) {
  FUSEDVAE_REQUIRE_GPU();
  DeviceBuffer w(64), b(8), x(64), y(64);
  gpu::LinearEngine engine(false);
  CublasLtLinear layer(engine, {8, 8, Activation::kIdentity, Activation::kIdentity, false, false},
                       {w.get(), b.get(), nullptr, nullptr});
  layer.add_batch(4, false);
  EXPECT_THROW(layer.forward(5, x.get(), w.get(), b.get(), y.get(), nullptr, nullptr),
               std::invalid_argument);
  // One float past a 256-byte boundary: less aligned than the algorithm was chosen for.
  EXPECT_THROW(layer.forward(4, x.get(), w.get() + 1, b.get(), y.get(), nullptr, nullptr),
               std::invalid_argument);
  EXPECT_THROW(CublasLtLinear(
                   engine, {0, 8, Activation::kIdentity, Activation::kIdentity, false, false}, {}),
               std::invalid_argument);
}

TEST(GpuLinear, PointerAlignmentIsTheLargestPowerOfTwoUpTo256) {
  EXPECT_EQ(gpu::pointer_alignment(reinterpret_cast<const void*>(uintptr_t{4096})), 256u);
  EXPECT_EQ(gpu::pointer_alignment(reinterpret_cast<const void*>(uintptr_t{4100})), 4u);
  EXPECT_EQ(gpu::pointer_alignment(reinterpret_cast<const void*>(uintptr_t{48})), 16u);
  EXPECT_EQ(gpu::relu_mask_ld_bits(1), 128);
  EXPECT_EQ(gpu::relu_mask_ld_bits(129), 256);
  EXPECT_EQ(gpu::relu_mask_bytes(129, 3), 96u);
}

}  // namespace
}  // namespace fusedvae
