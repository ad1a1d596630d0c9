// @brief The GRU's CPU twin (host/ops/gru_cpu.h) against PyTorch's nn.GRU on the CPU at the same
// thread count, on DyAD's shapes: the training forward and forward + backward.
//
//   bench_gru_cpu [--smoke] [--torch auto|on|off] [--repeats N] [--hidden 64,128,256]
//                 [--layers 1,2] [--inputs 7,2] [--out DIR] [--stem bench_gru_cpu]
//
// Shapes: batch 128, 128 steps, bidirectional; input 7 (DyAD's encoder) and 2 (its decoder);
// the hidden sizes and layer counts asked for. Before a shape is timed, the twin runs a 5-row
// batch of it against the float64 reference (python_ref/gru_ref.py --run) under the tests' rule
// (tests/test_gru_cpu.cpp); a shape that fails is not timed. PyTorch is timed by
// bench/bench_gru_torch.py (which validates nn.GRU the same way first) right after the twin on
// each shape, so that both see the same machine load, and each row carries the ratio of the two
// times measured in that run: speed-up = PyTorch's time / fusedvae's (above 1: fusedvae faster).
#include <CLI/CLI.hpp>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "bench/bench_results.h"
#include "host/io/npy.h"
#include "host/ops/gru_cpu.h"
#include "host/ops/matmul_cpu.h"

namespace fusedvae::bench {
namespace {

namespace fs = std::filesystem;

struct Options {
  bool smoke = false;
  std::string torch = "auto";  // auto: time PyTorch where it imports
  int repeats = 5;
  std::vector<int> hidden = {64, 128, 256};
  std::vector<int> layers = {1, 2};
  std::vector<int> inputs = {7, 2};  // DyAD's encoder and decoder inputs
  std::string out;
  std::string stem = "bench_gru_cpu";  // results files <out>/<stem>.{json,md}
};

// Random inputs of one shape, as PyTorch's defaults would give: weights ~ U(-1/sqrt(H),
// 1/sqrt(H)), x ~ N(0, 1), h0 ~ U(-1, 1); the output and final-state gradients ~ N(0, 1).
struct GruInputs {
  std::vector<float> params, x, h0, d_output, d_h_n;
};

GruInputs make_inputs(const cpu::GruShape& s, uint32_t seed) {
  std::mt19937 rng(seed);
  const float bound = 1.0f / std::sqrt(static_cast<float>(s.hidden));
  std::uniform_real_distribution<float> weight(-bound, bound), state(-1.0f, 1.0f);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const size_t states = static_cast<size_t>(s.layers) * s.directions() * s.batch * s.hidden;
  GruInputs in;
  in.params.resize(cpu::gru_param_count(s));
  in.x.resize(static_cast<size_t>(s.batch) * s.steps * s.input);
  in.h0.resize(states);
  in.d_output.resize(static_cast<size_t>(s.batch) * s.steps * s.output_features());
  in.d_h_n.resize(states);
  for (float& v : in.params) v = weight(rng);
  for (float& v : in.x) v = normal(rng);
  for (float& v : in.h0) v = state(rng);
  for (float& v : in.d_output) v = normal(rng);
  for (float& v : in.d_h_n) v = normal(rng);
  return in;
}

// The twin's buffers for one shape, and its two timed passes.
struct GruRunner {
  cpu::GruShape shape;
  cpu::GruPlan plan;
  GruInputs in;
  std::vector<float> output, h_n, reserve, scratch, d_x, d_h0, d_params;

  GruRunner(const cpu::GruShape& s, uint32_t seed)
      : shape(s),
        plan(s),
        in(make_inputs(s, seed)),
        output(in.d_output.size()),
        h_n(in.h0.size()),
        reserve(cpu::gru_reserve_floats(s)),
        scratch(cpu::gru_scratch_floats(s)),
        d_x(in.x.size()),
        d_h0(in.h0.size()),
        d_params(in.params.size()) {}

