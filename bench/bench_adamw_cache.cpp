// @brief How long the CPU's AdamW update takes depending on what the caches kept: the update over a
// model's parameters (the CPU twin, host/ops/adamw_cpu.h, on the OpenMP pool) right after itself
// (every operand in cache), and after touching 2 to 64 MB of other memory, as a training step
// does between two updates of the same layer. On a machine whose last-level cache keeps the
// parameters, gradients and moments from one step to the next the update costs what it costs hot;
// where it does not, the difference is what the step waits for memory.
//
//   bench_adamw_cache [--params N] [--repeats R] [--smoke]
//
// Prints the best and the median of R updates per case, and the median's ratio to the hot one.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <vector>

#include "bench/bench_support.h"
#include "host/ops/adamw_cpu.h"
#include "host/ops/matmul_cpu.h"

using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  using namespace fusedvae;
  size_t params = 652824;  // 784-400-20
  int repeats = 30;
  bool smoke = false;
  CLI::App app{"AdamW's CPU update after touching other memory"};
  app.add_option("--params", params, "parameters updated (default: 784-400-20's 652,824)")
      ->check(CLI::Range(size_t{1}, size_t{1} << 30));
  app.add_option("--repeats", repeats, "updates timed per case")->check(CLI::Range(1, 100000));
  app.add_flag("--smoke", smoke, "small sizes, few repeats (the ctest mode)");
  CLI11_PARSE(app, argc, argv);
  try {
    if (smoke) params = 4096, repeats = 3;
    std::vector<float> p(params, 0.1f), g(params, 0.01f), m(params, 1e-3f), v(params, 1e-4f);
    const std::vector<size_t> other_mb =
        smoke ? std::vector<size_t>{0, 1} : std::vector<size_t>{0, 2, 4, 8, 12, 16, 24, 32, 64};
    std::vector<unsigned char> other(other_mb.back() << 20, 1);
    OptimizerConfig opt;
    StepState state{};
    state.lr = 1e-3f;
    std::printf(
        "AdamW over %zu parameters (%.1f MB of parameters, gradients and moments), %d "
        "threads (%s)\n",
        params, 16.0 * params / (1 << 20), cpu::cpu_threads(),
        cpu::matmul_library_description().c_str());
    double hot_median = 0.0;
    for (const size_t mb : other_mb) {
      std::vector<double> ms;
      for (int r = 0; r < repeats + 1; ++r) {
        const size_t bytes = mb << 20;
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < bytes; i += 64) other[i] = static_cast<unsigned char>(other[i] + 1);
        const auto t0 = Clock::now();
        cpu::adamw_update(p.data(), m.data(), v.data(), g.data(), params, &state, opt, nullptr);
        const double t = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        if (r > 0) ms.push_back(t);  // the first one warms the pool and the pages
      }
      const bench::TimeStats t = bench::summarize(ms);
      if (mb == 0) hot_median = t.median_ms;
      std::printf(
          "after touching %2zu MB of other memory: best %.3f ms, median %.3f ms (%.2fx the "
          "update right after itself)\n",
          mb, t.min_ms, t.median_ms, t.median_ms / hot_median);
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_adamw_cache: %s\n", e.what());
    return 1;
  }
}
