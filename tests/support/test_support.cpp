// @brief Shared test machinery (see test_support.h).
#include "tests/support/test_support.h"

#include <cuda_runtime.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>

#include "host/io/npy.h"
#include "kernels/cuda_check.h"
#ifndef FUSEDVAE_SIMT
#include "host/train/trainer.h"
#endif

namespace fusedvae::test {

std::vector<float> random_floats(size_t count, float lo, float hi, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(count);
  for (auto& x : v) x = dist(gen);
  return v;
}

bool gpu_available(std::string* reason) {
#ifdef FUSEDVAE_SIMT
  // The SIMT harness build (tests/simt/): the "device" is the CPU emulator, always present.
  (void)reason;
  return true;
#else
  return cuda_device_present(reason);
#endif
}

void copy_to_device(void* device, const void* host, size_t bytes) {
  FUSEDVAE_CUDA_CHECK(cudaMemcpy(device, host, bytes, cudaMemcpyHostToDevice));
  // A cudaMemcpy from pageable memory may return before the copy has reached the device, and it
  // is ordered only with the legacy default stream: a kernel or graph launched next on a
  // cudaStreamNonBlocking stream (the captured-gather test, the GPU trainer's tests) could read the
  // old contents. Waiting here makes every test input visible to any stream.
  FUSEDVAE_CUDA_CHECK(cudaDeviceSynchronize());
}

DeviceBuffer::DeviceBuffer(size_t count) : count_(count) {
  FUSEDVAE_CUDA_CHECK(cudaMalloc(&ptr_, std::max<size_t>(count, 1) * sizeof(float)));
  poison();
}

DeviceBuffer::DeviceBuffer(const std::vector<float>& host) : DeviceBuffer(host.size()) {
  copy_to_device(ptr_, host.data(), host.size() * sizeof(float));
}

DeviceBuffer::~DeviceBuffer() {
  cudaFree(ptr_);
}

void DeviceBuffer::poison() {
  const std::vector<float> p = poisoned(count_);
  copy_to_device(ptr_, p.data(), count_ * sizeof(float));
}

std::vector<float> DeviceBuffer::to_host() const {
  std::vector<float> host(count_);
  FUSEDVAE_CUDA_CHECK(cudaDeviceSynchronize());
  FUSEDVAE_CUDA_CHECK(
      cudaMemcpy(host.data(), ptr_, count_ * sizeof(float), cudaMemcpyDeviceToHost));
  return host;
}

template <typename T>
DeviceScalar<T>::DeviceScalar(T value) {
  FUSEDVAE_CUDA_CHECK(cudaMalloc(&ptr_, sizeof(T)));
  write(value);
}
template <typename T>
DeviceScalar<T>::~DeviceScalar() {
  cudaFree(ptr_);
}
template <typename T>
T DeviceScalar<T>::read() const {
  T value;
  FUSEDVAE_CUDA_CHECK(cudaDeviceSynchronize());
  FUSEDVAE_CUDA_CHECK(cudaMemcpy(&value, ptr_, sizeof(T), cudaMemcpyDeviceToHost));
  return value;
}
template <typename T>
void DeviceScalar<T>::write(T value) {
  copy_to_device(ptr_, &value, sizeof(T));
}
template class DeviceScalar<float>;
template class DeviceScalar<uint64_t>;

float poison_value() {
  float f;
  std::memcpy(&f, &kPoisonBits, sizeof f);
  return f;
}

std::vector<float> poisoned(size_t count) {
  return std::vector<float>(count, poison_value());
}

void expect_all_written(const std::vector<float>& values, const std::string& name) {
  for (size_t i = 0; i < values.size(); ++i) {
    uint32_t bits;
    std::memcpy(&bits, &values[i], sizeof bits);
    if (bits == kPoisonBits) {
      ADD_FAILURE() << name << ": element " << i << " of " << values.size()
                    << " was never written (still poisoned)";
      return;
    }
  }
}

void expect_all_finite(const std::vector<float>& values, const std::string& name) {
  for (size_t i = 0; i < values.size(); ++i)
    if (!std::isfinite(values[i])) {
      ADD_FAILURE() << name << ": element " << i << " is " << values[i];
      return;
    }
}

std::vector<float> with_guards(const std::vector<float>& values) {
  std::vector<float> guarded = poisoned(values.size() + 2 * kGuardFloats);
  std::copy(values.begin(), values.end(), guarded.begin() + kGuardFloats);
  return guarded;
}

std::vector<float> strip_guards(const std::vector<float>& guarded, const std::string& name) {
  if (guarded.size() < 2 * kGuardFloats) {
    ADD_FAILURE() << name << ": buffer of " << guarded.size() << " floats has no guard bands";
    return {};
  }
  const size_t count = guarded.size() - 2 * kGuardFloats;
  for (size_t i = 0; i < guarded.size(); ++i) {
    if (i == kGuardFloats) i += count;
    if (i >= guarded.size()) break;
    uint32_t bits;
    std::memcpy(&bits, &guarded[i], sizeof bits);
    if (bits != kPoisonBits) {
      const long offset = i < kGuardFloats ? static_cast<long>(i) - static_cast<long>(kGuardFloats)
                                           : static_cast<long>(i - kGuardFloats);
      ADD_FAILURE() << name << ": wrote outside the tensor of " << count << " at index " << offset;
      break;
    }
  }
  return std::vector<float>(guarded.begin() + kGuardFloats, guarded.begin() + kGuardFloats + count);
}

void expect_bitwise_equal(const std::vector<float>& a, const std::vector<float>& b,
                          const std::string& name) {
  ASSERT_EQ(a.size(), b.size()) << name;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) {
      ADD_FAILURE() << name << ": not bitwise equal at " << i << ": " << a[i] << " vs " << b[i];
      return;
    }
}

