// @brief The GPU side of the kernel benchmark (bench_kernels.cu): device query, validation of the
// fused and unfused GPU outputs, and cold-L2 timing with CUDA events.
#pragma once

#include <string>
#include <vector>

#include "bench/bench_support.h"
#include "bench/kernel_cases.h"

namespace fusedvae::bench {

struct GpuInfo {
  bool available = false;
  std::string reason;  // why not, when unavailable
  std::string name;
  std::string driver;          // kernel driver version string, e.g. "570.86.15"
  int driver_api_version = 0;  // cudaDriverGetVersion, e.g. 13000
  int runtime_version = 0;     // cudaRuntimeGetVersion
  int sm_count = 0;
  int compute_major = 0, compute_minor = 0;
  size_t l2_bytes = 0;
  size_t memory_bytes = 0;
};

GpuInfo query_gpu();

struct GpuCaseResult {
  Validation fused_validation;    // fused GPU outputs against the CPU twin
  Validation unfused_validation;  // the unfused composition's outputs against the CPU twin
  TimeStats fused;
  TimeStats unfused;
  TimeStats copy;  // device-to-device copy moving the same bytes (read + write)
  // The float4 candidate layout (bench/candidate_ops.h), when dim % 4 == 0.
  bool has_candidate = false;
  Validation candidate_validation;
  TimeStats candidate;
  bool candidate_bitwise_equal_fused = false;
  double copy_bytes = 0;  // bytes moved by the copy: 2 x its size
  bool timed = false;     // false when validation failed (no timing of wrong results)
};

// Uploads the case, runs the fused op and the unfused composition once each into poisoned
// outputs and validates them; only then times each `repetitions` times after `warmup` runs, with
// L2 flushed (a 2 x L2-size buffer written) before every repetition, outside the timed events.
GpuCaseResult run_gpu_case(const OpCase& c, int repetitions, int warmup);

}  // namespace fusedvae::bench
