// @brief The GPU backend (gpu_backend.h): device memory, one blocking stream, the kernels'
// launchers, the cuBLASLt engine the layers share, and the step's CUDA graph.
#include "host/train/gpu/gpu_backend.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>

#include "host/train/gpu/step_graph.h"
#include "kernels/adamw.h"
#include "kernels/batch_gather.h"
#include "kernels/cuda_check.h"
#include "kernels/free_bits.h"
#include "kernels/grad_norm.h"
#include "kernels/recon_loss.h"
#include "kernels/reparam_kl.h"
#include "kernels/step_state.h"

namespace fusedvae {

bool cuda_device_present(std::string* reason) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    // The usual case on a machine without a GPU, said in words a user can act on.
    const std::string why = err == cudaErrorInsufficientDriver
                                ? "the NVIDIA driver is missing or older than this CUDA runtime"
                            : err == cudaErrorNoDevice ? "no CUDA-capable device is detected"
                                                       : cudaGetErrorString(err);
    if (reason) *reason = "no usable CUDA device: " + why + " (" + cudaGetErrorName(err) + ")";
    cudaGetLastError();  // clear the error so that later calls report their own
    return false;
  }
  if (count == 0) {
    if (reason) *reason = "no usable CUDA device: cudaGetDeviceCount found 0 devices";
    return false;
  }
  return true;
}

namespace {

class GpuBackend final : public Backend, public gpu::GpuBackendContext {
 public:
  GpuBackend(bool tf32, bool cuda_graph) {
    std::string reason;
    if (!cuda_device_present(&reason)) throw std::runtime_error("GPU trainer: " + reason);
    int device = 0;
    FUSEDVAE_CUDA_CHECK(cudaGetDevice(&device));
    cudaDeviceProp prop{};
    FUSEDVAE_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    // A way around a fused cuBLASLt epilogue that misbehaves on some device or library version:
    // plain products and the elementwise kernels give the same results within float rounding.
    // Named in device_name, which the benchmarks' rows and the CLI's log carry.
    fused_epilogues_ = std::getenv("FUSEDVAE_UNFUSED_EPILOGUES") == nullptr;
    device_name_ = std::string(prop.name) + " (sm_" + std::to_string(prop.major) +
                   std::to_string(prop.minor) + ", cuBLASLt" + (tf32 ? ", TF32" : "") +
                   (fused_epilogues_ ? "" : ", unfused epilogues") +
                   (cuda_graph ? ", CUDA graph" : "") + ")";
    // A blocking stream: the plain cudaMemcpy/cudaMemset of the set-up and read-back paths (legacy
    // default stream) are then ordered with the step's work without further events.
    FUSEDVAE_CUDA_CHECK(cudaStreamCreate(&stream_));
    graph_ = std::make_unique<gpu::StepGraph>(stream_, cuda_graph);
    reduce_ws_ = gpu::create_reduction_workspace();
    norm_ws_ = gpu::create_grad_norm_workspace();
    engine_ = std::make_unique<gpu::LinearEngine>(tf32);
  }

  ~GpuBackend() override {
    if (stream_) cudaStreamSynchronize(stream_);
    graph_.reset();
    engine_.reset();
    gpu::destroy_reduction_workspace(&reduce_ws_);
    gpu::destroy_grad_norm_workspace(&norm_ws_);
    if (shuffle_ws_.capacity > 0) gpu::destroy_shuffle_workspace(&shuffle_ws_);
    if (stream_) cudaStreamDestroy(stream_);
  }

  BackendKind kind() const override { return BackendKind::kGpu; }
  // The parameters (a few MB) stay in the GPU's L2 either way; per layer would only add launches
  // to a step that is launch-bound at small batches.
  bool updates_by_layer() const override { return false; }
  std::string device_name() const override { return device_name_; }
  gpu::LinearEngine& linear_engine() override { return *engine_; }
  cudaStream_t stream() const override { return stream_; }
  bool fused_epilogues() const override { return fused_epilogues_; }

