// @brief The CPU twins give the same bits for any thread count (host/ops/parallel_cpu.h): each
// threaded op runs at 1 thread and at 3 (more than this machine may have: the split, not the
// speed, is what matters) on inputs large enough to be split, and the outputs must be equal bit for
// bit. The matrix products are oneDNN's and are not covered by this promise (README,
// Determinism).
#include <gtest/gtest.h>
#include <omp.h>

#include <functional>
#include <random>
#include <vector>

#include "host/ops/activation_cpu.h"
#include "host/ops/adamw_cpu.h"
#include "host/ops/batch_gather_cpu.h"
#include "host/ops/bias_cpu.h"
#include "host/ops/grad_norm_cpu.h"
#include "host/ops/parallel_cpu.h"
#include "host/ops/recon_loss_cpu.h"
#include "host/ops/reparam_kl_cpu.h"
#include "tests/support/test_support.h"

namespace fusedvae::test {
namespace {

// Runs `op` (which fills the outputs it is given) once per thread count and compares.
void expect_same_bits_for_any_threads(const std::string& name,
                                      const std::function<std::vector<std::vector<float>>()>& op) {
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const std::vector<std::vector<float>> one = op();
  omp_set_num_threads(3);
  const std::vector<std::vector<float>> three = op();
  omp_set_num_threads(saved);
  ASSERT_EQ(one.size(), three.size());
  for (size_t i = 0; i < one.size(); ++i)
    expect_bitwise_equal(one[i], three[i], name + " output " + std::to_string(i));
}

// Rows x cols well above the threshold, odd so that no split is even.
constexpr int kRows = 129, kCols = 787;
static_assert(size_t{kRows} * kCols > 2 * cpu::kMinParallelElements, "must be split");

TEST(CpuThreads, ElementwiseAndRowOpsGiveTheSameBits) {
  const size_t n = size_t{kRows} * kCols;
  const std::vector<float> x = random_floats(n, -3.0f, 3.0f, 1),
                           y = random_floats(n, -1.0f, 1.0f, 2);
  const std::vector<float> bias = random_floats(kCols, -1.0f, 1.0f, 3);

  expect_same_bits_for_any_threads("bias_activation_forward (tanh)", [&] {
    std::vector<float> out = x;
    cpu::bias_activation_forward(out.data(), bias.data(), kRows, kCols, Activation::kTanh);
    return std::vector<std::vector<float>>{out};
  });
  expect_same_bits_for_any_threads("activation_backward (relu)", [&] {
    std::vector<float> dy = y;
    cpu::activation_backward(x.data(), dy.data(), kRows, kCols, Activation::kRelu);
    return std::vector<std::vector<float>>{dy};
  });
  expect_same_bits_for_any_threads("bias_add + bias_gradient", [&] {
    std::vector<float> out = x, grad = poisoned(kCols);
    cpu::bias_add(out.data(), bias.data(), kRows, kCols);
    cpu::bias_gradient(y.data(), kRows, kCols, grad.data());
    return std::vector<std::vector<float>>{out, grad};
  });
  for (const ReconLossKind kind : {ReconLossKind::kBernoulliLogits, ReconLossKind::kSmoothL1}) {
    expect_same_bits_for_any_threads("recon_loss", [&] {
      ReconLoss loss;
      loss.kind = kind;
      std::vector<float> per_sample = poisoned(kRows), reduced = poisoned(1), grad = poisoned(n);
      std::vector<float> target = y;
      for (auto& t : target) t = t > 0 ? 1.0f : 0.0f;
      cpu::recon_loss_forward_backward(x.data(), target.data(), kRows, kCols, loss,
                                       BatchReduction::kMean, 1.0f, per_sample.data(),
                                       reduced.data(), grad.data());
      return std::vector<std::vector<float>>{per_sample, reduced, grad};
    });
  }
}

TEST(CpuThreads, ReparamKlAndGatherGiveTheSameBits) {
  const size_t n = size_t{kRows} * kCols;
  const std::vector<float> mu = random_floats(n, -1.0f, 1.0f, 4),
                           logvar = random_floats(n, -2.0f, 2.0f, 5);
  const std::vector<float> dz = random_floats(n, -1.0f, 1.0f, 6);
  const uint64_t draw = 7;
  const float kl_weight = 0.5f;
  RngState rng;
  rng.seed = 42;
  rng.draw_index = &draw;
  expect_same_bits_for_any_threads("reparam_kl", [&] {
    std::vector<float> z = poisoned(n), kl = poisoned(kRows), kl_sum = poisoned(1);
    std::vector<float> dmu = poisoned(n), dlogvar = poisoned(n);
    cpu::reparam_kl_forward(mu.data(), logvar.data(), kRows, kCols, rng, LogvarClamp{},
                            BatchReduction::kMean, z.data(), kl.data(), kl_sum.data());
    cpu::reparam_kl_backward(dz.data(), mu.data(), logvar.data(), kRows, kCols, rng, &kl_weight,
                             1.0f, LogvarClamp{}, BatchReduction::kMean, dmu.data(),
                             dlogvar.data());
    return std::vector<std::vector<float>>{z, kl, kl_sum, dmu, dlogvar};
  });

  std::vector<uint8_t> pixels(size_t{300} * kCols);
  std::mt19937 gen(8);
  for (auto& p : pixels) p = static_cast<uint8_t>(gen());
  std::vector<int32_t> perm(300);
  cpu::shuffle_indices(300, 9, 0, perm.data());
  const int32_t first = 17;
  expect_same_bits_for_any_threads("gather_batch (binarised)", [&] {
    std::vector<float> out = poisoned(n);
    cpu::gather_batch(pixels.data(), nullptr, kCols, perm.data(), &first, kRows, 1.0f / 255, 0.0f,
                      true, rng, out.data());
    return std::vector<std::vector<float>>{out};
  });
}

TEST(CpuThreads, GradNormAndAdamWGiveTheSameBits) {
  // More than one block of the norm's fixed-size blocks, and not a multiple of any of them.
  const size_t n = 1000003;
  const std::vector<float> grads = random_floats(n, -0.1f, 0.1f, 10),
                           params = random_floats(n, -1.0f, 1.0f, 11);
  expect_same_bits_for_any_threads("global_grad_norm", [&] {
    std::vector<float> norm = poisoned(1), scale = poisoned(1);
    cpu::global_grad_norm(grads.data(), n, 1.0f, norm.data(), scale.data());
    return std::vector<std::vector<float>>{norm, scale};
  });
  expect_same_bits_for_any_threads("adamw_update", [&] {
    std::vector<float> p = params, m = random_floats(n, -0.01f, 0.01f, 12), v(n, 1e-4f);
    StepState state;
    state.step = 3;
    state.lr = 1e-3f;
    OptimizerConfig opt;
    opt.weight_decay = 1e-2f;
    const float grad_scale = 0.7f;
    cpu::adamw_update(p.data(), m.data(), v.data(), grads.data(), n, &state, opt, &grad_scale);
    return std::vector<std::vector<float>>{p, m, v};
  });
}

}  // namespace
}  // namespace fusedvae::test
