// @brief What every fusedvae test shares: GPU detection (skip with a reason), golden cases written
// by python_ref/make_golden.py, tolerance checks that report the worst error as a share of the
// tolerance, and poisoned device buffers.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kernels/op_params.h"
#include "kernels/reduction_workspace.h"

namespace fusedvae::test {

// ----------------------------------------------------------------------------------------------
// GPU

// True when a CUDA device can run our kernels; otherwise fills `reason` (no device, no driver...).
bool gpu_available(std::string* reason);

// Skips the current test with the reason when there is no usable GPU. Never passes silently.
#define FUSEDVAE_REQUIRE_GPU()                                                                 \
  do {                                                                                         \
    std::string fusedvae_reason_;                                                              \
    if (!::fusedvae::test::gpu_available(&fusedvae_reason_)) GTEST_SKIP() << fusedvae_reason_; \
  } while (0)

// cudaMemcpy host -> device, then a device-wide wait: the data is on the device before the call
// returns, so work on any stream (non-blocking ones and graph launches included) sees it.
void copy_to_device(void* device, const void* host, size_t bytes);

// A device allocation filled with a poison pattern (a NaN with a recognisable payload) so that a
// kernel that skips an element is caught by expect_all_written().
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t count);
  DeviceBuffer(const std::vector<float>& host);
  ~DeviceBuffer();
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  float* get() const { return ptr_; }
  size_t size() const { return count_; }
  void poison();
  std::vector<float> to_host() const;

 private:
  float* ptr_ = nullptr;
  size_t count_ = 0;
};

// The device workspace of the deterministic batch reductions, for the length of one test.
struct ScopedReductionWorkspace {
  ReductionWorkspace ws = gpu::create_reduction_workspace();
  ScopedReductionWorkspace() = default;
  ScopedReductionWorkspace(const ScopedReductionWorkspace&) = delete;
  ScopedReductionWorkspace& operator=(const ScopedReductionWorkspace&) = delete;
  ~ScopedReductionWorkspace() { gpu::destroy_reduction_workspace(&ws); }
};

// Device copy of a small POD value (a draw index, a KL weight).
template <typename T>
class DeviceScalar {
 public:
  explicit DeviceScalar(T value);
  ~DeviceScalar();
  T* get() const { return ptr_; }
  T read() const;
  void write(T value);

 private:
  T* ptr_ = nullptr;
};

// ----------------------------------------------------------------------------------------------
// Random inputs

// count floats uniform in [lo, hi) from std::mt19937(seed): the same values on every platform's
// libstdc++ (and a printed seed reproduces a case).
std::vector<float> random_floats(size_t count, float lo, float hi, uint32_t seed);

// ----------------------------------------------------------------------------------------------
// Poison

constexpr uint32_t kPoisonBits = 0x7fbadbadu;
float poison_value();
std::vector<float> poisoned(size_t count);
// Fails the test (naming the tensor and the first index) if any element still holds the poison.
void expect_all_written(const std::vector<float>& values, const std::string& name);
void expect_all_finite(const std::vector<float>& values, const std::string& name);
// Guard bands for in-place ops (whose output buffer holds their input, so it cannot start
// poisoned) and for outputs: the tensor sits between two poisoned bands of kGuardFloats, and
// strip_guards fails the test (naming the tensor) if the op wrote into either band, then returns
// the tensor. An in-place op that skips an element leaves its input there, which the comparison
// with the reference catches wherever the op changes the value.
constexpr size_t kGuardFloats = 64;
std::vector<float> with_guards(const std::vector<float>& values);
std::vector<float> strip_guards(const std::vector<float>& guarded, const std::string& name);
// Bitwise equality of two float tensors (determinism checks).
void expect_bitwise_equal(const std::vector<float>& a, const std::vector<float>& b,
                          const std::string& name);

// ----------------------------------------------------------------------------------------------
// Tolerances: |actual - ref| <= abs + rel * magnitude, where magnitude is the sum of |terms| that
// formed the reference value (written by the reference as "<name>_mag"), or |ref| when there is
// none. The error of a float32 sum is bounded in proportion to that magnitude, not to |ref|.
struct Tolerance {
  double abs;
  double rel;
};

