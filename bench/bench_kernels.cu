// @brief Kernel benchmark, GPU side: the fused ops against an unfused eager-style composition and
// a device-to-device copy, validated against the CPU twins before any timing, timed cold-L2.
#include <cuda_runtime.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <stdexcept>

#include "bench/candidate_ops.h"
#include "bench/gpu_bench.h"
#include "bench/unfused_ops.h"
#include "kernels/cuda_check.h"
#include "kernels/recon_loss.h"
#include "kernels/reparam_kl.h"

namespace fusedvae::bench {
namespace {

// A device buffer of floats (or raw bytes), freed on scope exit.
class DeviceArray {
 public:
  explicit DeviceArray(size_t count) : count_(count) {
    FUSEDVAE_CUDA_CHECK(cudaMalloc(&ptr_, (count ? count : 1) * sizeof(float)));
  }
  explicit DeviceArray(const std::vector<float>& host) : DeviceArray(host.size()) {
    FUSEDVAE_CUDA_CHECK(
        cudaMemcpy(ptr_, host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice));
    FUSEDVAE_CUDA_CHECK(cudaDeviceSynchronize());  // see the draw index below: pageable copies
  }
  ~DeviceArray() { cudaFree(ptr_); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  float* get() const { return ptr_; }
  // All-ones bytes: a NaN, so an element the op does not write fails validation. The ops run on a
  // non-blocking stream, which does not wait for the legacy stream's memset: synchronise.
  void poison() const {
    FUSEDVAE_CUDA_CHECK(cudaMemset(ptr_, 0xff, count_ * sizeof(float)));
    FUSEDVAE_CUDA_CHECK(cudaDeviceSynchronize());
  }
  std::vector<float> to_host() const {
    std::vector<float> host(count_);
    FUSEDVAE_CUDA_CHECK(
        cudaMemcpy(host.data(), ptr_, count_ * sizeof(float), cudaMemcpyDeviceToHost));
    return host;
  }

 private:
  float* ptr_ = nullptr;
  size_t count_ = 0;
};

std::string kernel_driver_version() {
  std::ifstream in("/proc/driver/nvidia/version");
  std::string line;
  if (!std::getline(in, line)) return "unknown";
  // "NVRM version: NVIDIA UNIX x86_64 Kernel Module  570.86.15  Tue ..."
  const size_t at = line.find("Kernel Module");
  if (at == std::string::npos) return line;
  size_t start = line.find_first_not_of(' ', at + 13);
  size_t end = line.find(' ', start);
  return line.substr(start, end - start);
}

// Times `launch` (everything it enqueues on `stream`) with CUDA events, L2 flushed before each
// repetition by writing `flush` (outside the events). No host synchronisation between
// repetitions: the GPU time of the work, not the host's launch overhead, is what is measured.
class ColdL2Timer {
 public:
  ColdL2Timer(size_t l2_bytes, cudaStream_t stream)
      : flush_bytes_(2 * (l2_bytes ? l2_bytes : (64u << 20))), stream_(stream) {
    FUSEDVAE_CUDA_CHECK(cudaMalloc(&flush_, flush_bytes_));
  }
  ~ColdL2Timer() { cudaFree(flush_); }
  ColdL2Timer(const ColdL2Timer&) = delete;
  ColdL2Timer& operator=(const ColdL2Timer&) = delete;