  void forward() {
    plan.forward_train(in.params.data(), in.x.data(), in.h0.data(), output.data(), h_n.data(),
                       reserve.data(), scratch.data());
  }
  void backward() {
    plan.backward(in.params.data(), in.x.data(), reserve.data(), in.d_output.data(),
                  in.d_h_n.data(), d_x.data(), d_h0.data(), d_params.data(), scratch.data());
  }
};

std::string shape_name(const cpu::GruShape& s) {
  return "B" + std::to_string(s.batch) + " T" + std::to_string(s.steps) + " C" +
         std::to_string(s.input) + " H" + std::to_string(s.hidden) + " L" +
         std::to_string(s.layers) + (s.bidirectional ? " bi" : "");
}

// ---------------------------------------------------------------------------------------------
// Validation: a 5-row batch of the shape against python_ref/gru_ref.py --run, per tensor
// |err| <= 8 err32 + 8 u |ref| (err32: the float32 evaluation's worst error on that tensor; the
// tests' rule and its justification are in tests/test_gru_cpu.cpp).

Validation validate_against_reference(cpu::GruShape shape) {
  shape.batch = 5;
  GruRunner run(shape, 20261130);
  run.forward();
  run.backward();
  Validation validation;
  char dir_template[] = "/tmp/fusedvae_gru_validation_XXXXXX";
  const char* dir = mkdtemp(dir_template);
  if (!dir) {
    validation.add({"reference (no temporary folder)", false});
    return validation;
  }
  const fs::path folder(dir);
  const auto size = [](const std::vector<float>& v) { return v.size(); };
  std::ofstream(folder / "shape.json")
      << nlohmann::json{{"batch", shape.batch},   {"steps", shape.steps},
                        {"input", shape.input},   {"hidden", shape.hidden},
                        {"layers", shape.layers}, {"bidirectional", shape.bidirectional}}
             .dump();
  for (const auto& [name, values] :
       {std::pair<const char*, const std::vector<float>*>{"x", &run.in.x},
        {"params", &run.in.params},
        {"h0", &run.in.h0},
        {"d_output", &run.in.d_output},
        {"d_h_n", &run.in.d_h_n}})
    io::write_npy((folder / (std::string(name) + ".npy")).string(), values->data(),
                  {size(*values)});
  const std::string command = shell_quote(python_interpreter()) + " " +
                              shell_quote(source_file("python_ref/gru_ref.py")) + " --run " +
                              shell_quote(folder.string());
  if (std::system(command.c_str()) != 0) {
    fs::remove_all(folder);
    validation.add({"reference (" + command + " failed)", false});
    return validation;
  }
  try {
    nlohmann::json err32;
    std::ifstream(folder / "err32.json") >> err32;
    auto check = [&](const std::string& name, const std::string& err_key,
                     const std::vector<float>& actual, const std::vector<double>& ref) {
      std::vector<double> tol(ref.size());
      for (size_t i = 0; i < ref.size(); ++i)
        tol[i] =
            1e-36 + 8.0 * err32.at(err_key).get<double>() + 8.0 * kUnitRoundoff * std::fabs(ref[i]);
      validation.add(check_close(name, actual, ref, tol));
    };
    auto ref = [&](const char* name) {
      return io::read_npy((folder / (std::string(name) + ".npy")).string()).to_float64();
    };
    check("output", "output", run.output, ref("output"));
    check("h_n", "h_n", run.h_n, ref("h_n"));
    check("d_x", "d_x", run.d_x, ref("d_x"));
    check("d_h0", "d_h0", run.d_h0, ref("d_h0"));
    const std::vector<double> d_params = ref("d_params");
    for (int layer = 0; layer < shape.layers; ++layer)
      for (int d = 0; d < shape.directions(); ++d) {
        const cpu::GruTensorOffsets o = cpu::gru_param_offsets(shape, layer, d);
        const std::string suffix = "_l" + std::to_string(layer) + (d == 1 ? "_reverse" : "");
        const size_t h3 = 3 * static_cast<size_t>(shape.hidden);
        const std::pair<const char*, std::pair<size_t, size_t>> tensors[] = {
            {"weight_ih", {o.weight_ih, h3 * shape.layer_input(layer)}},
            {"weight_hh", {o.weight_hh, h3 * shape.hidden}},
            {"bias_ih", {o.bias_ih, h3}},
            {"bias_hh", {o.bias_hh, h3}}};
        for (const auto& [name, range] : tensors) {
          const std::string key = "d_" + std::string(name) + suffix;
          check(key, key,
                {run.d_params.begin() + range.first,
                 run.d_params.begin() + range.first + range.second},
                {d_params.begin() + range.first, d_params.begin() + range.first + range.second});
        }
      }
  } catch (const std::exception& e) {
    validation.add({std::string("reference output (") + e.what() + ")", false});
  }
  fs::remove_all(folder);
  return validation;
}

// ---------------------------------------------------------------------------------------------
// Timing

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// Medians over `repeats` of the training forward and of forward + backward, after one untimed
// round (which also touches every buffer).
std::pair<TimeStats, TimeStats> time_twin(GruRunner* run, int repeats) {
  std::vector<double> forward, forward_backward;
  for (int i = 0; i <= repeats; ++i) {
    Clock::time_point t0 = Clock::now();
    run->forward();
    const double f = ms_since(t0);
    t0 = Clock::now();
    run->forward();
    run->backward();
    const double fb = ms_since(t0);
    if (i == 0) continue;
    forward.push_back(f);
    forward_backward.push_back(fb);
  }
  return {summarize(forward), summarize(forward_backward)};
}

// PyTorch's medians from bench_gru_torch.py; null when it did not run (reason in `why`).
nlohmann::json time_torch(const cpu::GruShape& s, int threads, int repeats, std::string* why) {
  const std::string command = shell_quote(python_interpreter()) + " " +
                              shell_quote(source_file("bench/bench_gru_torch.py")) + " --shape " +
                              std::to_string(s.batch) + "," + std::to_string(s.steps) + "," +
                              std::to_string(s.input) + "," + std::to_string(s.hidden) + "," +
                              std::to_string(s.layers) + "," + (s.bidirectional ? "1" : "0") +
                              " --threads " + std::to_string(threads) + " --repeats " +
                              std::to_string(repeats);
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) {
    *why = "could not start " + command;
    return nullptr;
  }
  std::string text;
  char chunk[4096];
  for (size_t n; (n = fread(chunk, 1, sizeof(chunk), pipe)) > 0;) text.append(chunk, n);
  const int status = pclose(pipe);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
    *why = "torch is not importable";
    return nullptr;
  }
  try {
    nlohmann::json result = nlohmann::json::parse(text);
    if (status != 0 || result.contains("error")) {
      *why = command + ": " + text;
      return nullptr;
    }
    return result;
  } catch (const std::exception&) {
    *why = command + " printed: " + text;
    return nullptr;
  }
}