  // Zero-filled: the rows past a partial evaluation chunk are read by nothing, but a buffer never
  // holds garbage that could be mistaken for a result.
  std::shared_ptr<void> allocate(size_t bytes) override {
    FUSEDVAE_CUDA_CHECK(cudaStreamSynchronize(stream_));
    void* p = nullptr;
    bytes = std::max<size_t>(bytes, 1);
    FUSEDVAE_CUDA_CHECK(cudaMalloc(&p, bytes));
    const cudaError_t zeroed = cudaMemset(p, 0, bytes);
    if (zeroed != cudaSuccess) {
      cudaFree(p);
      FUSEDVAE_CUDA_CHECK(zeroed);
    }
    return std::shared_ptr<void>(p, [](void* q) { cudaFree(q); });
  }
  void upload(void* dst, const void* src, size_t bytes) override {
    FUSEDVAE_CUDA_CHECK(cudaStreamSynchronize(stream_));
    FUSEDVAE_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
  }
  void download(void* dst, const void* src, size_t bytes) const override {
    FUSEDVAE_CUDA_CHECK(cudaStreamSynchronize(stream_));
    FUSEDVAE_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
  }
  BackendDataset upload_dataset(const Dataset& data) override {
    const size_t count = static_cast<size_t>(data.rows) * data.dim;
    const size_t held = data.is_u8() ? data.u8.size() : data.f32.size();
    if (held != count)
      throw std::invalid_argument(data.source + ": holds " + std::to_string(held) +
                                  " values, expected rows x dim = " + std::to_string(count));
    BackendDataset d;
    d.rows = data.rows;
    d.dim = data.dim;
    d.scale = data.scale;
    d.offset = data.offset;
    if (data.is_u8()) {
      d.storage = allocate(count);
      upload(d.storage.get(), data.u8.data(), count);
      d.u8 = static_cast<const uint8_t*>(d.storage.get());
    } else {
      d.storage = allocate(count * sizeof(float));
      upload(d.storage.get(), data.f32.data(), count * sizeof(float));
      d.f32 = static_cast<const float*>(d.storage.get());
    }
    return d;
  }

