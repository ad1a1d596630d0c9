// @brief What the benchmarks share: timing statistics and the float64 validator that gates every
// timing.
//
// Plain C++ (no CUDA, no JSON headers), so the CUDA side includes it cheaply; the validation path
// runs, and is smoke-tested, on a machine without a GPU.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace fusedvae::bench {

// float32 unit roundoff: tolerances below are written as multiples of it.
constexpr double kUnitRoundoff = 1.0 / 16777216.0;  // 2^-24

// ----------------------------------------------------------------------------------------------
// Timing statistics

struct TimeStats {
  double median_ms = 0.0;
  double min_ms = 0.0;
  double max_ms = 0.0;
  int repetitions = 0;
};

// Throws std::invalid_argument on an empty sample.
TimeStats summarize(std::vector<double> samples_ms);

// bytes / seconds in GB/s (10^9 bytes per second, as vendors quote bandwidth).
double gigabytes_per_second(double bytes, double milliseconds);

// ----------------------------------------------------------------------------------------------
// Validation: |actual[i] - reference[i]| <= tolerance[i] for every element, NaN and infinities
// included (a non-finite actual fails unless the reference is the same infinity). The result
// carries the worst error as a share of its tolerance (<= 1 passes), so a report shows how close
// to the edge each output sits.

struct CheckResult {
  std::string name;
  bool pass = true;
  double worst_share = 0.0;
  size_t worst_index = 0;
  double worst_actual = 0.0;
  double worst_reference = 0.0;
  double worst_tolerance = 0.0;
  size_t count = 0;
  std::string describe() const;  // one line: name, pass/FAIL, worst share and where
};

CheckResult check_close(const std::string& name, const std::vector<float>& actual,
                        const std::vector<double>& reference, const std::vector<double>& tolerance);

// Every check of one benchmark case; pass when all pass.
struct Validation {
  std::vector<CheckResult> checks;
  bool pass() const;
  double worst_share() const;
  void add(CheckResult result) { checks.push_back(std::move(result)); }
};

// Relative tolerance (a multiple of the unit roundoff, times the magnitude of the summed terms)
// for a float32 sum whose longest chain of sequential additions is `sequential_adds`, on top of
// `per_term_roundings` roundings in each term. The classic bound: the error of a float sum is at
// most (chain length) * u * sum |terms|; the +2 covers the final rounding and a scaling.
double sum_relative_tolerance(double sequential_adds, double per_term_roundings);

// ----------------------------------------------------------------------------------------------
// The Python side (the float64 references, the PyTorch peers)

// A file of the source tree (e.g. "python_ref/model_ref.py"): under FUSEDVAE_SOURCE_DIR when set,
// else in the current folder when it is there, else in the tree this was built from.
std::string source_file(const std::string& relative);
// The interpreter: FUSEDVAE_PYTHON, else python3.
std::string python_interpreter();
// s in single quotes for sh, its own single quotes escaped.
std::string shell_quote(const std::string& s);

}  // namespace fusedvae::bench