const std::vector<Column> kColumns = {
    {"shape", "shape"},
    {"fusedvae fwd ms", "fusedvae_forward_ms", 1},
    {"PyTorch fwd ms", "torch_forward_ms", 1},
    {"fwd speed-up", "forward_speedup", 2},
    {"fusedvae fwd+bwd ms", "fusedvae_forward_backward_ms", 1},
    {"PyTorch fwd+bwd ms", "torch_forward_backward_ms", 1},
    {"fwd+bwd speed-up", "forward_backward_speedup", 2},
    {"validation: worst share of tol", "validation_worst_share", 3},
    {"error", "error"}};

int run(const Options& options) {
  bool ok = true;
  ResultsFile results;
  results.header =
      host_header("bench_gru_cpu: GRU forward and backward, fusedvae vs nn.GRU", options.smoke);
  results.header["matmul"] = cpu::matmul_library_description();
  // How idle OpenMP threads wait changes much on a shared machine (README: passive there).
  const char* wait_policy = std::getenv("OMP_WAIT_POLICY");
  results.header["OMP_WAIT_POLICY"] = wait_policy ? wait_policy : "(unset: libgomp's default)";
  results.header["speedup"] = "PyTorch's median time / fusedvae's median time, same run";
  const int threads = cpu::cpu_threads();
  std::vector<cpu::GruShape> shapes;
  if (options.smoke) {
    shapes.push_back({4, 6, 3, 5, 2, true});
  } else {
    for (int input : options.inputs)
      for (int hidden : options.hidden)
        for (int layers : options.layers) shapes.push_back({128, 128, input, hidden, layers, true});
  }
  const int repeats = options.smoke ? 2 : options.repeats;
  bool torch_wanted = options.torch != "off";
  std::printf("bench_gru_cpu: %s; speed-up = PyTorch time / fusedvae time\n",
              cpu::matmul_library_description().c_str());
  for (const cpu::GruShape& shape : shapes) {
    const std::string name = shape_name(shape);
    nlohmann::json row = {{"shape", name},
                          {"batch", shape.batch},
                          {"steps", shape.steps},
                          {"input", shape.input},
                          {"hidden", shape.hidden},
                          {"layers", shape.layers},
                          {"bidirectional", shape.bidirectional},
                          {"threads", threads}};
    const Validation validation = validate_against_reference(shape);
    for (const CheckResult& check : validation.checks)
      if (!check.pass) std::printf("  %s\n", check.describe().c_str());
    row["validation_worst_share"] = validation.worst_share();
    if (!validation.pass()) {  // nothing is timed that computes something else
      ok = false;
      row["error"] = "failed validation against the float64 reference";
      std::printf("%-24s FAILED validation\n", name.c_str());
      results.rows.push_back(row);
      continue;
    }
    GruRunner runner(shape, 1);
    const auto [forward, forward_backward] = time_twin(&runner, repeats);
    row["fusedvae_forward_ms"] = forward.median_ms;
    row["fusedvae_forward_backward_ms"] = forward_backward.median_ms;
    row["fusedvae_forward_min_ms"] = forward.min_ms;
    row["fusedvae_forward_backward_min_ms"] = forward_backward.min_ms;
    row["repeats"] = repeats;
    std::string why;
    const nlohmann::json torch =
        torch_wanted ? time_torch(shape, threads, repeats, &why) : nlohmann::json();
    if (!torch.is_null()) {
      const double tf = torch.at("forward_ms"), tfb = torch.at("forward_backward_ms");
      row["torch_forward_ms"] = tf;
      row["torch_forward_backward_ms"] = tfb;
      row["torch_forward_min_ms"] = torch.at("forward_min_ms");
      row["torch_forward_backward_min_ms"] = torch.at("forward_backward_min_ms");
      row["forward_speedup"] = tf / forward.median_ms;
      row["forward_backward_speedup"] = tfb / forward_backward.median_ms;
      row["torch"] = torch.at("torch");
      row["torch_validation_worst_share"] = torch.at("validation_worst_share");
      std::printf(
          "%-24s fwd %8.1f ms (PyTorch %8.1f, x%.2f)  fwd+bwd %8.1f ms (PyTorch %8.1f, "
          "x%.2f)  validation %.3f\n",
          name.c_str(), forward.median_ms, tf, tf / forward.median_ms, forward_backward.median_ms,
          tfb, tfb / forward_backward.median_ms, validation.worst_share());
    } else {
      if (torch_wanted) {
        std::printf("  PyTorch not measured: %s\n", why.c_str());
        if (options.torch == "on") ok = false;
        torch_wanted = options.torch == "on";  // auto: one failed start is enough to stop asking
      }
      std::printf("%-24s fwd %8.1f ms  fwd+bwd %8.1f ms  validation %.3f\n", name.c_str(),
                  forward.median_ms, forward_backward.median_ms, validation.worst_share());
    }
    results.rows.push_back(row);
  }
  const std::string dir = !options.out.empty() ? options.out : default_results_dir("cpu-gru");
  const auto paths = write_results(results, kColumns, dir, options.stem,
                                   "GRU on the CPU: fusedvae's twin against PyTorch nn.GRU");
  const std::string problem = check_written_results(dir, options.stem, results.rows.size());
  if (!problem.empty()) {
    std::printf("results writer check FAILED: %s\n", problem.c_str());
    ok = false;
  } else {
    std::printf("wrote %s and %s (read back: both parse)\n", paths[0].c_str(), paths[1].c_str());
  }
  std::printf("bench_gru_cpu: %s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace fusedvae::bench

int main(int argc, char** argv) {
  fusedvae::bench::Options options;
  CLI::App app{"GRU on the CPU: fusedvae's twin against PyTorch nn.GRU"};
  app.add_flag("--smoke", options.smoke, "one tiny shape, two repetitions (the ctest mode)");
  app.add_option("--torch", options.torch, "time PyTorch too: auto (where it imports), on, off")
      ->check(CLI::IsMember({"auto", "on", "off"}));
  app.add_option("--repeats", options.repeats, "timed repetitions per shape (median)")
      ->check(CLI::Range(1, 1000));
  app.add_option("--hidden", options.hidden, "hidden sizes")->delimiter(',');
  app.add_option("--layers", options.layers, "layer counts")->delimiter(',');
  app.add_option("--inputs", options.inputs, "input widths")->delimiter(',');
  app.add_option("--out", options.out, "results folder (default bench/results/<date>-cpu-gru)");
  app.add_option("--stem", options.stem, "results file names, <stem>.json and <stem>.md");
  CLI11_PARSE(app, argc, argv);
  try {
    return fusedvae::bench::run(options);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_gru_cpu: %s\n", e.what());
    return 1;
  }
}
