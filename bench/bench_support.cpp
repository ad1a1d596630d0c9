// @brief Timing statistics and the float64 validator shared by the benchmarks.
#include "bench/bench_support.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <stdexcept>

namespace fusedvae::bench {

TimeStats summarize(std::vector<double> samples_ms) {
  if (samples_ms.empty()) throw std::invalid_argument("summarize: no timing samples");
  std::sort(samples_ms.begin(), samples_ms.end());
  const size_t n = samples_ms.size();
  TimeStats stats;
  stats.median_ms = n % 2 ? samples_ms[n / 2] : 0.5 * (samples_ms[n / 2 - 1] + samples_ms[n / 2]);
  stats.min_ms = samples_ms.front();
  stats.max_ms = samples_ms.back();
  stats.repetitions = static_cast<int>(n);
  return stats;
}

double gigabytes_per_second(double bytes, double milliseconds) {
  return milliseconds > 0.0 ? bytes / (milliseconds * 1e-3) / 1e9 : 0.0;
}

// ----------------------------------------------------------------------------------------------
// Validation

std::string CheckResult::describe() const {
  char line[512];
  std::snprintf(line, sizeof(line),
                "%-34s %s  worst %.3g of tolerance at [%zu]: got %.9g, want %.9g (tol %.3g), %zu "
                "values",
                name.c_str(), pass ? "ok  " : "FAIL", worst_share, worst_index, worst_actual,
                worst_reference, worst_tolerance, count);
  return line;
}

CheckResult check_close(const std::string& name, const std::vector<float>& actual,
                        const std::vector<double>& reference,
                        const std::vector<double>& tolerance) {
  if (actual.size() != reference.size() || tolerance.size() != reference.size())
    throw std::invalid_argument("check_close(" + name + "): " + std::to_string(actual.size()) +
                                " values against " + std::to_string(reference.size()) +
                                " references and " + std::to_string(tolerance.size()) +
                                " tolerances");
  CheckResult result;
  result.name = name;
  result.count = actual.size();
  for (size_t i = 0; i < actual.size(); ++i) {
    const double a = actual[i];
    const double r = reference[i];
    double share;
    if (std::isnan(a) || std::isnan(r)) {
      share = std::numeric_limits<double>::infinity();
    } else if (std::isinf(a) || std::isinf(r)) {
      share = a == r ? 0.0 : std::numeric_limits<double>::infinity();
    } else {
      const double err = std::fabs(a - r);
      share = tolerance[i] > 0.0 ? err / tolerance[i]
                                 : (err == 0.0 ? 0.0 : std::numeric_limits<double>::infinity());
    }
    if (i == 0 || share > result.worst_share) {
      result.worst_share = share;
      result.worst_index = i;
      result.worst_actual = a;
      result.worst_reference = r;
      result.worst_tolerance = tolerance[i];
    }
  }
  result.pass = result.worst_share <= 1.0;
  return result;
}

bool Validation::pass() const {
  return std::all_of(checks.begin(), checks.end(), [](const CheckResult& c) { return c.pass; });
}

double Validation::worst_share() const {
  double worst = 0.0;
  for (const auto& c : checks) worst = std::max(worst, c.worst_share);
  return worst;
}

double sum_relative_tolerance(double sequential_adds, double per_term_roundings) {
  return (sequential_adds + per_term_roundings + 2.0) * kUnitRoundoff;
}

std::string source_file(const std::string& relative) {
  namespace fs = std::filesystem;
  if (const char* dir = std::getenv("FUSEDVAE_SOURCE_DIR"))
    return (fs::path(dir) / relative).string();
  if (fs::exists(relative)) return relative;
  return (fs::path(FUSEDVAE_BENCH_SOURCE_DIR) / relative).string();
}

std::string python_interpreter() {
  const char* python = std::getenv("FUSEDVAE_PYTHON");
  return python ? python : "python3";
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

}  // namespace fusedvae::bench
