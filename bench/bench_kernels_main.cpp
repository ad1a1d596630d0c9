// @brief Kernel benchmark driver: validates the harness on the CPU (CPU twins against float64, the
// validator rejecting corrupted outputs), then, when a GPU is present, validates and times every
// fused op against its unfused composition and a device-to-device copy; writes JSON + markdown.
//
//   bench_kernels [--smoke] [--cpu] [--out DIR] [--reps N] [--warmup N] [--sizes 128x20,65536x1024]
//
// --cpu also times the CPU twins against a memcpy of the same bytes (kernels_cpu.json): the CPU
// trainer's view of the same ops.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <sstream>
#include <string>
#include <vector>

#include "bench/bench_results.h"
#include "bench/gpu_bench.h"
#include "bench/kernel_cases.h"

namespace fusedvae::bench {
namespace {

// Launch-bound (a training batch's latent), medium, and bandwidth-bound (64M elements).
const std::vector<Shape> kFullShapes = {{128, 20},   {128, 784},    {4096, 64},
                                        {4096, 784}, {16384, 1024}, {65536, 1024}};
// Edge cases: a single element, odd sizes not multiples of 4 or 32, a training-sized latent.
const std::vector<Shape> kSmokeShapes = {{1, 1}, {3, 7}, {17, 45}, {128, 20}};

// CPU timing: the twins are reference code run by the CPU trainer, single-threaded; sizes up to
// 16M elements (64M would need ~5 GB for the float64 references on a development machine).
const std::vector<Shape> kCpuShapes = {{128, 20}, {128, 784}, {4096, 784}, {16384, 1024}};

struct Options {
  bool smoke = false;
  bool cpu_timing = false;
  std::string out;
  int repetitions = 100;
  int warmup = 5;
  std::string sizes;
};

std::vector<Shape> parse_shapes(const std::string& text) {
  std::vector<Shape> shapes;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    Shape s;
    char x = 0;
    std::stringstream parse(item);
    if (!(parse >> s.batch >> x >> s.dim) || x != 'x' || s.batch < 1 || s.dim < 1 || !parse.eof())
      throw std::invalid_argument("--sizes: '" + item + "' is not BATCHxDIM with both >= 1");
    shapes.push_back(s);
  }
  if (shapes.empty()) throw std::invalid_argument("--sizes: no size given");
  return shapes;
}

struct OpChoice {
  OpKind kind;
  ReconLossKind recon;
};

std::vector<OpChoice> all_ops() {
  std::vector<OpChoice> ops = {{OpKind::kReparamForward, ReconLossKind::kBernoulliLogits},
                               {OpKind::kReparamBackward, ReconLossKind::kBernoulliLogits}};
  for (ReconLossKind k : all_recon_kinds()) ops.push_back({OpKind::kReconLoss, k});
  return ops;
}

void print_validation(const Validation& v) {
  for (const auto& check : v.checks) std::printf("  %s\n", check.describe().c_str());
}

// 1. What can be tested without a GPU: the CPU twins against the harness's float64 reference, and
// the validator's ability to reject wrong outputs. Returns false on any failure.
bool run_cpu_harness_checks(ResultsFile* results) {
  bool ok = true;
  std::printf("== CPU harness checks: CPU twins against float64, validator rejection\n");
  for (const OpChoice& op : all_ops()) {
    for (const Shape& shape : kSmokeShapes) {
      const OpCase c = make_case(op.kind, op.recon, shape);
      const Validation v = validate_cpu_twin(c);
      const std::string rejection = check_validator_rejects_corruption(c);
      std::printf(
          "%-30s %6d x %-5d cpu twin vs f64: %s (worst %.3g of tolerance); corrupted "
          "outputs %s\n",
          c.op.c_str(), shape.batch, shape.dim, v.pass() ? "ok" : "FAIL", v.worst_share(),
          rejection.empty() ? "rejected" : "ACCEPTED");
      if (!v.pass()) print_validation(v);
      if (!rejection.empty()) std::printf("  %s\n", rejection.c_str());
      ok = ok && v.pass() && rejection.empty();
      results->rows.push_back({{"op", c.op},
                               {"batch", shape.batch},
                               {"dim", shape.dim},
                               {"cpu_twin_pass", v.pass()},
                               {"cpu_twin_worst_share", v.worst_share()},
                               {"corruption_rejected", rejection.empty()},
                               {"checks", to_json(v)}});
    }
  }
  return ok;
}

nlohmann::json gpu_header(const GpuInfo& gpu) {
  return {{"device", gpu.name},
          {"compute_capability",
           std::to_string(gpu.compute_major) + "." + std::to_string(gpu.compute_minor)},
          {"sms", gpu.sm_count},
          {"l2_bytes", gpu.l2_bytes},
          {"memory_bytes", gpu.memory_bytes},
          {"driver", gpu.driver},
          {"cuda_driver_api", gpu.driver_api_version},
          {"cuda_runtime", gpu.runtime_version}};
}

// 2. Every op at every size: validate, then time fused, unfused and the copy. False on failure.
bool run_gpu_benchmarks(const std::vector<Shape>& shapes, const Options& options,
                        ResultsFile* results) {
  bool ok = true;
  std::printf("== GPU: validate against the CPU twins, then time (cold L2, %d repetitions)\n",
              options.repetitions);
  std::printf("%-28s %13s %10s %9s %9s %7s %10s %8s %6s\n", "op", "size", "fused us", "GB/s",
              "copy GB/s", "share", "unfused us", "speedup", "worst");
  for (const Shape& shape : shapes) {
    for (const OpChoice& op : all_ops()) {
      const OpCase c = make_case(op.kind, op.recon, shape);
      const Validation cpu = validate_cpu_twin(c);
      const GpuCaseResult r = run_gpu_case(c, options.repetitions, options.warmup);
      const bool valid = cpu.pass() && r.fused_validation.pass() && r.unfused_validation.pass();
      nlohmann::json row = {{"op", c.op},
                            {"batch", shape.batch},
                            {"dim", shape.dim},
                            {"elements", shape.elements()},
                            {"bytes", c.bytes_moved},
                            {"valid", valid},
                            {"cpu_twin_worst_share", cpu.worst_share()},
                            {"fused_worst_share", r.fused_validation.worst_share()},
                            {"unfused_worst_share", r.unfused_validation.worst_share()},
                            {"checks", to_json(r.fused_validation)}};
      if (!valid) {
        ok = false;
        std::printf("%-28s %6d x %-6d VALIDATION FAILED, not timed\n", c.op.c_str(), shape.batch,
                    shape.dim);
        print_validation(cpu);
        print_validation(r.fused_validation);
        print_validation(r.unfused_validation);
      } else {
        const double fused_gbps = gigabytes_per_second(c.bytes_moved, r.fused.median_ms);
        const double copy_gbps = gigabytes_per_second(r.copy_bytes, r.copy.median_ms);
        const double speedup = r.unfused.median_ms / r.fused.median_ms;
        row.update({{"repetitions", r.fused.repetitions},
                    {"fused_median_us", r.fused.median_ms * 1e3},
                    {"fused_min_us", r.fused.min_ms * 1e3},
                    {"fused_max_us", r.fused.max_ms * 1e3},
                    {"fused_gbps", fused_gbps},
                    {"copy_median_us", r.copy.median_ms * 1e3},
                    {"copy_gbps", copy_gbps},
                    {"copy_share", fused_gbps / copy_gbps},
                    {"unfused_median_us", r.unfused.median_ms * 1e3},
                    {"unfused_min_us", r.unfused.min_ms * 1e3},
                    {"unfused_max_us", r.unfused.max_ms * 1e3},
                    {"speedup_vs_unfused", speedup}});
        if (r.has_candidate) {
          // A failing candidate is reported, not fatal: it is a proposal, not the library.
          row["candidate_valid"] = r.candidate_validation.pass();
          row["candidate_worst_share"] = r.candidate_validation.worst_share();
          row["candidate_bitwise_equal_fused"] = r.candidate_bitwise_equal_fused;
          if (r.candidate_validation.pass()) {
            const double gbps = gigabytes_per_second(c.bytes_moved, r.candidate.median_ms);
            row["candidate_median_us"] = r.candidate.median_ms * 1e3;
            row["candidate_gbps"] = gbps;
            row["candidate_copy_share"] = gbps / copy_gbps;
            row["candidate_speedup_vs_fused"] = r.fused.median_ms / r.candidate.median_ms;
          } else {
            print_validation(r.candidate_validation);
          }
        }
        std::printf("%-28s %6d x %-6d %10.2f %9.1f %9.1f %6.1f%% %10.2f %7.2fx %6.3f\n",
                    c.op.c_str(), shape.batch, shape.dim, r.fused.median_ms * 1e3, fused_gbps,
                    copy_gbps, 100.0 * fused_gbps / copy_gbps, r.unfused.median_ms * 1e3, speedup,
                    r.fused_validation.worst_share());
      }
      std::fflush(stdout);
      results->rows.push_back(std::move(row));
    }
  }
  return ok;
}

// Median wall time of `f` in milliseconds: one untimed call, then repetitions until both
// `min_reps` calls and 0.2 s have passed (at most 200 calls).
template <typename F>
TimeStats time_on_host(F&& f, int min_reps) {
  using Clock = std::chrono::steady_clock;
  f();
  std::vector<double> samples;
  const auto start = Clock::now();
  while (samples.size() < 200 && (static_cast<int>(samples.size()) < min_reps ||
                                  Clock::now() - start < std::chrono::milliseconds(200))) {
    const auto t0 = Clock::now();
    f();
    samples.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  return summarize(samples);
}

// 3. The CPU twins, each validated against float64 at the timed size first, against a memcpy
// moving the same bytes (half read, half written). Single thread; caches are warm for the sizes
// that fit in them, as they are in the CPU trainer's step. False on a failed validation.
bool run_cpu_timing(const std::vector<Shape>& shapes, const Options& options,
                    ResultsFile* results) {
  bool ok = true;
  std::printf("== CPU twins: validate against float64, then time against memcpy (1 thread)\n");
  std::printf("%-28s %13s %10s %9s %11s %7s %6s\n", "op", "size", "twin us", "GB/s", "memcpy GB/s",
              "share", "worst");
  for (const Shape& shape : shapes) {
    for (const OpChoice& op : all_ops()) {
      const OpCase c = make_case(op.kind, op.recon, shape);
      const Validation v = validate_cpu_twin(c);
      nlohmann::json row = {{"op", c.op},
                            {"batch", shape.batch},
                            {"dim", shape.dim},
                            {"elements", shape.elements()},
                            {"bytes", c.bytes_moved},
                            {"megabytes", c.bytes_moved / 1e6},
                            {"valid", v.pass()},
                            {"worst_share", v.worst_share()}};
      if (!v.pass()) {
        ok = false;
        std::printf("%-28s %6d x %-6d VALIDATION FAILED, not timed\n", c.op.c_str(), shape.batch,
                    shape.dim);
        print_validation(v);
        results->rows.push_back(std::move(row));
        continue;
      }
      std::vector<std::vector<float>> outputs = poisoned_outputs(c);
      const TimeStats twin =
          time_on_host([&] { run_cpu_twin(c, &outputs); }, options.smoke ? 2 : 5);
      const size_t copy_bytes = static_cast<size_t>(c.bytes_moved / 2);
      std::vector<unsigned char> source(copy_bytes, 1), destination(copy_bytes);
      const TimeStats copy =
          time_on_host([&] { std::memcpy(destination.data(), source.data(), copy_bytes); },
                       options.smoke ? 2 : 5);
      const double twin_gbps = gigabytes_per_second(c.bytes_moved, twin.median_ms);
      const double copy_gbps = gigabytes_per_second(2.0 * copy_bytes, copy.median_ms);
      row.update({{"repetitions", twin.repetitions},
                  {"twin_median_us", twin.median_ms * 1e3},
                  {"twin_gbps", twin_gbps},
                  {"memcpy_median_us", copy.median_ms * 1e3},
                  {"memcpy_gbps", copy_gbps},
                  {"copy_share", twin_gbps / copy_gbps}});
      std::printf("%-28s %6d x %-6d %10.2f %9.2f %11.2f %6.1f%% %6.3f\n", c.op.c_str(), shape.batch,
                  shape.dim, twin.median_ms * 1e3, twin_gbps, copy_gbps,
                  100.0 * twin_gbps / copy_gbps, v.worst_share());
      std::fflush(stdout);
      results->rows.push_back(std::move(row));
    }
  }
  return ok;
}

const std::vector<Column> kCpuTimingColumns = {{"op", "op"},
                                               {"batch", "batch"},
                                               {"dim", "dim"},
                                               {"MB moved", "megabytes", 2},
                                               {"twin us (median)", "twin_median_us", 2},
                                               {"GB/s", "twin_gbps", 2},
                                               {"memcpy GB/s", "memcpy_gbps", 2},
                                               {"share of memcpy", "copy_share", 3},
                                               {"valid", "valid"},
                                               {"worst share of tol", "worst_share", 3}};

const std::vector<Column> kValidationColumns = {{"op", "op"},
                                                {"batch", "batch"},
                                                {"dim", "dim"},
                                                {"CPU twin ok", "cpu_twin_pass"},
                                                {"worst share of tol", "cpu_twin_worst_share", 3},
                                                {"corruption rejected", "corruption_rejected"}};

const std::vector<Column> kTimingColumns = {{"op", "op"},
                                            {"batch", "batch"},
                                            {"dim", "dim"},
                                            {"MB moved", "megabytes", 2},
                                            {"fused us (median)", "fused_median_us", 2},
                                            {"min", "fused_min_us", 2},
                                            {"max", "fused_max_us", 2},
                                            {"GB/s", "fused_gbps", 1},
                                            {"copy GB/s", "copy_gbps", 1},
                                            {"share of copy", "copy_share", 3},
                                            {"unfused us", "unfused_median_us", 2},
                                            {"speed-up", "speedup_vs_unfused", 2},
                                            {"float4 candidate us", "candidate_median_us", 2},
                                            {"its share of copy", "candidate_copy_share", 3},
                                            {"valid", "valid"},
                                            {"worst share of tol", "fused_worst_share", 3}};

int run(const Options& options) {
  bool ok = true;
  ResultsFile validation;
  validation.header = host_header("bench_kernels: harness checks on the CPU", options.smoke);
  ok = run_cpu_harness_checks(&validation) && ok;

  const GpuInfo gpu = query_gpu();
  ResultsFile timing;
  timing.header = host_header("bench_kernels: fused ops vs unfused and copy", options.smoke);
  if (!gpu.available) {
    std::printf(
        "== GPU timing SKIPPED: %s. Only the CPU harness checks above ran; no GPU "
        "numbers are reported.\n",
        gpu.reason.c_str());
  } else {
    timing.header.update(gpu_header(gpu));
    timing.header["repetitions"] = options.repetitions;
    timing.header["l2_flush"] = "2 x L2 written before each repetition";
    const std::vector<Shape> shapes = !options.sizes.empty() ? parse_shapes(options.sizes)
                                      : options.smoke        ? kSmokeShapes
                                                             : kFullShapes;
    ok = run_gpu_benchmarks(shapes, options, &timing) && ok;
    for (auto& row : timing.rows) row["megabytes"] = row["bytes"].get<double>() / 1e6;
  }

  ResultsFile cpu_timing;
  cpu_timing.header = host_header("bench_kernels: CPU twins vs memcpy", options.smoke);
  cpu_timing.header["threads"] = 1;
  if (options.cpu_timing) {
    const std::vector<Shape> shapes = !options.sizes.empty() ? parse_shapes(options.sizes)
                                      : options.smoke        ? kSmokeShapes
                                                             : kCpuShapes;
    ok = run_cpu_timing(shapes, options, &cpu_timing) && ok;
  }

  const std::string dir =
      !options.out.empty() ? options.out : default_results_dir(gpu.available ? gpu.name : "cpu");
  for (const auto& [results, stem, columns, title] :
       {std::tuple{&validation, "kernels_validation", &kValidationColumns,
                   "Kernel benchmark: harness checks (CPU)"},
        std::tuple{&timing, "kernels", &kTimingColumns,
                   "Fused ops against an unfused composition and a device copy"},
        std::tuple{&cpu_timing, "kernels_cpu", &kCpuTimingColumns,
                   "CPU twins against memcpy (one thread)"}}) {
    if (results == &timing && !gpu.available) continue;
    if (results == &cpu_timing && !options.cpu_timing) continue;
    const auto paths = write_results(*results, *columns, dir, stem, title);
    const std::string problem = check_written_results(dir, stem, results->rows.size());
    if (!problem.empty()) {
      std::printf("results writer check FAILED: %s\n", problem.c_str());
      ok = false;
    } else {
      std::printf("wrote %s and %s (read back: both parse)\n", paths[0].c_str(), paths[1].c_str());
    }
  }
  std::printf("bench_kernels: %s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace fusedvae::bench

int main(int argc, char** argv) {
  fusedvae::bench::Options options;
  CLI::App app{"fusedvae kernel benchmark: fused ops vs an unfused composition and a copy"};
  app.add_flag("--smoke", options.smoke, "tiny sizes, few repetitions (the ctest mode)");
  app.add_flag("--cpu", options.cpu_timing,
               "also time the CPU twins against memcpy (writes kernels_cpu.json)");
  app.add_option("--out", options.out, "results folder (default bench/results/<date>-<device>)");
  app.add_option("--reps", options.repetitions, "timed repetitions per measurement")
      ->check(CLI::Range(1, 100000));
  app.add_option("--warmup", options.warmup, "untimed runs before timing")
      ->check(CLI::Range(0, 1000));
  app.add_option("--sizes", options.sizes, "comma-separated BATCHxDIM list (overrides the set)");
  CLI11_PARSE(app, argc, argv);
  if (options.smoke && app.count("--reps") == 0) options.repetitions = 5;
  try {
    return fusedvae::bench::run(options);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_kernels: %s\n", e.what());
    return 1;
  }
}