  void copy(void* dst, const void* src, size_t bytes) override {
    FUSEDVAE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_));
  }
  void fill_zero(void* dst, size_t bytes) override {
    FUSEDVAE_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, stream_));
  }
  void copy_2d(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width,
               size_t height) override {
    FUSEDVAE_CUDA_CHECK(cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, width, height,
                                          cudaMemcpyDeviceToDevice, stream_));
  }
  void run_step(int rows, const std::function<void()>& body) override { graph_->run(rows, body); }
  void invalidate_step() override {
    FUSEDVAE_CUDA_CHECK(cudaStreamSynchronize(stream_));
    graph_->invalidate();
  }

  // The per-epoch shuffle stays outside the step (and its graph); its workspace grows here.
  void shuffle_indices(int rows, uint64_t seed, uint64_t epoch, int32_t* perm) override {
    if (shuffle_ws_.capacity < rows) {
      FUSEDVAE_CUDA_CHECK(cudaStreamSynchronize(stream_));
      if (shuffle_ws_.capacity > 0) gpu::destroy_shuffle_workspace(&shuffle_ws_);
      shuffle_ws_ = gpu::create_shuffle_workspace(rows);
    }
    gpu::shuffle_indices(rows, seed, epoch, perm, shuffle_ws_, stream_);
  }
  void gather_batch(const BackendDataset& data, const int32_t* perm, const int32_t* first, int rows,
                    bool binarize, RngState rng, float* out) override {
    gpu::gather_batch(data.u8, data.f32, data.dim, perm, first, rows, data.scale, data.offset,
                      binarize, rng, out, stream_, data.clip_to_unit);
  }
  void advance_batch_start(int32_t* first, int rows) override {
    gpu::advance_batch_start(first, rows, stream_);
  }
  void reparam_kl_forward(const float* mu, const float* logvar, int batch, int dim, RngState rng,
                          LogvarClamp clamp, BatchReduction reduction, float* z,
                          float* kl_per_sample, float* kl_reduced) override {
    gpu::reparam_kl_forward(mu, logvar, batch, dim, rng, clamp, reduction, z, kl_per_sample,
                            kl_reduced, reduce_ws_, stream_);
  }
  void reparam_kl_forward_given_eps(const float* mu, const float* logvar, const float* eps,
                                    int batch, int dim, LogvarClamp clamp, BatchReduction reduction,
                                    float* z, float* kl_per_sample, float* kl_reduced) override {
    gpu::reparam_kl_forward_given_eps(mu, logvar, eps, batch, dim, clamp, reduction, z,
                                      kl_per_sample, kl_reduced, reduce_ws_, stream_);
  }
  void reparam_kl_backward(const float* dz, const float* mu, const float* logvar, int batch,
                           int dim, RngState rng, const float* kl_weight, float loss_scale,
                           LogvarClamp clamp, BatchReduction reduction, float* dmu,
                           float* dlogvar) override {
    gpu::reparam_kl_backward(dz, mu, logvar, batch, dim, rng, kl_weight, loss_scale, clamp,
                             reduction, dmu, dlogvar, stream_);
  }
  void reparam_kl_backward_given_eps(const float* dz, const float* mu, const float* logvar,
                                     const float* eps, int batch, int dim, const float* kl_weight,
                                     float loss_scale, LogvarClamp clamp, BatchReduction reduction,
                                     float* dmu, float* dlogvar) override {
    gpu::reparam_kl_backward_given_eps(dz, mu, logvar, eps, batch, dim, kl_weight, loss_scale,
                                       clamp, reduction, dmu, dlogvar, stream_);
  }
  void draw_normal_eps(int batch, int dim, RngState rng, float scale, float* eps) override {
    gpu::draw_normal_eps(batch, dim, rng, eps, stream_, gpu::kDefaultBlockSize, scale);
  }
  void free_bits_forward(const float* mu, const float* logvar, int batch, int dim,
                         LogvarClamp clamp, float free_bits, float* kl_dim_mean,
                         float* kl_floored) override {
    gpu::free_bits_forward(mu, logvar, batch, dim, clamp, free_bits, kl_dim_mean, kl_floored,
                           stream_);
  }
  void free_bits_backward(const float* mu, const float* logvar, const float* kl_dim_mean, int batch,
                          int dim, LogvarClamp clamp, float free_bits, const float* kl_weight,
                          float loss_scale, BatchReduction reduction, float* dmu,
                          float* dlogvar) override {
    gpu::free_bits_backward(mu, logvar, kl_dim_mean, batch, dim, clamp, free_bits, kl_weight,
                            loss_scale, reduction, dmu, dlogvar, stream_);
  }
  void recon_loss_forward_backward(const float* output, const float* target, int batch, int dim,
                                   ReconLoss loss, BatchReduction reduction, float loss_scale,
                                   float* loss_per_sample, float* loss_reduced,
                                   float* grad_output) override {
    gpu::recon_loss_forward_backward(output, target, batch, dim, loss, reduction, loss_scale,
                                     loss_per_sample, loss_reduced, grad_output, reduce_ws_,
                                     stream_);
  }
  void global_grad_norm(const float* grads, size_t count, float max_norm, float* grad_norm,
                        float* grad_scale) override {
    gpu::global_grad_norm(grads, count, max_norm, grad_norm, grad_scale, norm_ws_, stream_);
  }
  void adamw_update(float* params, float* m, float* v, const float* grads, size_t count,
                    const StepState* state, const OptimizerConfig& opt,
                    const float* grad_scale) override {
    gpu::adamw_update(params, m, v, grads, count, state, opt, grad_scale, stream_);
  }
  void advance_step_state(StepState* state, const KlSchedule& kl, const OptimizerConfig& opt,
                          uint64_t total_steps) override {
    gpu::advance_step_state(state, kl, opt, total_steps, stream_);
  }

 private:
  std::string device_name_;
  bool fused_epilogues_ = true;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<gpu::StepGraph> graph_;
  std::unique_ptr<gpu::LinearEngine> engine_;
  ReductionWorkspace reduce_ws_{};
  gpu::GradNormWorkspace norm_ws_{};
  gpu::ShuffleWorkspace shuffle_ws_{};
};

}  // namespace

std::unique_ptr<Backend> make_gpu_backend(bool tf32, bool cuda_graph) {
  return std::make_unique<GpuBackend>(tf32, cuda_graph);
}

}  // namespace fusedvae