CompareResult compare(const std::vector<float>& actual, const std::vector<double>& reference,
                      const std::vector<double>* magnitude, Tolerance tol) {
  CompareResult r;
  for (size_t i = 0; i < actual.size(); ++i) {
    const double ref = reference[i];
    const double mag = magnitude ? (*magnitude)[i] : std::fabs(ref);
    const double allowed = tol.abs + tol.rel * mag;
    const double err = std::fabs(static_cast<double>(actual[i]) - ref);
    // NaN never passes: a NaN error counts as infinitely far.
    const double share = std::isnan(err) ? INFINITY : err / allowed;
    if (share > r.worst_share || (i == 0 && std::isnan(err))) {
      r.worst_share = share;
      r.worst_index = i;
      r.worst_actual = actual[i];
      r.worst_reference = ref;
    }
  }
  return r;
}

CompareResult expect_close(const std::string& name, const std::vector<float>& actual,
                           const std::vector<double>& reference,
                           const std::vector<double>* magnitude, Tolerance tol) {
  CompareResult mismatch;
  mismatch.worst_share = INFINITY;
  if (actual.size() != reference.size()) {
    ADD_FAILURE() << name << ": size mismatch: " << actual.size() << " vs " << reference.size();
    return mismatch;
  }
  if (magnitude && magnitude->size() != reference.size()) {
    ADD_FAILURE() << name << ": magnitude size " << magnitude->size() << " vs " << reference.size();
    return mismatch;
  }
  expect_all_written(actual, name);
  const CompareResult r = compare(actual, reference, magnitude, tol);
  std::ostringstream line;
  line << name << ": worst error = " << r.worst_share << " of tolerance (abs " << tol.abs
       << " + rel " << tol.rel << ") at [" << r.worst_index << "] " << r.worst_actual << " vs "
       << r.worst_reference;
  std::printf("[ accuracy ] %s\n", line.str().c_str());
  ::testing::Test::RecordProperty(name + ".worst_share", std::to_string(r.worst_share));
  EXPECT_LE(r.worst_share, 1.0) << line.str();
  return r;
}

int gpu_batch_sum_depth(int batch, int block_size) {
  const int warps_per_block = block_size / 32;
  const int blocks = std::min((batch + warps_per_block - 1) / warps_per_block, 1024);
  const int rows_per_warp = (batch + blocks * warps_per_block - 1) / (blocks * warps_per_block);
  const int blocks_per_thread = (blocks + block_size - 1) / block_size;
  return rows_per_warp + 10 + blocks_per_thread + 10 + 2;
}

