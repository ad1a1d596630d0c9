// @brief The GRU module on the GPU backend: gpu::GruGpu (host/train/gpu/gru_gpu.h) on the
// backend's stream, one instance (reserve, plans) per batch size.
#include <map>
#include <memory>
#include <stdexcept>
#include <string>

#include "host/train/gpu/gpu_backend.h"
#include "host/train/gpu/gru_gpu.h"
#include "host/train/gru_layer_shape.h"
#include "host/train/module_registry.h"

namespace fusedvae {
namespace {

class GpuGruLayer final : public SequenceRun {
 public:
  GpuGruLayer(gpu::GpuBackendContext& backend, const Module& module, const float* params,
              float* grads)
      : stream_(backend.stream()),
        tf32_(backend.linear_engine().compute_type() != CUBLAS_COMPUTE_32F),
        module_(module),
        params_(params),
        grads_(grads) {}

  int out() const override { return module_.out; }

  void prepare(int batch, int steps) override {
    const gpu::GruShape shape = gru_layer_shape(module_, batch, steps, &steps_);
    if (runs_.count(batch) != 0) return;
    gpu::GruGpuOptions options;
    options.tf32 = tf32_;
    runs_.emplace(batch, std::make_unique<gpu::GruGpu>(shape, options));
  }

  void forward(int batch, const float* x, const float* h0, float* y, float* h_n) override {
    run(batch).forward_train(params_, x, h0, y, h_n, stream_);
  }

  void backward(int batch, const float* x, const float* dy, const float* d_h_n, float* dx,
                float* d_h0) override {
    run(batch).backward(params_, x, dy, d_h_n, dx, d_h0, grads_, stream_);
  }

 private:
  gpu::GruGpu& run(int batch) {
    const auto it = runs_.find(batch);
    if (it == runs_.end())
      throw std::logic_error("GRU " + module_.name + ": not prepared for batch " +
                             std::to_string(batch));
    return *it->second;
  }

  cudaStream_t stream_;
  bool tf32_;
  Module module_;
  const float* params_;
  float* grads_;
  int steps_ = 0;
  std::map<int, std::unique_ptr<gpu::GruGpu>> runs_;
};

}  // namespace

std::unique_ptr<SequenceRun> make_gru_gpu(Backend& backend, const Module& module,
                                          const float* params, float* grads) {
  auto& gpu_backend = dynamic_cast<gpu::GpuBackendContext&>(backend);
  return std::make_unique<GpuGruLayer>(gpu_backend, module, params, grads);
}

}  // namespace fusedvae
