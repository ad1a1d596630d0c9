// @brief The GRU's CPU twin (host/ops/gru_cpu.h) against the float64 reference
// (python_ref/gru_ref.py, golden cases from python_ref/make_golden.py): forward outputs, final
// states and every gradient, the flat parameter layout against PyTorch's, outputs written in full,
// bitwise determinism, null optional arguments, and bad shapes.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

#include "host/ops/gru_cpu.h"
#include "tests/support/test_support.h"

namespace fusedvae {
namespace {

using test::AccuracySummary;
using test::GoldenCase;
using test::Tolerance;

constexpr double u = test::kFloat32Roundoff;

// ---------------------------------------------------------------------------------------------
// Tolerances. A GRU's rounding errors do not stay within one sum: each step's are carried into
// the next by the recurrence (and the backward's back through it), so their size depends on how
// the case amplifies them, not on a term count alone. The golden cases measure that: err32[name]
// is the largest |error| of the same reference evaluated in float32 (NumPy, its own BLAS and its
// own summation orders; python_ref/make_golden.py, make_gru_cases). Rounding errors of two
// float32 evaluations are independent draws of the same propagation, so the twin's worst error
// must be of the same size: we allow kErr32Factor times it, per tensor. The factor covers the
// two being unequal draws (the twin's products sum in other orders, its sigmoid is the
// exp-based one of gru_math.cuh where the reference's is tanh-based, libm's tanhf against
// NumPy's, h' = n + z (h - n) against (1 - z) n + z h): measured shares stay below 0.5 with 8.
// The relative part, 8 u of |ref|, covers elements whose own few roundings exceed the tensor's
// worst propagated error (a tensor of one element, T = 1), and kDenormalAbs the gradients that
// underflow where saturated gates multiply derivatives near 0.
constexpr double kErr32Factor = 8.0;
constexpr double kRel = 8 * u;

Tolerance tolerance(const GoldenCase& c, const std::string& name) {
  return {test::kDenormalAbs + kErr32Factor * c.manifest.at("err32").at(name).get<double>(), kRel};
}

cpu::GruShape shape_of(const GoldenCase& c) {
  const nlohmann::json& m = c.manifest;
  cpu::GruShape s;
  s.batch = m.at("batch");
  s.steps = m.at("steps");
  s.input = m.at("input");
  s.hidden = m.at("hidden");
  s.layers = m.at("layers");
  s.bidirectional = m.at("bidirectional");
  return s;
}

struct GruRun {
  std::vector<float> output, h_n, d_x, d_h0, d_params, reserve;
};

// One forward and backward on poisoned outputs, as a training step would run them.
GruRun run_gru(const cpu::GruPlan& plan, const std::vector<float>& params,
               const std::vector<float>& x, const float* h0, const float* d_output,
               const float* d_h_n) {
  const cpu::GruShape& s = plan.shape();
  const size_t states = static_cast<size_t>(s.layers) * s.directions() * s.batch * s.hidden;
  GruRun r;
  r.output = test::poisoned(static_cast<size_t>(s.batch) * s.steps * s.output_features());
  r.h_n = test::poisoned(states);
  r.reserve = test::poisoned(cpu::gru_reserve_floats(s));
  std::vector<float> scratch = test::poisoned(cpu::gru_scratch_floats(s));
  plan.forward_train(params.data(), x.data(), h0, r.output.data(), r.h_n.data(), r.reserve.data(),
                     scratch.data());
  r.d_x = test::poisoned(x.size());
  r.d_h0 = test::poisoned(states);
  r.d_params = test::poisoned(params.size());
  scratch = test::poisoned(scratch.size());
  plan.backward(params.data(), x.data(), r.reserve.data(), d_output, d_h_n, r.d_x.data(),
                r.d_h0.data(), r.d_params.data(), scratch.data());
  return r;
}

GruRun run_case(const cpu::GruPlan& plan, const GoldenCase& c) {
  const std::vector<float> h0 = c.has("h0") ? c.f32("h0") : std::vector<float>();
  const std::vector<float> d_output = c.f32("d_output"), d_h_n = c.f32("d_h_n");
  return run_gru(plan, c.f32("params"), c.f32("x"), h0.empty() ? nullptr : h0.data(),
                 d_output.data(), d_h_n.data());
}

std::vector<float> slice(const std::vector<float>& v, size_t offset, size_t count) {
  return {v.begin() + offset, v.begin() + offset + count};
}
std::vector<double> slice(const std::vector<double>& v, size_t offset, size_t count) {
  return {v.begin() + offset, v.begin() + offset + count};
}

void check_golden_cases(const std::string& title) {
  AccuracySummary summary(title);
  for (const GoldenCase& c : test::golden_cases("gru")) {
    SCOPED_TRACE(c.name);
    const cpu::GruShape s = shape_of(c);
    const cpu::GruPlan plan(s);
    const GruRun r = run_case(plan, c);
    for (const auto& [name, values] :
         {std::pair<std::string, const std::vector<float>*>{"output", &r.output},
          {"h_n", &r.h_n},
          {"reserve", &r.reserve},
          {"d_x", &r.d_x},
          {"d_h0", &r.d_h0},
          {"d_params", &r.d_params}})
      test::expect_all_written(*values, c.name + "/" + name);
    auto check = [&](const std::string& name, const std::vector<float>& actual,
                     const std::vector<double>& reference) {
      summary.add(
          name, c.name,
          test::expect_close(c.name + "/" + name, actual, reference, nullptr, tolerance(c, name)));
    };
    check("output", r.output, c.f64("output"));
    check("h_n", r.h_n, c.f64("h_n"));
    check("d_x", r.d_x, c.f64("d_x"));
    check("d_h0", r.d_h0, c.f64("d_h0"));
    // Parameter gradients tensor by tensor, at the offsets PyTorch's order gives them (the
    // reference's carving, written to the manifest): the twin's layout must be the same.
    const std::vector<double> d_params = c.f64("d_params");
    ASSERT_EQ(cpu::gru_param_count(s), d_params.size());
    size_t index = 0;
    for (int layer = 0; layer < s.layers; ++layer)
      for (int d = 0; d < s.directions(); ++d) {
        const cpu::GruTensorOffsets o = cpu::gru_param_offsets(s, layer, d);
        for (size_t offset : {o.weight_ih, o.weight_hh, o.bias_ih, o.bias_hh}) {
          const nlohmann::json& t = c.manifest.at("param_tensors").at(index++);
          const std::string name = t.at("name");
          ASSERT_EQ(offset, t.at("offset").get<size_t>()) << name;
          size_t count = 1;
          for (size_t dim : t.at("shape").get<std::vector<size_t>>()) count *= dim;
          // Tensors share one summary line per kind ("d_weight_ih"), whatever the layer.
          const std::string kind = name.substr(0, name.find("_l"));
          summary.add("d_" + kind, c.name,
                      test::expect_close(c.name + "/d_" + name, slice(r.d_params, offset, count),
                                         slice(d_params, offset, count), nullptr,
                                         tolerance(c, "d_" + name)));
        }
      }
    EXPECT_EQ(index, c.manifest.at("param_tensors").size());
  }
}

TEST(GruCpu, GoldenCases) {
  check_golden_cases("cpu gru");
}

// On one thread a bidirectional GRU walks its directions in turn instead of at once (and the
// products and cell loops are not split): the other code path, the same contract.
TEST(GruCpu, GoldenCasesOnOneThread) {
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  check_golden_cases("cpu gru, 1 thread");
  omp_set_num_threads(threads);
}

// Called from inside a parallel region of the caller's, the directions' team has one thread,
// which must run both directions.
TEST(GruCpu, InsideACallersParallelRegion) {
  for (const GoldenCase& c : test::golden_cases("gru")) {
    if (c.name != "l2_bidir") continue;
    const cpu::GruPlan plan(shape_of(c));
    GruRun r;
#pragma omp parallel num_threads(2)
#pragma omp single
    r = run_case(plan, c);
    test::expect_all_written(r.output, "output");
    test::expect_all_written(r.d_params, "d_params");
    test::expect_close("output", r.output, c.f64("output"), nullptr, tolerance(c, "output"));
    test::expect_close("d_x", r.d_x, c.f64("d_x"), nullptr, tolerance(c, "d_x"));
    test::expect_close("d_params", r.d_params, c.f64("d_params"), nullptr,
                       tolerance(c, "d_params"));
  }
}

// Same inputs, same bits: a fresh plan and fresh buffers, twice, on the largest cases (several
// layers, both directions, the long sequence).
TEST(GruCpu, BitwiseDeterministicRunToRun) {
  for (const GoldenCase& c : test::golden_cases("gru")) {
    if (c.name != "l2_bidir" && c.name != "t512_bidir") continue;
    SCOPED_TRACE(c.name);
    const GruRun a = run_case(cpu::GruPlan(shape_of(c)), c);
    const GruRun b = run_case(cpu::GruPlan(shape_of(c)), c);
    test::expect_bitwise_equal(a.output, b.output, "output");
    test::expect_bitwise_equal(a.h_n, b.h_n, "h_n");
    test::expect_bitwise_equal(a.d_x, b.d_x, "d_x");
    test::expect_bitwise_equal(a.d_h0, b.d_h0, "d_h0");
    test::expect_bitwise_equal(a.d_params, b.d_params, "d_params");
  }
}

// A null h0, d_output or d_h_n means zeros: bitwise the results of explicit zeros.
TEST(GruCpu, NullOptionalArgumentsAreZeros) {
  cpu::GruShape s;
  s.batch = 3;
  s.steps = 4;
  s.input = 5;
  s.hidden = 6;
  s.layers = 2;
  s.bidirectional = true;
  const cpu::GruPlan plan(s);
  std::vector<float> params(cpu::gru_param_count(s)), x(3 * 4 * 5);
  for (size_t i = 0; i < params.size(); ++i) params[i] = 0.4f * std::sin(0.7f * i);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::cos(1.3f * i);
  const std::vector<float> zero_states(2 * 2 * 3 * 6, 0.0f), zero_output(3 * 4 * 12, 0.0f);
  std::vector<float> d_output(zero_output.size()), d_h_n(zero_states.size());
  for (size_t i = 0; i < d_output.size(); ++i) d_output[i] = std::sin(0.3f * i);
  for (size_t i = 0; i < d_h_n.size(); ++i) d_h_n[i] = std::cos(0.9f * i);

  const GruRun zeros =
      run_gru(plan, params, x, zero_states.data(), d_output.data(), zero_states.data());
  const GruRun nulls = run_gru(plan, params, x, nullptr, d_output.data(), nullptr);
  test::expect_bitwise_equal(zeros.output, nulls.output, "output (h0 null)");
  test::expect_bitwise_equal(zeros.d_params, nulls.d_params, "d_params (d_h_n null)");
  test::expect_bitwise_equal(zeros.d_x, nulls.d_x, "d_x (d_h_n null)");

  const GruRun zero_seq = run_gru(plan, params, x, nullptr, zero_output.data(), d_h_n.data());
  const GruRun null_seq = run_gru(plan, params, x, nullptr, nullptr, d_h_n.data());
  test::expect_bitwise_equal(zero_seq.d_params, null_seq.d_params, "d_params (d_output null)");
  test::expect_bitwise_equal(zero_seq.d_h0, null_seq.d_h0, "d_h0 (d_output null)");
}

TEST(GruCpu, RejectsEmptyShapesNamingTheSize) {
  auto expect_rejected = [](cpu::GruShape s, const char* needle) {
    try {
      cpu::GruPlan plan(s);
      ADD_FAILURE() << "accepted a GRU with " << needle << " < 1";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  const cpu::GruShape good{2, 3, 4, 5, 1, false};
  for (const char* field : {"batch", "steps", "input", "hidden", "layers"}) {
    cpu::GruShape s = good;
    int* value = field == std::string("batch")    ? &s.batch
                 : field == std::string("steps")  ? &s.steps
                 : field == std::string("input")  ? &s.input
                 : field == std::string("hidden") ? &s.hidden
                                                  : &s.layers;
    *value = 0;
    expect_rejected(s, field);
  }
}

}  // namespace
}  // namespace fusedvae