  TimeStats time(const std::function<void()>& launch, int repetitions, int warmup) {
    for (int i = 0; i < warmup; ++i) launch();
    std::vector<cudaEvent_t> start(repetitions), stop(repetitions);
    for (int r = 0; r < repetitions; ++r) {
      FUSEDVAE_CUDA_CHECK(cudaEventCreate(&start[r]));
      FUSEDVAE_CUDA_CHECK(cudaEventCreate(&stop[r]));
    }
    for (int r = 0; r < repetitions; ++r) {
      FUSEDVAE_CUDA_CHECK(cudaMemsetAsync(flush_, r & 0xff, flush_bytes_, stream_));
      FUSEDVAE_CUDA_CHECK(cudaEventRecord(start[r], stream_));
      launch();
      FUSEDVAE_CUDA_CHECK(cudaEventRecord(stop[r], stream_));
    }
    FUSEDVAE_CUDA_CHECK(cudaStreamSynchronize(stream_));
    std::vector<double> samples(repetitions);
    for (int r = 0; r < repetitions; ++r) {
      float ms = 0.0f;
      FUSEDVAE_CUDA_CHECK(cudaEventElapsedTime(&ms, start[r], stop[r]));
      samples[r] = ms;
      cudaEventDestroy(start[r]);
      cudaEventDestroy(stop[r]);
    }
    return summarize(samples);
  }

