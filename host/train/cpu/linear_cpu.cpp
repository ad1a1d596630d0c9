// @brief The Linear module on the CPU backend: OpenBLAS products, with the bias and the activation
// after it by the CPU twins.
#include <cblas.h>

#include <memory>

#include "host/ops/activation_cpu.h"
#include "host/ops/bias_cpu.h"
#include "host/train/module_registry.h"

namespace fusedvae {
namespace {

// nn.Linear on row-major batches: y = act(x W^T + b), and its backward. The module's tensors are
// its weight [out, in] and, right after it, its bias [out] (host/model/modules.cpp).
class BlasLinear final : public LayerRun {
 public:
  BlasLinear(const Module& module, const LayerContext& context, const float* params, float* grads)
      : in_(module.in),
        out_(module.out),
        context_(context),
        weight_(params),
        bias_(params + static_cast<size_t>(in_) * out_),
        weight_grad_(grads),
        bias_grad_(grads + static_cast<size_t>(in_) * out_) {}

  int out() const override { return out_; }
  void prepare_rows(int, const LayerRun*) override {}
  size_t aux_bytes(int) const override { return 0; }

  void forward(int rows, const float* x, float* y, void*) const override {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, out_, in_, 1.0f, x, in_, weight_,
                in_, 0.0f, y, out_);
    if (context_.output_act == Activation::kIdentity)
      cpu::bias_add(y, bias_, rows, out_);
    else
      cpu::bias_activation_forward(y, bias_, rows, out_, context_.output_act);
  }

  // dW = dy^T x and db = column sums of dy overwrite their slots (every slot belongs to exactly one
  // layer, so the step never zeroes the buffer); dx = dy W, written or added, then multiplied by
  // the derivative of the activation that produced x.
  void backward(int rows, const float* dy, const float* x, const void*, float* dx) const override {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out_, in_, rows, 1.0f, dy, out_, x, in_,
                0.0f, weight_grad_, in_);
    cpu::bias_gradient(dy, rows, out_, bias_grad_);
    if (!context_.needs_input_grad) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, in_, out_, 1.0f, dy, out_, weight_,
                in_, context_.accumulate_input_grad ? 1.0f : 0.0f, dx, in_);
    if (context_.input_act != Activation::kIdentity)
      cpu::activation_backward(x, dx, rows, in_, context_.input_act);
  }

 private:
  int in_, out_;
  LayerContext context_;
  const float* weight_;
  const float* bias_;
  float* weight_grad_;
  float* bias_grad_;
};

}  // namespace

std::unique_ptr<LayerRun> make_linear_cpu(Backend&, const Module& module,
                                          const LayerContext& context, const float* params,
                                          float* grads) {
  return std::make_unique<BlasLinear>(module, context, params, grads);
}

}  // namespace fusedvae
