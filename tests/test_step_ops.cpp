// @brief The training step's own ops (AdamW, global grad norm + clip factor, step-state advance,
// activations): CPU twins against float64 formulas written here independently, and the kernels
// against their twins (skipped without a GPU).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "host/ops/activation_cpu.h"
#include "host/ops/adamw_cpu.h"
#include "host/ops/free_bits_cpu.h"
#include "host/ops/grad_norm_cpu.h"
#include "host/ops/step_state_cpu.h"
#include "kernels/adamw.h"
#include "kernels/cuda_check.h"
#include "kernels/free_bits.h"
#include "kernels/grad_norm.h"
#include "kernels/step_state.h"
#include "kernels/step_state_math.cuh"
#include "tests/support/test_support.h"

namespace fusedvae::test {
namespace {

std::vector<float> random_values(size_t n, uint32_t seed, float scale) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = normal(gen);
  return v;
}

// Sizes: one element, odd, not a multiple of 4, and one that spans many blocks.
const std::vector<size_t> kSizes = {1, 7, 1029, 300007};

// ---------------------------------------------------------------------------------------------
// Global gradient norm

TEST(GradNormCpu, MatchesLongDoubleNormAndClipFormula) {
  for (size_t n : kSizes) {
    const std::vector<float> g = random_values(n, 11 + n, 0.3f);
    long double sum = 0;
    for (float x : g) sum += static_cast<long double>(x) * x;
    const double norm = std::sqrt(static_cast<double>(sum));
    for (float max_norm : {0.0f, static_cast<float>(0.25 * norm), static_cast<float>(4 * norm)}) {
      float out_norm = poison_value(), scale = poison_value();
      cpu::global_grad_norm(g.data(), n, max_norm, &out_norm, &scale);
      // A double sum of n <= 3e5 squares: relative error ~ n * 1e-16, far below float's 6e-8;
      // only the final rounding to float remains (half an ulp, rel 6e-8).
      expect_close("grad_norm n=" + std::to_string(n), {out_norm}, {norm}, nullptr, {0, 6e-8});
      const double expected_scale = max_norm > 0 ? std::min(1.0, max_norm / (norm + 1e-6)) : 1.0;
      expect_close("clip_scale n=" + std::to_string(n), {scale}, {expected_scale}, nullptr,
                   {0, 6e-8});
    }
  }
}

TEST(GradNormCpu, NonFiniteGradientGivesNonFiniteScale) {
  std::vector<float> g = random_values(9, 3, 1.0f);
  g[4] = std::nanf("");
  float norm = 0, scale = 0;
  cpu::global_grad_norm(g.data(), g.size(), 1.0f, &norm, &scale);
  EXPECT_TRUE(std::isnan(norm));
  EXPECT_TRUE(std::isnan(scale)) << "clipping must not hide a NaN gradient";
}

// ---------------------------------------------------------------------------------------------
// AdamW

struct AdamCase {
  uint64_t step;
  float weight_decay;
  float grad_scale;
};

// torch.optim.AdamW's update in double, from the same float inputs.
// Also returns the magnitudes the float results are bounded by: the sums of |terms| that formed m
// (its two terms can cancel) and p (the parameter and its two decrements).
void adamw_reference(const OptimizerConfig& o, float lr, uint64_t step, float grad_scale,
                     std::vector<double>& p, std::vector<double>& m, std::vector<double>& v,
                     const std::vector<float>& g, std::vector<double>& m_mag,
                     std::vector<double>& p_mag) {
  m_mag.resize(p.size());
  p_mag.resize(p.size());
  const double t = static_cast<double>(step + 1);
  const double b1 = o.beta1, b2 = o.beta2;
  for (size_t i = 0; i < p.size(); ++i) {
    const double gi = static_cast<double>(g[i]) * grad_scale;
    m_mag[i] = std::fabs(b1 * m[i]) + std::fabs((1 - b1) * gi);
    m[i] = b1 * m[i] + (1 - b1) * gi;
    v[i] = b2 * v[i] + (1 - b2) * gi * gi;
    const double m_hat = m[i] / (1 - std::pow(b1, t));
    const double v_hat = v[i] / (1 - std::pow(b2, t));
    const double decay = static_cast<double>(lr) * o.weight_decay * p[i];
    const double step_size = static_cast<double>(lr) * m_hat / (std::sqrt(v_hat) + o.eps);
    p_mag[i] = std::fabs(p[i]) + std::fabs(decay) + std::fabs(step_size);
    p[i] -= decay + step_size;
  }
}

TEST(AdamwCpu, MatchesTorchFormulaInDouble) {
  for (const AdamCase& k :
       {AdamCase{0, 0.0f, 1.0f}, AdamCase{4, 0.01f, 0.37f}, AdamCase{999, 0.1f, 1.0f}}) {
    for (size_t n : {size_t{1}, size_t{1029}}) {
      OptimizerConfig o;
      o.weight_decay = k.weight_decay;
      const float lr = 2e-3f;
      std::vector<float> p = random_values(n, 1, 0.5f), g = random_values(n, 2, 0.1f);
      std::vector<float> m = random_values(n, 3, 0.01f), v = random_values(n, 4, 0.01f);
      for (auto& x : v) x *= x;
      if (k.step == 0) std::fill(m.begin(), m.end(), 0.0f), std::fill(v.begin(), v.end(), 0.0f);
      std::vector<double> pr(p.begin(), p.end()), mr(m.begin(), m.end()), vr(v.begin(), v.end());
      std::vector<double> m_mag, p_mag;
      adamw_reference(o, lr, k.step, k.grad_scale, pr, mr, vr, g, m_mag, p_mag);
      StepState state;
      state.step = k.step;
      state.lr = lr;
      cpu::adamw_update(p.data(), m.data(), v.data(), g.data(), n, &state, o, &k.grad_scale);
      // A handful of float operations per element, each within half an ulp of its operands: the
      // results are within ~8 u = 5e-7 of the magnitude of their terms (rel 1e-6 allows 16 u). v's
      // terms are both >= 0, so its own value is its magnitude.
      const std::string name = "adamw step=" + std::to_string(k.step) + " n=" + std::to_string(n);
      expect_close(name + " m", m, mr, &m_mag, {0, 1e-6});
      expect_close(name + " v", v, vr, nullptr, {0, 1e-6});
      expect_close(name + " p", p, pr, &p_mag, {0, 1e-6});
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Step state

TEST(StepStateCpu, AdvancesCounterDrawAndSchedules) {
  KlSchedule kl;
  kl.kind = KlScheduleKind::kLinear;
  kl.weight = 0.8f;
  kl.x0 = 4.0f;
  OptimizerConfig o;
  o.lr = 1e-2f;
  o.min_lr = 1e-3f;
  o.schedule = LrSchedule::kCosine;
  const uint64_t total = 10;
  StepState s;
  s.step = 0;
  s.draw_index = 0;
  for (uint64_t step = 1; step <= 12; ++step) {
    cpu::advance_step_state(&s, kl, o, total);
    EXPECT_EQ(s.step, step);
    EXPECT_EQ(s.draw_index, step);
    const double w = 0.8 * std::min(1.0, step / 4.0);
    const double progress = std::min(1.0, static_cast<double>(step) / total);
    const double lr = 1e-3 + (1e-2 - 1e-3) * 0.5 * (1 + std::cos(M_PI * progress));
    expect_close("kl_weight", {s.kl_weight}, {w}, nullptr, {0, 2e-7});
    expect_close("lr", {s.lr}, {lr}, nullptr, {0, 2e-7});
  }
}

// DyAD's CosineAnnealingLR stepped once per epoch: 3 epochs of 4 steps, the rate of epoch e at
// every one of its steps is the cosine at e / 3.
TEST(StepStateCpu, CosineInStairsHoldsEachEpoch) {
  OptimizerConfig o;
  o.lr = 1e-2f;
  o.min_lr = 1e-3f;
  o.schedule = LrSchedule::kCosine;
  o.lr_stairs = 3;
  const uint64_t total = 12;
  StepState s = math::initial_step_state(KlSchedule{}, o, total);
  for (uint64_t step = 0; step < total; ++step) {
    const double epoch = static_cast<double>(step / 4);
    const double lr = 1e-3 + (1e-2 - 1e-3) * 0.5 * (1 + std::cos(M_PI * epoch / 3));
    expect_close("lr at step " + std::to_string(step), {s.lr}, {lr}, nullptr, {0, 2e-7});
    cpu::advance_step_state(&s, KlSchedule{}, o, total);
  }
}

// ---------------------------------------------------------------------------------------------
// Activations

TEST(ActivationCpu, ForwardAndBackwardFromOutput) {
  const int rows = 3, cols = 5;
  const std::vector<float> pre = random_values(rows * cols, 9, 1.5f);
  const std::vector<float> bias = random_values(cols, 10, 0.5f);
  for (Activation act : {Activation::kRelu, Activation::kTanh}) {
    std::vector<float> y = pre;
    cpu::bias_activation_forward(y.data(), bias.data(), rows, cols, act);
    std::vector<double> y_ref, dy_ref;
    std::vector<float> dy = random_values(rows * cols, 12, 1.0f);
    for (int i = 0; i < rows * cols; ++i) {
      const double x = static_cast<double>(pre[i]) + bias[i % cols];
      const bool tanh = act == Activation::kTanh;
      y_ref.push_back(tanh ? std::tanh(x) : std::max(x, 0.0));
      const double derivative = tanh ? 1.0 - std::tanh(x) * std::tanh(x) : (x > 0 ? 1.0 : 0.0);
      dy_ref.push_back(dy[i] * derivative);
    }
    cpu::activation_backward(y.data(), dy.data(), rows, cols, act);
    // tanh in float: a few ulps; 1 - y^2 from the float y: |d(1 - y^2)| = 2|y| * 6e-8 * |y|.
    const std::string name = activation_name(act);
    expect_close(name + " forward", y, y_ref, nullptr, {1e-7, 1e-6});
    expect_close(name + " backward", dy, dy_ref, nullptr, {1e-7, 1e-6});
  }
}

// ---------------------------------------------------------------------------------------------
// Free bits

struct FreeBitsCase {
  int batch, dim;
  std::vector<float> mu, logvar, dmu, dlogvar;
  LogvarClamp clamp{-1.5f, 1.0f};  // narrow, so that some elements are clamped
};

FreeBitsCase free_bits_case(int batch, int dim) {
  FreeBitsCase c{batch,
                 dim,
                 random_values(static_cast<size_t>(batch) * dim, 31, 0.6f),
                 random_values(static_cast<size_t>(batch) * dim, 32, 1.0f),
                 random_values(static_cast<size_t>(batch) * dim, 33, 0.2f),
                 random_values(static_cast<size_t>(batch) * dim, 34, 0.2f)};
  return c;
}

// Per-dimension batch-mean KL in double, and the floor halfway between the two smallest.
std::vector<double> kl_dim_means(const FreeBitsCase& c, float* floor_between) {
  std::vector<double> means(c.dim, 0.0);
  for (int b = 0; b < c.batch; ++b)
    for (int j = 0; j < c.dim; ++j) {
      const double m = c.mu[b * c.dim + j];
      const double lv =
          std::min<double>(std::max<double>(c.logvar[b * c.dim + j], c.clamp.min), c.clamp.max);
      means[j] += 0.5 * (m * m + std::exp(lv) - lv - 1.0) / c.batch;
    }
  std::vector<double> sorted = means;
  std::sort(sorted.begin(), sorted.end());
  *floor_between = static_cast<float>(0.5 * (sorted[0] + sorted[1]));
  return means;
}

TEST(FreeBitsCpu, FloorsTheBatchMeanKlPerDimension) {
  for (auto [batch, dim] : {std::pair{1, 2}, std::pair{7, 5}, std::pair{130, 20}}) {
    FreeBitsCase c = free_bits_case(batch, dim);
    float floor = 0;
    const std::vector<double> means = kl_dim_means(c, &floor);
    std::vector<float> kl_dim_mean = poisoned(dim);
    float floored = poison_value();
    cpu::free_bits_forward(c.mu.data(), c.logvar.data(), batch, dim, c.clamp, floor,
                           kl_dim_mean.data(), &floored);
    double floored_ref = 0;
    for (double m : means) floored_ref += std::max<double>(m, floor);
    // Sums in double of exact-to-a-few-ulp terms: rel 1e-6.
    const std::string name = "free_bits " + std::to_string(batch) + "x" + std::to_string(dim);
    expect_close(name + " means", kl_dim_mean, means, nullptr, {1e-9, 1e-6});
    expect_close(name + " floored", {floored}, {floored_ref}, nullptr, {1e-9, 1e-6});

    for (BatchReduction reduction : {BatchReduction::kSum, BatchReduction::kMean}) {
      const float kl_weight = 0.7f;
      std::vector<float> dmu = c.dmu, dlogvar = c.dlogvar;
      cpu::free_bits_backward(c.mu.data(), c.logvar.data(), kl_dim_mean.data(), batch, dim, c.clamp,
                              floor, &kl_weight, 1.5f, reduction, dmu.data(), dlogvar.data());
      std::vector<double> dmu_ref, dlogvar_ref;
      const double w = 0.7 * 1.5 * (reduction == BatchReduction::kMean ? 1.0 / batch : 1.0);
      for (int i = 0; i < batch * dim; ++i) {
        const int j = i % dim;
        const double wj = means[j] >= floor ? w : 0.0;
        const double raw = c.logvar[i];
        const bool passes = raw >= c.clamp.min && raw <= c.clamp.max;
        const double lv = std::min<double>(std::max<double>(raw, c.clamp.min), c.clamp.max);
        dmu_ref.push_back(c.dmu[i] + wj * c.mu[i]);
        dlogvar_ref.push_back(c.dlogvar[i] + (passes ? wj * 0.5 * std::expm1(lv) : 0.0));
      }
      expect_close(name + " dmu", dmu, dmu_ref, nullptr, {1e-7, 1e-6});
      expect_close(name + " dlogvar", dlogvar, dlogvar_ref, nullptr, {1e-7, 1e-6});
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Kernels against their twins

// Device memory for one POD value (a StepState), freed on scope exit.
template <typename T>
struct DeviceValue {
  T* ptr = nullptr;
  explicit DeviceValue(const T& value) {
    FUSEDVAE_CUDA_CHECK(cudaMalloc(&ptr, sizeof(T)));
    copy_to_device(ptr, &value, sizeof(T));
  }
  ~DeviceValue() { cudaFree(ptr); }
  T read() const {
    T value;
    FUSEDVAE_CUDA_CHECK(cudaDeviceSynchronize());
    FUSEDVAE_CUDA_CHECK(cudaMemcpy(&value, ptr, sizeof(T), cudaMemcpyDeviceToHost));
    return value;
  }
};

struct GradNormWorkspaceOwner {
  gpu::GradNormWorkspace workspace = gpu::create_grad_norm_workspace();
  ~GradNormWorkspaceOwner() { gpu::destroy_grad_norm_workspace(&workspace); }
};

TEST(StepOpsGpu, GradNormMatchesTwinAndIsDeterministic) {
  FUSEDVAE_REQUIRE_GPU();
  GradNormWorkspaceOwner owner;
  for (size_t n : kSizes) {
    const std::vector<float> g = random_values(n, 21 + n, 0.3f);
    float cpu_norm = 0, unused = 0;
    cpu::global_grad_norm(g.data(), n, 0.0f, &cpu_norm, &unused);
    const DeviceBuffer grads(g);
    for (float max_norm : {0.0f, 0.5f * cpu_norm}) {
      float cpu_scale = 0;
      cpu::global_grad_norm(g.data(), n, max_norm, &cpu_norm, &cpu_scale);
      for (int block : {32, 256, 1024}) {
        DeviceBuffer out(2);
        gpu::global_grad_norm(grads.get(), n, max_norm, out.get(), out.get() + 1, owner.workspace,
                              nullptr, block);
        const std::vector<float> first = out.to_host();
        gpu::global_grad_norm(grads.get(), n, max_norm, out.get(), out.get() + 1, owner.workspace,
                              nullptr, block);
        expect_bitwise_equal(first, out.to_host(), "grad norm run to run");
        // Both sum in double, in different orders: they agree to ~n * 1e-16 before the rounding
        // to float, which may then differ by one ulp (rel 1.2e-7).
        const std::string name =
            "gpu grad_norm n=" + std::to_string(n) + " block=" + std::to_string(block);
        expect_close(name, {first[0]}, {cpu_norm}, nullptr, {0, 1.2e-7});
        expect_close(name + " scale", {first[1]}, {cpu_scale}, nullptr, {0, 2.4e-7});
      }
    }
  }
}

TEST(StepOpsGpu, AdamwMatchesReference) {
  FUSEDVAE_REQUIRE_GPU();
  const size_t n = 300007;
  OptimizerConfig o;
  o.weight_decay = 0.01f;
  StepState state;
  state.step = 6;
  state.lr = 3e-3f;
  const float grad_scale = 0.61f;
  std::vector<float> p = random_values(n, 1, 0.5f), g = random_values(n, 2, 0.1f);
  std::vector<float> m = random_values(n, 3, 0.01f), v = random_values(n, 4, 0.01f);
  for (auto& x : v) x *= x;
  std::vector<double> pr(p.begin(), p.end()), mr(m.begin(), m.end()), vr(v.begin(), v.end());
  std::vector<double> m_mag, p_mag;
  adamw_reference(o, state.lr, state.step, grad_scale, pr, mr, vr, g, m_mag, p_mag);
  DeviceBuffer dp(p), dm(m), dv(v), dg(g);
  const DeviceValue<StepState> dstate(state);
  const DeviceValue<float> dscale(grad_scale);
  gpu::adamw_update(dp.get(), dm.get(), dv.get(), dg.get(), n, dstate.ptr, o, dscale.ptr, nullptr);
  // The CPU twin's budget (AdamwCpu above): nvcc's FMA contraction only removes roundings.
  expect_close("gpu adamw m", dm.to_host(), mr, &m_mag, {0, 1e-6});
  expect_close("gpu adamw v", dv.to_host(), vr, nullptr, {0, 1e-6});
  expect_close("gpu adamw p", dp.to_host(), pr, &p_mag, {0, 1e-6});
  // A block size that does not divide n gives the same bits (elementwise, grid-stride).
  DeviceBuffer dp2(p), dm2(m), dv2(v);
  gpu::adamw_update(dp2.get(), dm2.get(), dv2.get(), dg.get(), n, dstate.ptr, o, dscale.ptr,
                    nullptr, 96);
  expect_bitwise_equal(dp.to_host(), dp2.to_host(), "adamw p, block 256 vs 96");
}

TEST(StepOpsGpu, StepStateAdvanceMatchesTwin) {
  FUSEDVAE_REQUIRE_GPU();
  KlSchedule kl;
  kl.kind = KlScheduleKind::kLogistic;
  kl.x0 = 5.0f;
  kl.k = 0.7f;
  OptimizerConfig o;
  o.schedule = LrSchedule::kCosine;
  o.min_lr = 1e-4f;
  StepState host;
  host.step = 3;
  host.draw_index = 40;
  const DeviceValue<StepState> device(host);
  for (int i = 0; i < 9; ++i) {
    gpu::advance_step_state(device.ptr, kl, o, 10, nullptr);
    cpu::advance_step_state(&host, kl, o, 10);
  }
  const StepState d = device.read();
  EXPECT_EQ(d.step, host.step);
  EXPECT_EQ(d.draw_index, host.draw_index);
  // expf and cos on the device are within 2 ulps of the host's.
  expect_close("gpu kl_weight", {d.kl_weight}, {host.kl_weight}, nullptr, {0, 2.4e-7});
  expect_close("gpu lr", {d.lr}, {host.lr}, nullptr, {0, 2.4e-7});
}

TEST(StepOpsGpu, FreeBitsMatchTwin) {
  FUSEDVAE_REQUIRE_GPU();
  for (auto [batch, dim] : {std::pair{1, 2}, std::pair{7, 5}, std::pair{1030, 20}}) {
    FreeBitsCase c = free_bits_case(batch, dim);
    float floor = 0;
    kl_dim_means(c, &floor);
    std::vector<float> means(dim), dmu = c.dmu, dlogvar = c.dlogvar;
    float floored = 0;
    const float kl_weight = 0.7f;
    cpu::free_bits_forward(c.mu.data(), c.logvar.data(), batch, dim, c.clamp, floor, means.data(),
                           &floored);
    cpu::free_bits_backward(c.mu.data(), c.logvar.data(), means.data(), batch, dim, c.clamp, floor,
                            &kl_weight, 1.0f, BatchReduction::kMean, dmu.data(), dlogvar.data());
    const DeviceBuffer dev_mu(c.mu), dev_logvar(c.logvar);
    DeviceBuffer dev_means(dim), dev_floored(1), dev_dmu(c.dmu), dev_dlogvar(c.dlogvar);
    const DeviceValue<float> dev_weight(kl_weight);
    gpu::free_bits_forward(dev_mu.get(), dev_logvar.get(), batch, dim, c.clamp, floor,
                           dev_means.get(), dev_floored.get(), nullptr);
    gpu::free_bits_backward(dev_mu.get(), dev_logvar.get(), dev_means.get(), batch, dim, c.clamp,
                            floor, dev_weight.ptr, 1.0f, BatchReduction::kMean, dev_dmu.get(),
                            dev_dlogvar.get(), nullptr);
    // The GPU sums the column in float (up to 1030 terms, tree order): within ~log2(n) * u of
    // the sum of the positive terms, i.e. rel 1e-6; the elementwise backward within a few ulps.
    // The floor sits halfway between two dimensions, far from either, so the masks agree.
    auto widen = [](const std::vector<float>& x) {
      return std::vector<double>(x.begin(), x.end());
    };
    const std::string name = "gpu free_bits " + std::to_string(batch) + "x" + std::to_string(dim);
    expect_close(name + " means", dev_means.to_host(), widen(means), nullptr, {1e-9, 1e-6});
    expect_close(name + " floored", dev_floored.to_host(), {floored}, nullptr, {1e-9, 1e-6});
    expect_close(name + " dmu", dev_dmu.to_host(), widen(dmu), nullptr, {1e-7, 1e-6});
    expect_close(name + " dlogvar", dev_dlogvar.to_host(), widen(dlogvar), nullptr, {1e-7, 1e-6});
  }
}

}  // namespace
}  // namespace fusedvae::test
