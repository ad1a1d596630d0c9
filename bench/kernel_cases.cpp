// @brief Benchmark cases of the fused ops: inputs, CPU twin outputs, float64 reference, tolerances.
#include "bench/kernel_cases.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "host/ops/recon_loss_cpu.h"
#include "host/ops/reparam_kl_cpu.h"
#include "kernels/reparam_kl_math.cuh"
#include "kernels/recon_loss_math.cuh"

namespace fusedvae::bench {
namespace {

// splitmix64: fast enough to fill 64M-element inputs, and seeded per case.
class Random {
 public:
  explicit Random(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform(double lo, double hi) {
    return lo + (hi - lo) * (static_cast<double>(next() >> 11) * 0x1.0p-53);
  }
  double normal() {
    const double u1 = (static_cast<double>(next() >> 11) + 0.5) * 0x1.0p-53;
    const double u2 = static_cast<double>(next() >> 11) * 0x1.0p-53;
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

 private:
  uint64_t state_;
};

constexpr double u = kUnitRoundoff;

// Longest chain of sequential float additions in a GPU row sum of `dim` terms, the larger of the
// fused kernels (lanes own groups of 4 columns, strided by 32 groups, then a 5-level warp tree)
// and the unfused row-sum kernel (256 threads strided, then 5 + 3 tree levels).
double gpu_row_chain(int dim) {
  const double fused = 4.0 * std::ceil(std::ceil(dim / 4.0) / 32.0) + 5.0;
  const double unfused = std::ceil(dim / 256.0) + 8.0;
  return std::max(fused, unfused);
}

// The same for the batch sum of `batch` row sums: fused, rows strided over at most 1024 blocks of
// 8 warps, a 3-level block tree, ceil(blocks/256) sequential partials and an 8-level tree; unfused,
// one block of 256 threads.
double gpu_batch_chain(int batch) {
  const double fused = std::ceil(batch / 8192.0) + 3.0 + 4.0 + 8.0;
  const double unfused = std::ceil(batch / 256.0) + 8.0;
  return std::max(fused, unfused);
}

std::vector<float> poisoned(size_t n) {
  return std::vector<float>(n, std::numeric_limits<float>::quiet_NaN());
}

// Per-row loss values and magnitudes -> the per-sample and reduced references and tolerances.
void add_row_outputs(OpCase* c, const std::string& per_sample_name, const std::string& reduced_name,
                     const std::vector<double>& row_ref, const std::vector<double>& row_mag,
                     double per_term_roundings) {
  const int batch = c->shape.batch;
  const double scale = batch_reduction_scale(kBenchReduction, batch);
  const double row_chain = gpu_row_chain(c->shape.dim);
  std::vector<double> tol_cpu(batch), tol_gpu(batch);
  double total = 0.0, total_mag = 0.0;
  for (int r = 0; r < batch; ++r) {
    // The CPU twin sums in double: only the terms' own float roundings count.
    tol_cpu[r] = sum_relative_tolerance(0, per_term_roundings) * row_mag[r];
    // The GPU evaluates each term with its own roundings (device expf/log1pf, within 2 ulp) and
    // sums in float along chains of row_chain additions.
    tol_gpu[r] = sum_relative_tolerance(row_chain, per_term_roundings) * row_mag[r];
    total += row_ref[r];
    total_mag += row_mag[r];
  }
  c->output_names.push_back(per_sample_name);
  c->reference.push_back(row_ref);
  c->tol_cpu.push_back(tol_cpu);
  c->tol_gpu.push_back(tol_gpu);
  c->output_names.push_back(reduced_name);
  c->reference.push_back({scale * total});
  // The CPU twin rounds each row to float before its double batch sum: one more rounding.
  c->tol_cpu.push_back({sum_relative_tolerance(1, per_term_roundings) * scale * total_mag});
  c->tol_gpu.push_back(
      {sum_relative_tolerance(row_chain + gpu_batch_chain(batch), per_term_roundings) * scale *
       total_mag});
}

void make_forward(OpCase* c, Random* rng) {
  const Shape s = c->shape;
  const size_t n = s.elements();
  const LogvarClamp clamp;
  std::vector<float> mu(n), logvar(n);
  for (size_t i = 0; i < n; ++i) {
    mu[i] = static_cast<float>(1.5 * rng->normal());
    // 1% outside the clamp range on either side, so the clamp is exercised.
    const double pick = rng->uniform(0, 1);
    logvar[i] = static_cast<float>(pick < 0.005  ? rng->uniform(-40, -30)
                                   : pick < 0.01 ? rng->uniform(20, 30)
                                                 : rng->uniform(-8, 6));
  }
  const uint64_t draw = kBenchDrawIndex;
  std::vector<float> eps(n);
  cpu::draw_normal_eps(s.batch, s.dim, RngState{kBenchSeed, &draw}, eps.data());

  std::vector<double> z_ref(n), z_tol_cpu(n), z_tol_gpu(n), row_ref(s.batch), row_mag(s.batch);
  for (int r = 0; r < s.batch; ++r) {
    double kl_sum = 0.0, kl_mag = 0.0;
    for (int j = 0; j < s.dim; ++j) {
      const size_t i = static_cast<size_t>(r) * s.dim + j;
      const double m = mu[i];
      const double lv = math::clamp_logvar<double>(logvar[i], clamp.min, clamp.max);
      const double sigma = std::exp(0.5 * lv);
      z_ref[i] = m + sigma * eps[i];
      // expf (1 ulp), the product and the sum: 6 u of the summands leaves room.
      const double z_mag = std::fabs(m) + sigma * std::fabs(eps[i]);
      z_tol_cpu[i] = 6 * u * z_mag;
      z_tol_gpu[i] = 6 * u * z_mag + sigma * kDeviceEpsAbsError;
      kl_sum += math::kl_term(m, lv);
      kl_mag += 0.5 * (m * m + std::fabs(std::expm1(lv)) + std::fabs(lv));
    }
    row_ref[r] = kl_sum;
    row_mag[r] = kl_mag;
  }
  c->input_names = {"mu", "logvar"};
  c->inputs = {std::move(mu), std::move(logvar)};
  c->output_names = {"z"};
  c->reference = {std::move(z_ref)};
  c->tol_cpu = {std::move(z_tol_cpu)};
  c->tol_gpu = {std::move(z_tol_gpu)};
  // Each KL term: mu*mu, expm1f (1 ulp), two subtractions/additions: 6 roundings of its magnitude.
  add_row_outputs(c, "kl_per_sample", "kl_reduced", row_ref, row_mag, 6);
  // mu, logvar read; z, kl_per_sample, kl_reduced written; the draw index read.
  c->bytes_moved = 4.0 * (3.0 * n + s.batch + 1) + 8.0;
}

void make_backward(OpCase* c, Random* rng) {
  const Shape s = c->shape;
  const size_t n = s.elements();
  const LogvarClamp clamp;
  std::vector<float> dz(n), mu(n), logvar(n);
  for (size_t i = 0; i < n; ++i) {
    dz[i] = static_cast<float>(rng->normal());
    mu[i] = static_cast<float>(1.5 * rng->normal());
    const double pick = rng->uniform(0, 1);
    logvar[i] = static_cast<float>(pick < 0.005  ? rng->uniform(-40, -30)
                                   : pick < 0.01 ? rng->uniform(20, 30)
                                                 : rng->uniform(-8, 6));
  }
  const uint64_t draw = kBenchDrawIndex;
  const float kl_weight = kBenchKlWeight;
  std::vector<float> eps(n);
  cpu::draw_normal_eps(s.batch, s.dim, RngState{kBenchSeed, &draw}, eps.data());

  const double w = static_cast<double>(kl_weight) * kBenchLossScale *
                   batch_reduction_scale(kBenchReduction, s.batch);
  std::vector<double> dmu_ref(n), dmu_tol(n), dlv_ref(n), dlv_tol_cpu(n), dlv_tol_gpu(n);
  for (size_t i = 0; i < n; ++i) {
    const double g = dz[i], m = mu[i];
    const double pass = math::clamp_pass<double>(logvar[i], clamp.min, clamp.max);
    const double lv = math::clamp_logvar<double>(logvar[i], clamp.min, clamp.max);
    const double sigma = std::exp(0.5 * lv);
    dmu_ref[i] = g + w * m;
    // w itself carries 3 roundings (weight * scale products); one product and one sum more.
    dmu_tol[i] = 6 * u * (std::fabs(g) + std::fabs(w * m));
    dlv_ref[i] = pass * (g * sigma * eps[i] * 0.5 + w * 0.5 * std::expm1(lv));
    const double dlv_mag =
        pass * 0.5 * (std::fabs(g * sigma * eps[i]) + std::fabs(w * std::expm1(lv)));
    dlv_tol_cpu[i] = 8 * u * dlv_mag;
    dlv_tol_gpu[i] = 8 * u * dlv_mag + pass * 0.5 * std::fabs(g) * sigma * kDeviceEpsAbsError;
  }
  c->input_names = {"dz", "mu", "logvar"};
  c->inputs = {std::move(dz), std::move(mu), std::move(logvar)};
  c->output_names = {"dmu", "dlogvar"};
  c->reference = {std::move(dmu_ref), std::move(dlv_ref)};
  c->tol_cpu = {dmu_tol, std::move(dlv_tol_cpu)};
  c->tol_gpu = {std::move(dmu_tol), std::move(dlv_tol_gpu)};
  // dz, mu, logvar read; dmu, dlogvar written; the draw index and the KL weight read.
  c->bytes_moved = 4.0 * 5.0 * n + 12.0;
}

struct TermMagnitudes {
  double loss;
  double grad;
};

// The sum of the absolute values of what each loss's float formula adds or subtracts: its float
// error is a few roundings of this, however much the result cancels.
TermMagnitudes recon_magnitudes(const ReconLoss& loss, double x, double y) {
  switch (loss.kind) {
    case ReconLossKind::kBernoulliLogits:
      return {std::max(x, 0.0) + std::fabs(x * y) + std::log1p(std::exp(-std::fabs(x))),
              math::sigmoid(x) + std::fabs(y)};
    case ReconLossKind::kGaussian: {
      const double sigma = loss.gaussian_sigma;
      const double r = (x - y) / sigma;
      return {0.5 * r * r + std::fabs(std::log(sigma)) + math::half_log_two_pi<double>(),
              std::fabs(r / sigma)};
    }
    case ReconLossKind::kMse:
      return {(x - y) * (x - y), 2.0 * std::fabs(x - y)};
    case ReconLossKind::kSmoothL1:
    default: {
      const double beta = loss.smooth_l1_beta;
      const double a = std::fabs(x - y);
      return a < beta ? TermMagnitudes{0.5 * a * a / beta, a / beta}
                      : TermMagnitudes{a + 0.5 * beta, 1.0};
    }
  }
}

void make_recon(OpCase* c, Random* rng) {
  const Shape s = c->shape;
  const size_t n = s.elements();
  const bool logits = c->recon.kind == ReconLossKind::kBernoulliLogits;
  std::vector<float> output(n), target(n);
  for (size_t i = 0; i < n; ++i) {
    if (logits) {
      output[i] = static_cast<float>(rng->uniform(-12, 12));
      // Fashion-MNIST-like targets: many exact 0s, some 1s, the rest in between.
      const double pick = rng->uniform(0, 1);
      target[i] = pick < 0.4 ? 0.0f : (pick < 0.5 ? 1.0f : static_cast<float>(rng->uniform(0, 1)));
    } else {
      output[i] = static_cast<float>(rng->normal());
      target[i] = static_cast<float>(rng->normal());
    }
  }
  const double grad_scale = kBenchLossScale * batch_reduction_scale(kBenchReduction, s.batch);
  std::vector<double> grad_ref(n), grad_tol(n), row_ref(s.batch), row_mag(s.batch);
  math::with_recon_kind(c->recon.kind, [&](auto kind) {
    for (int r = 0; r < s.batch; ++r) {
      double sum = 0.0, mag = 0.0;
      for (int j = 0; j < s.dim; ++j) {
        const size_t i = static_cast<size_t>(r) * s.dim + j;
        const auto term =
            math::recon_term<decltype(kind)::value, double>(output[i], target[i], c->recon);
        const TermMagnitudes m = recon_magnitudes(c->recon, output[i], target[i]);
        grad_ref[i] = grad_scale * term.grad;
        // exp/log1p/division (1-2 ulp each), a subtraction and the scaling: 8 u.
        grad_tol[i] = 8 * u * grad_scale * m.grad;
        sum += term.loss;
        mag += m.loss;
      }
      row_ref[r] = sum;
      row_mag[r] = mag;
    }
  });
  c->input_names = {"output", "target"};
  c->inputs = {std::move(output), std::move(target)};
  add_row_outputs(c, "loss_per_sample", "loss_reduced", row_ref, row_mag, 8);
  c->output_names.push_back("grad_output");
  c->reference.push_back(std::move(grad_ref));
  c->tol_cpu.push_back(grad_tol);
  c->tol_gpu.push_back(std::move(grad_tol));
  // output, target read; loss_per_sample, loss_reduced, grad_output written.
  c->bytes_moved = 4.0 * (3.0 * n + s.batch + 1);
}

std::vector<double> widen(const std::vector<float>& v) {
  return {v.begin(), v.end()};
}

}  // namespace

std::vector<ReconLossKind> all_recon_kinds() {
  return {ReconLossKind::kBernoulliLogits, ReconLossKind::kGaussian, ReconLossKind::kMse,
          ReconLossKind::kSmoothL1};
}

std::string op_name(OpKind kind, ReconLossKind recon) {
  switch (kind) {
    case OpKind::kReparamForward:
      return "reparam_kl_forward";
    case OpKind::kReparamBackward:
      return "reparam_kl_backward";
    case OpKind::kReconLoss:
    default:
      return std::string("recon_loss/") + recon_loss_name(recon);
  }
}

OpCase make_case(OpKind kind, ReconLossKind recon, Shape shape) {
  if (shape.batch < 1 || shape.dim < 1)
    throw std::invalid_argument("bench case: batch and dim must be >= 1");
  OpCase c;
  c.kind = kind;
  c.recon.kind = recon;
  c.recon.gaussian_sigma = 0.5f;
  c.recon.smooth_l1_beta = 0.5f;
  c.shape = shape;
  c.op = op_name(kind, recon);
  Random rng(kBenchSeed ^ (static_cast<uint64_t>(shape.batch) << 32) ^
             (static_cast<uint64_t>(shape.dim) << 8) ^ (static_cast<uint64_t>(kind) << 4) ^
             static_cast<uint64_t>(recon));
  if (kind == OpKind::kReparamForward)
    make_forward(&c, &rng);
  else if (kind == OpKind::kReparamBackward)
    make_backward(&c, &rng);
  else
    make_recon(&c, &rng);
  c.cpu_outputs = poisoned_outputs(c);
  run_cpu_twin(c, &c.cpu_outputs);
  return c;
}

std::vector<std::vector<float>> poisoned_outputs(const OpCase& c) {
  const size_t n = c.shape.elements(), batch = c.shape.batch;
  switch (c.kind) {
    case OpKind::kReparamForward:
      return {poisoned(n), poisoned(batch), poisoned(1)};
    case OpKind::kReparamBackward:
      return {poisoned(n), poisoned(n)};
    case OpKind::kReconLoss:
    default:
      return {poisoned(batch), poisoned(1), poisoned(n)};
  }
}

void run_cpu_twin(const OpCase& c, std::vector<std::vector<float>>* outputs) {
  const Shape s = c.shape;
  const uint64_t draw = kBenchDrawIndex;
  const RngState state{kBenchSeed, &draw};
  const LogvarClamp clamp;
  auto& out = *outputs;
  switch (c.kind) {
    case OpKind::kReparamForward:
      cpu::reparam_kl_forward(c.inputs[0].data(), c.inputs[1].data(), s.batch, s.dim, state, clamp,
                              kBenchReduction, out[0].data(), out[1].data(), out[2].data());
      break;
    case OpKind::kReparamBackward: {
      const float kl_weight = kBenchKlWeight;
      cpu::reparam_kl_backward(c.inputs[0].data(), c.inputs[1].data(), c.inputs[2].data(), s.batch,
                               s.dim, state, &kl_weight, kBenchLossScale, clamp, kBenchReduction,
                               out[0].data(), out[1].data());
      break;
    }
    case OpKind::kReconLoss:
      cpu::recon_loss_forward_backward(c.inputs[0].data(), c.inputs[1].data(), s.batch, s.dim,
                                       c.recon, kBenchReduction, kBenchLossScale, out[0].data(),
                                       out[1].data(), out[2].data());
      break;
  }
}

Validation validate_cpu_twin(const OpCase& c) {
  Validation v;
  for (size_t k = 0; k < c.output_names.size(); ++k)
    v.add(check_close(c.op + " cpu." + c.output_names[k] + " vs f64", c.cpu_outputs[k],
                      c.reference[k], c.tol_cpu[k]));
  return v;
}

Validation validate_against_cpu_twin(const OpCase& c, const std::vector<std::vector<float>>& gpu,
                                     const std::string& label) {
  if (gpu.size() != c.output_names.size())
    throw std::invalid_argument(c.op + ": " + std::to_string(gpu.size()) + " outputs to check, " +
                                std::to_string(c.output_names.size()) + " expected");
  Validation v;
  for (size_t k = 0; k < gpu.size(); ++k) {
    std::vector<double> tol(c.tol_cpu[k].size());
    for (size_t i = 0; i < tol.size(); ++i) tol[i] = c.tol_cpu[k][i] + c.tol_gpu[k][i];
    v.add(check_close(c.op + " " + label + "." + c.output_names[k] + " vs cpu", gpu[k],
                      widen(c.cpu_outputs[k]), tol));
  }
  return v;
}

std::string check_validator_rejects_corruption(const OpCase& c) {
  for (size_t k = 0; k < c.output_names.size(); ++k) {
    const auto& ref = c.reference[k];
    const auto& tol = c.tol_cpu[k];
    // An element with a non-zero tolerance (a clamped dlogvar must be exactly 0 instead).
    size_t idx = ref.size() / 2;
    while (idx < ref.size() && tol[idx] <= 0.0) ++idx;
    if (idx == ref.size()) continue;
    const std::string name = c.op + "." + c.output_names[k];

    std::vector<float> off = c.cpu_outputs[k];
    off[idx] = static_cast<float>(ref[idx] + 3.0 * tol[idx]);
    if (check_close(name, off, ref, tol).pass)
      return name + ": an element 3 tolerances off was accepted";

    std::vector<float> nan = c.cpu_outputs[k];
    nan[idx] = std::numeric_limits<float>::quiet_NaN();
    if (check_close(name, nan, ref, tol).pass) return name + ": a NaN was accepted";

    // The GPU side poisons outputs with all-ones bytes (a NaN): an unwritten last element.
    std::vector<float> unwritten = c.cpu_outputs[k];
    const uint32_t poison = 0xffffffffu;
    std::memcpy(&unwritten.back(), &poison, sizeof(poison));
    if (check_close(name, unwritten, ref, tol).pass)
      return name + ": an unwritten (poisoned) element was accepted";
  }
  return "";
}

}  // namespace fusedvae::bench
