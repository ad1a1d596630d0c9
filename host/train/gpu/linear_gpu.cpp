// @brief The Linear module on the GPU backend: cuBLASLt products with the bias, the activation
// after it and the gradients fused into epilogues where offered (cublaslt_linear.h).
#include <memory>

#include "host/train/gpu/cublaslt_linear.h"
#include "host/train/gpu/gpu_backend.h"
#include "host/train/module_registry.h"

namespace fusedvae {
namespace {

// The module's tensors are its weight [out, in] and, right after it, its bias [out]
// (host/model/modules.cpp).
class GpuLinear final : public LayerRun {
 public:
  GpuLinear(gpu::GpuBackendContext& backend, const Module& module, const LayerContext& context,
            const float* params, float* grads)
      : stream_(backend.stream()),
        weight_(params),
        bias_(params + static_cast<size_t>(module.in) * module.out),
        weight_grad_(grads),
        bias_grad_(grads + static_cast<size_t>(module.in) * module.out) {
    gpu::LinearSpec spec;
    spec.in = module.in;
    spec.out = module.out;
    spec.output_act = context.output_act;
    spec.input_act = context.input_act;
    spec.needs_input_grad = context.needs_input_grad;
    spec.accumulate_input_grad = context.accumulate_input_grad;
    gpu::LinearAlignment align;
    align.weight = weight_;
    align.bias = bias_;
    align.weight_grad = weight_grad_;
    align.bias_grad = bias_grad_;
    linear_ = std::make_unique<gpu::CublasLtLinear>(backend.linear_engine(), spec, align,
                                                    backend.fused_epilogues());
  }

  int out() const override { return linear_->spec().out; }

  // The backward may fuse the ReLU gradient of its input when the layer below writes a mask for
  // this batch size.
  void prepare_rows(int rows, const LayerRun* input_producer) override {
    const auto* below = dynamic_cast<const GpuLinear*>(input_producer);
    linear_->add_batch(rows, below != nullptr && below->linear_->writes_relu_mask(rows));
  }

  // Every layer with a ReLU after it gets a mask buffer, whether or not cuBLASLt writes it for a
  // given batch size (the buffers are carved once for the largest).
  size_t aux_bytes(int rows) const override {
    return linear_->spec().output_act == Activation::kRelu
               ? gpu::relu_mask_bytes(linear_->spec().out, rows)
               : 0;
  }

  void forward(int rows, const float* x, float* y, void* aux) const override {
    linear_->forward(rows, x, weight_, bias_, y, aux, stream_);
  }

  void backward(int rows, const float* dy, const float* x, const void* x_aux,
                float* dx) const override {
    linear_->backward_weight(rows, dy, x, weight_grad_, bias_grad_, stream_);
    if (linear_->spec().needs_input_grad)
      linear_->backward_input(rows, dy, weight_, x, x_aux, dx, stream_);
  }

 private:
  cudaStream_t stream_;
  const float* weight_;
  const float* bias_;
  float* weight_grad_;
  float* bias_grad_;
  std::unique_ptr<gpu::CublasLtLinear> linear_;
};

}  // namespace

std::unique_ptr<LayerRun> make_linear_gpu(Backend& backend, const Module& module,
                                          const LayerContext& context, const float* params,
                                          float* grads) {
  auto& gpu_backend = dynamic_cast<gpu::GpuBackendContext&>(backend);
  return std::make_unique<GpuLinear>(gpu_backend, module, context, params, grads);
}

}  // namespace fusedvae