 private:
  void* flush_ = nullptr;
  size_t flush_bytes_;
  cudaStream_t stream_;
};

// The outputs of one implementation (fused or unfused) on the device, poisoned before each run.
std::vector<std::vector<float>> download(const std::vector<const DeviceArray*>& outputs) {
  std::vector<std::vector<float>> host;
  for (const auto* o : outputs) host.push_back(o->to_host());
  return host;
}

void poison(const std::vector<const DeviceArray*>& outputs) {
  for (const auto* o : outputs) o->poison();
}

// What one op needs to run both implementations; built per case.
struct Runner {
  std::vector<const DeviceArray*> outputs;  // same order as OpCase::output_names
  std::function<void()> fused;
  std::function<void()> unfused;
  std::function<void()> candidate;  // empty when the float4 layout does not apply
};

bool bitwise_equal(const std::vector<std::vector<float>>& a,
                   const std::vector<std::vector<float>>& b) {
  if (a.size() != b.size()) return false;
  for (size_t k = 0; k < a.size(); ++k)
    if (a[k].size() != b[k].size() ||
        std::memcmp(a[k].data(), b[k].data(), a[k].size() * sizeof(float)) != 0)
      return false;
  return true;
}

}  // namespace

GpuInfo query_gpu() {
  GpuInfo info;
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    info.reason = std::string("cudaGetDeviceCount: ") + cudaGetErrorString(err);
    cudaGetLastError();  // clear the sticky-free error so later calls are not confused
    return info;
  }
  if (count == 0) {
    info.reason = "no CUDA device";
    return info;
  }
  cudaDeviceProp prop{};
  FUSEDVAE_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  info.available = true;
  info.name = prop.name;
  info.sm_count = prop.multiProcessorCount;
  info.compute_major = prop.major;
  info.compute_minor = prop.minor;
  info.l2_bytes = static_cast<size_t>(prop.l2CacheSize);
  info.memory_bytes = prop.totalGlobalMem;
  cudaDriverGetVersion(&info.driver_api_version);
  cudaRuntimeGetVersion(&info.runtime_version);
  info.driver = kernel_driver_version();
  return info;
}

GpuCaseResult run_gpu_case(const OpCase& c, int repetitions, int warmup) {
  const int batch = c.shape.batch, dim = c.shape.dim;
  const size_t n = c.shape.elements();
  cudaStream_t stream;
  FUSEDVAE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  ReductionWorkspace workspace = gpu::create_reduction_workspace();
  cudaDeviceProp prop{};
  FUSEDVAE_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));

  std::vector<std::unique_ptr<DeviceArray>> keep;  // everything allocated for this case
  auto input = [&](size_t k) {
    keep.push_back(std::make_unique<DeviceArray>(c.inputs[k]));
    return keep.back()->get();
  };
  auto buffer = [&](size_t count) {
    keep.push_back(std::make_unique<DeviceArray>(count));
    return keep.back().get();
  };
  uint64_t* draw_index = nullptr;
  float* kl_weight = nullptr;
  FUSEDVAE_CUDA_CHECK(cudaMalloc(&draw_index, sizeof(uint64_t)));
  FUSEDVAE_CUDA_CHECK(cudaMalloc(&kl_weight, sizeof(float)));
  const uint64_t draw_host = kBenchDrawIndex;
  const float weight_host = kBenchKlWeight;
  FUSEDVAE_CUDA_CHECK(
      cudaMemcpy(draw_index, &draw_host, sizeof(draw_host), cudaMemcpyHostToDevice));
  FUSEDVAE_CUDA_CHECK(
      cudaMemcpy(kl_weight, &weight_host, sizeof(weight_host), cudaMemcpyHostToDevice));
  // Pageable copies may return before they land and are not ordered with the benchmark's
  // non-blocking stream: wait for them (set-up only).
  FUSEDVAE_CUDA_CHECK(cudaDeviceSynchronize());
  const RngState rng{kBenchSeed, draw_index};
  const LogvarClamp clamp;

  Runner runner;
  const bool vec4 = candidate::applies(dim);
  if (c.kind == OpKind::kReparamForward) {
    const float* mu = input(0);
    const float* logvar = input(1);
    const DeviceArray* z = buffer(n);
    const DeviceArray* kl = buffer(batch);
    const DeviceArray* reduced = buffer(1);
    unfused::ForwardScratch s{buffer(n)->get(), buffer(n)->get(), buffer(n)->get(),
                              buffer(n)->get(), buffer(n)->get()};
    runner.outputs = {z, kl, reduced};
    runner.fused = [=] {
      gpu::reparam_kl_forward(mu, logvar, batch, dim, rng, clamp, kBenchReduction, z->get(),
                              kl->get(), reduced->get(), workspace, stream);
    };
    runner.unfused = [=] {
      unfused::reparam_kl_forward(mu, logvar, batch, dim, rng, clamp, kBenchReduction, z->get(),
                                  kl->get(), reduced->get(), s, stream);
    };
    if (vec4)
      runner.candidate = [=] {
        candidate::reparam_kl_forward(mu, logvar, batch, dim, rng, clamp, kBenchReduction, z->get(),
                                      kl->get(), reduced->get(), workspace, stream);
      };
  } else if (c.kind == OpKind::kReparamBackward) {
    const float* dz = input(0);
    const float* mu = input(1);
    const float* logvar = input(2);
    const DeviceArray* dmu = buffer(n);
    const DeviceArray* dlogvar = buffer(n);
    // The tensors eager autograd saved in its forward: eps, stddev, the clamped logvar.
    unfused::ForwardScratch saved{buffer(n)->get(), buffer(n)->get(), buffer(n)->get(),
                                  buffer(n)->get(), buffer(n)->get()};
    const DeviceArray* fwd_z = buffer(n);
    const DeviceArray* fwd_kl = buffer(batch);
    const DeviceArray* fwd_reduced = buffer(1);
    unfused::reparam_kl_forward(mu, logvar, batch, dim, rng, clamp, kBenchReduction, fwd_z->get(),
                                fwd_kl->get(), fwd_reduced->get(), saved, stream);
    unfused::BackwardScratch s{buffer(n)->get(), buffer(n)->get(), buffer(n)->get(),
                               buffer(n)->get()};
    runner.outputs = {dmu, dlogvar};
    runner.fused = [=] {
      gpu::reparam_kl_backward(dz, mu, logvar, batch, dim, rng, kl_weight, kBenchLossScale, clamp,
                               kBenchReduction, dmu->get(), dlogvar->get(), stream);
    };
    runner.unfused = [=] {
      unfused::reparam_kl_backward(dz, mu, logvar, saved.eps, saved.stddev, saved.logvar_clamped,
                                   batch, dim, kl_weight, kBenchLossScale, clamp, kBenchReduction,
                                   dmu->get(), dlogvar->get(), s, stream);
    };
    if (vec4)
      runner.candidate = [=] {
        candidate::reparam_kl_backward(dz, mu, logvar, batch, dim, rng, kl_weight, kBenchLossScale,
                                       clamp, kBenchReduction, dmu->get(), dlogvar->get(), stream);
      };
  } else {
    const float* output = input(0);
    const float* target = input(1);
    const DeviceArray* per_sample = buffer(batch);
    const DeviceArray* reduced = buffer(1);
    const DeviceArray* grad = buffer(n);
    float* loss_elements = buffer(n)->get();
    const ReconLoss loss = c.recon;
    runner.outputs = {per_sample, reduced, grad};
    runner.fused = [=] {
      gpu::recon_loss_forward_backward(output, target, batch, dim, loss, kBenchReduction,
                                       kBenchLossScale, per_sample->get(), reduced->get(),
                                       grad->get(), workspace, stream);
    };
    runner.unfused = [=] {
      unfused::recon_loss_forward_backward(output, target, batch, dim, loss, kBenchReduction,
                                           kBenchLossScale, per_sample->get(), reduced->get(),
                                           grad->get(), loss_elements, stream);
    };
    if (vec4)
      runner.candidate = [=] {
        candidate::recon_loss_forward_backward(output, target, batch, dim, loss, kBenchReduction,
                                               kBenchLossScale, per_sample->get(), reduced->get(),
                                               grad->get(), workspace, stream);
      };
  }

  GpuCaseResult result;
  // Validate both implementations first: a wrong result is never timed.
  FUSEDVAE_CUDA_CHECK(cudaStreamSynchronize(stream));
  poison(runner.outputs);
  runner.fused();
  FUSEDVAE_CUDA_CHECK(cudaStreamSynchronize(stream));
  const auto fused_outputs = download(runner.outputs);
  result.fused_validation = validate_against_cpu_twin(c, fused_outputs, "gpu_fused");
  poison(runner.outputs);
  runner.unfused();
  FUSEDVAE_CUDA_CHECK(cudaStreamSynchronize(stream));
  result.unfused_validation = validate_against_cpu_twin(c, download(runner.outputs), "gpu_unfused");

  if (runner.candidate) {
    poison(runner.outputs);
    runner.candidate();
    FUSEDVAE_CUDA_CHECK(cudaStreamSynchronize(stream));
    const auto candidate_outputs = download(runner.outputs);
    result.has_candidate = true;
    result.candidate_validation =
        validate_against_cpu_twin(c, candidate_outputs, "gpu_candidate_vec4");
    result.candidate_bitwise_equal_fused = bitwise_equal(candidate_outputs, fused_outputs);
  }

  if (result.fused_validation.pass() && result.unfused_validation.pass()) {
    ColdL2Timer timer(static_cast<size_t>(prop.l2CacheSize), stream);
    result.fused = timer.time(runner.fused, repetitions, warmup);
    result.unfused = timer.time(runner.unfused, repetitions, warmup);
    if (result.has_candidate && result.candidate_validation.pass())
      result.candidate = timer.time(runner.candidate, repetitions, warmup);
    // The copy moves the op's bytes: half read, half written.
    const size_t copy_size = (static_cast<size_t>(c.bytes_moved / 2) + 3) / 4 * 4;
    DeviceArray* copy_src = buffer(copy_size / 4);
    DeviceArray* copy_dst = buffer(copy_size / 4);
    FUSEDVAE_CUDA_CHECK(cudaMemset(copy_src->get(), 0, copy_size));
    FUSEDVAE_CUDA_CHECK(cudaDeviceSynchronize());  // the timing stream does not wait for it
    result.copy = timer.time(
        [&] {
          FUSEDVAE_CUDA_CHECK(cudaMemcpyAsync(copy_dst->get(), copy_src->get(), copy_size,
                                              cudaMemcpyDeviceToDevice, stream));
        },
        repetitions, warmup);
    result.copy_bytes = 2.0 * copy_size;
    result.timed = true;
  }
  FUSEDVAE_CUDA_CHECK(cudaStreamSynchronize(stream));
  keep.clear();
  cudaFree(draw_index);
  cudaFree(kl_weight);
  gpu::destroy_reduction_workspace(&workspace);
  cudaStreamDestroy(stream);
  return result;
}

}  // namespace fusedvae::bench