struct CompareResult {
  double worst_share = 0.0;  // max over elements of |err| / tol; <= 1 passes
  size_t worst_index = 0;
  double worst_actual = 0.0;
  double worst_reference = 0.0;
};

CompareResult compare(const std::vector<float>& actual, const std::vector<double>& reference,
                      const std::vector<double>* magnitude, Tolerance tol);

// Compares, records the worst share as a test property and prints it, and fails above 1.
// Returns the comparison (worst_share is infinite when the sizes do not match).
CompareResult expect_close(const std::string& name, const std::vector<float>& actual,
                           const std::vector<double>& reference,
                           const std::vector<double>* magnitude, Tolerance tol);

// float32 unit roundoff: one correctly rounded float32 operation errs by at most u * |result|.
constexpr double kFloat32Roundoff = 0x1p-24;

// Absolute tolerance for float32 results: below the normal range (1.2e-38) gradual underflow rounds
// to multiples of 2^-149 ~ 1.4e-45, an absolute error no relative bound covers (mu = 1e-20 gives a
// denormal mu^2, sigmoid(-100) = 3.7e-44). 1e-36 covers such roundings and is far below any
// normal-range result, so it hides no real error.
constexpr double kDenormalAbs = 1e-36;

// Depth, in roundings, of the deterministic GPU batch reduction (kernels/block_reduce.cuh) that
// ends a row-per-warp kernel: each warp adds its rows one after another (rows_per_warp), a 5-level
// shuffle tree per warp and a 5-level tree over the block's warps, then the last block's threads
// add the block partials one after another and a second 10-level block tree, then one multiply by
// the float32 batch scale (itself rounded once). A sum of n terms formed this way errs by at most
// depth * u * (sum of |terms|), to first order.
int gpu_batch_sum_depth(int batch, int block_size);

// Largest |error| / tolerance of one tensor over many golden cases, printed at the end as
// "[ accuracy ] worst over N cases: <tensor> ...", so one line per tensor summarises an op.
class AccuracySummary {
 public:
  explicit AccuracySummary(std::string title) : title_(std::move(title)) {}
  ~AccuracySummary();
  void add(const std::string& tensor, const std::string& case_name, const CompareResult& r);

 private:
  struct Worst {
    double share = 0.0;
    std::string case_name;
    int cases = 0;
  };
  std::string title_;
  std::map<std::string, Worst> worst_;
};

// ----------------------------------------------------------------------------------------------
// Golden cases: $FUSEDVAE_GOLDEN_DIR/<op>/<case>/{manifest.json, *.npy}.
struct GoldenCase {
  std::string op;
  std::string name;
  std::string dir;
  nlohmann::json manifest;
  std::vector<size_t> shape(const std::string& array) const;
  std::vector<float> f32(const std::string& array) const;   // inputs, as stored (float32)
  std::vector<double> f64(const std::string& array) const;  // reference outputs (float64)
  // Integer arrays, as stored (dataset bytes, a permutation); fail the test on another dtype.
  std::vector<uint8_t> u8(const std::string& array) const;
  std::vector<int32_t> i32(const std::string& array) const;
  bool has(const std::string& array) const;
};

// The batch reduction a golden manifest names ("mean" or "sum").
BatchReduction golden_reduction(const GoldenCase& c);

// $FUSEDVAE_GOLDEN_DIR, else the build's golden folder (set at configure time).
std::string golden_dir();
// The checkout (python_ref/ lives there): $FUSEDVAE_SOURCE_DIR, else the configured source dir.
std::string source_dir();
// All cases of one op; fails the test (with the command to run) when there are none.
std::vector<GoldenCase> golden_cases(const std::string& op);

// A fresh, empty directory for the running test: the temp folder / `prefix` + the test's name +
// the process id, so that parallel ctest runs never share one. The caller removes it.
std::string fresh_test_dir(const std::string& prefix);

}  // namespace fusedvae::test