AccuracySummary::~AccuracySummary() {
  for (const auto& [tensor, w] : worst_)
    std::printf("[ accuracy ] %s: worst over %d cases: %s = %.3g of tolerance (case %s)\n",
                title_.c_str(), w.cases, tensor.c_str(), w.share, w.case_name.c_str());
}

void AccuracySummary::add(const std::string& tensor, const std::string& case_name,
                          const CompareResult& r) {
  Worst& w = worst_[tensor];
  ++w.cases;
  if (w.cases == 1 || r.worst_share > w.share || std::isnan(r.worst_share)) {
    w.share = r.worst_share;
    w.case_name = case_name;
  }
}

// ----------------------------------------------------------------------------------------------

BatchReduction golden_reduction(const GoldenCase& c) {
  const std::string name = c.manifest.at("reduction").get<std::string>();
  if (name == "mean") return BatchReduction::kMean;
  if (name == "sum") return BatchReduction::kSum;
  throw std::runtime_error(c.dir + "/manifest.json: unknown reduction '" + name + "'");
}

std::string golden_dir() {
  const char* dir = std::getenv("FUSEDVAE_GOLDEN_DIR");
  return dir ? dir : FUSEDVAE_DEFAULT_GOLDEN_DIR;
}

std::string fresh_test_dir(const std::string& prefix) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                    (prefix + info->name() + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

std::string source_dir() {
  const char* dir = std::getenv("FUSEDVAE_SOURCE_DIR");
  return dir ? dir : FUSEDVAE_DEFAULT_SOURCE_DIR;
}

std::vector<size_t> GoldenCase::shape(const std::string& array) const {
  return io::read_npy(dir + "/" + array + ".npy").shape;
}
std::vector<float> GoldenCase::f32(const std::string& array) const {
  return io::read_npy(dir + "/" + array + ".npy").to_float32();
}
std::vector<double> GoldenCase::f64(const std::string& array) const {
  return io::read_npy(dir + "/" + array + ".npy").to_float64();
}
namespace {
template <typename T>
std::vector<T> integer_array(const GoldenCase& c, const std::string& array, io::NpyDtype dtype) {
  const io::NpyArray a = io::read_npy(c.dir + "/" + array + ".npy");
  if (a.dtype != dtype) {
    ADD_FAILURE() << c.dir << "/" << array << ".npy: unexpected dtype";
    return {};
  }
  std::vector<T> values(a.size());
  std::memcpy(values.data(), a.bytes.data(), values.size() * sizeof(T));
  return values;
}
}  // namespace

std::vector<uint8_t> GoldenCase::u8(const std::string& array) const {
  return integer_array<uint8_t>(*this, array, io::NpyDtype::kUint8);
}
std::vector<int32_t> GoldenCase::i32(const std::string& array) const {
  return integer_array<int32_t>(*this, array, io::NpyDtype::kInt32);
}
bool GoldenCase::has(const std::string& array) const {
  return std::filesystem::exists(dir + "/" + array + ".npy");
}

std::vector<GoldenCase> golden_cases(const std::string& op) {
  namespace fs = std::filesystem;
  std::vector<GoldenCase> cases;
  const fs::path root = fs::path(golden_dir()) / op;
  if (fs::is_directory(root)) {
    for (const auto& entry : fs::directory_iterator(root)) {
      const fs::path manifest_path = entry.path() / "manifest.json";
      if (!fs::exists(manifest_path)) continue;
      GoldenCase c;
      c.op = op;
      c.name = entry.path().filename().string();
      c.dir = entry.path().string();
      std::ifstream in(manifest_path);
      c.manifest = nlohmann::json::parse(in);
      cases.push_back(std::move(c));
    }
  }
  std::sort(cases.begin(), cases.end(),
            [](const GoldenCase& a, const GoldenCase& b) { return a.name < b.name; });
  if (cases.empty())
    ADD_FAILURE() << "no golden cases for '" << op << "' under " << root.string()
                  << ": run `python3 python_ref/make_golden.py --out " << golden_dir()
                  << "` (ctest does this through the golden_cases fixture)";
  return cases;
}

}  // namespace fusedvae::test
